//! `step-04-bridge-network [--root DIR] image|run|ps|rm|diff|commit|network ...`

use clap::{Parser, Subcommand};
use overlay::cli::{
    die_quietly_on_a_closed_pipe, open_store_or_exit, store_command, RunArgs, StoreCommand,
};
use overlay::container;
use overlay::store::DEFAULT_ROOT;
use pid::cli::{exit_with, parse_or_exit};
use std::path::PathBuf;
use step_04_bridge_network::cli::{network_command, NetworkArgs, NetworkCommand};

/// Step 04 of the tara workshop: containers with a network of their own,
/// on a bridge, as docker's docker0.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    image import busybox ./rootfs                 a directory becomes a one-layer image\n  \
    run busybox -- ip addr                        eth0 10.87.0.2/16 on the network tara\n  \
    network create --subnet 10.86.5.0/24 backend  a network of its own (bridge tara-backend)\n  \
    run --network backend -p 8080:80 busybox -- httpd -f -p 80\n  \
    run --network none busybox -- ip link         only lo\n\n\
    Containers on one network reach each other; networks are isolated from each other.\n\
    Run it in a network namespace of your own while you experiment (ip netns add lab;\n\
    ip netns exec lab ...): it creates bridges, veths and iptables rules, and turns on\n\
    ip_forward.\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it, 126 if CMD is not executable,\n\
    127 if it is not found in the image, 125 for an error of the runtime itself. Needs root."
)]
struct Cli {
    /// Where images, layers, containers and networks are kept
    #[arg(long, global = true, env = "TARA_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a new container of IMAGE, on a network, and wait for it
    Run {
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    #[command(flatten)]
    Store(StoreCommand),
}

fn main() {
    die_quietly_on_a_closed_pipe();
    let cli: Cli = parse_or_exit();
    let store = open_store_or_exit(&cli.root);
    match cli.command {
        Command::Run { network, run } => {
            let options = run.options();
            let started = network
                .attachment(&store, options.hostname.clone())
                .and_then(|mut attachment| container::run_with(&store, &options, &mut attachment));
            exit_with(started)
        }
        Command::Network(command) => exit_with(network_command(&store, command).map(|()| 0)),
        Command::Store(command) => exit_with(store_command(&store, command).map(|()| 0)),
    }
}

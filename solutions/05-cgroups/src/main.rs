//! `solution-05-cgroups [--root DIR] image|run|ps|rm|diff|commit|network|stats|inspect ...`

use clap::{Parser, Subcommand};
use network::cli::{network_command, NetworkArgs, NetworkCommand};
use overlay::cli::{
    die_quietly_on_a_closed_pipe, open_store_or_exit, store_command, RunArgs, StoreCommand,
};
use overlay::store::DEFAULT_ROOT;
use pid::cli::{exit_with, parse_or_exit};
use solution_05_cgroups::cli::{self, LimitArgs};
use solution_05_cgroups::{record, stats};
use std::path::PathBuf;

/// Step 05 of the tara workshop: containers with limits on memory,
/// processes and CPU, in cgroups (v2, or v1).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    image import busybox ./rootfs                  a directory becomes a one-layer image\n  \
    run --memory 64m --pids-limit 100 busybox -- sh\n  \
    run --cpus 0.5 --name spin busybox -- sh -c 'while :; do :; done'\n  \
    stats --no-stream                              CPU, memory and PIDs of each container\n  \
    inspect spin                                   its cgroup's directories and limits\n\n\
    Each container gets a cgroup, /tara/<id> at the top of the hierarchy unless\n\
    --cgroup-parent says otherwise, removed when it ends. Inside, /proc/self/cgroup\n\
    shows / and /sys/fs/cgroup is the container's own cgroup, read-only.\n\
    Run it in a network namespace of your own while you experiment (ip netns add lab;\n\
    nsenter --net=/run/netns/lab ...; not `ip netns exec`, which mounts a /sys without\n\
    the cgroups), or with --network none: containers get a network by default.\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it (137 for SIGKILL, also the\n\
    kernel's OOM killer), 126 if CMD is not executable, 127 if it is not found in the\n\
    image, 125 for an error of the runtime itself. Needs root."
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
    /// Run a command in a new container of IMAGE, with limits, on a network,
    /// and wait for it
    Run(Box<RunCommand>),
    /// Show the CPU, memory and PIDs that running containers use
    Stats {
        /// Show one sample and exit
        #[arg(long)]
        no_stream: bool,
        /// Containers by name or ID prefix; all running ones by default
        containers: Vec<String>,
    },
    /// Show a container, its cgroup and its limits, as JSON
    Inspect {
        /// The container's name or ID prefix
        container: String,
    },
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    #[command(flatten)]
    Store(StoreCommand),
}

/// `run`'s flags: this step's, step 04's and step 03's.
#[derive(Debug, clap::Args)]
struct RunCommand {
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    die_quietly_on_a_closed_pipe();
    let cli: Cli = parse_or_exit();
    let store = open_store_or_exit(&cli.root);
    // A runtime killed with SIGKILL could not remove its container's
    // cgroup: whichever command comes next does. One it cannot remove is
    // no reason to refuse this command.
    if let Err(error) = record::reclaim_stale(&store) {
        pid::cli::report(&format!("warning: {error:#}"));
    }
    let result = match cli.command {
        Command::Run(command) => {
            let RunCommand {
                limits,
                network,
                run,
            } = *command;
            cli::run(&store, &limits, &network, run)
        }
        Command::Stats {
            no_stream,
            containers,
        } => stats::stats(&store, no_stream, &containers).map(|()| 0),
        Command::Inspect { container } => cli::print_inspect(&store, &container).map(|()| 0),
        Command::Network(command) => network_command(&store, command).map(|()| 0),
        Command::Store(command) => store_command(&store, command).map(|()| 0),
    };
    exit_with(result)
}

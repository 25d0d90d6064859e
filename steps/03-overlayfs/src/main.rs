//! `step-03-overlayfs [--root DIR] image|run|ps|rm|diff|commit ...`

use clap::{Parser, Subcommand};
use pid::cli::{exit_with, parse_or_exit};
use std::path::PathBuf;
use step_03_overlayfs::cli::{
    die_quietly_on_a_closed_pipe, open_store_or_exit, store_command, RunArgs, StoreCommand,
};
use step_03_overlayfs::container;
use step_03_overlayfs::store::DEFAULT_ROOT;

/// Step 03 of the tara workshop: images made of layers, and containers that
/// copy on write, with overlayfs.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    image import busybox ./rootfs              a directory becomes a one-layer image\n  \
    run --name box busybox -- sh -c 'echo hi > /hello'\n  \
    diff box                                   A /hello\n  \
    commit box busybox-hello                   the container's changes become a layer\n  \
    run --rm busybox-hello -- cat /hello       hi\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it, 126 if CMD is not executable,\n\
    127 if it is not found in the image, 125 for an error of the runtime itself (for\n\
    example a missing image). Needs root."
)]
struct Cli {
    /// Where images, layers and containers are kept
    #[arg(long, global = true, env = "TARA_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a new container of IMAGE and wait for it
    Run(RunArgs),
    #[command(flatten)]
    Store(StoreCommand),
}

fn main() {
    die_quietly_on_a_closed_pipe();
    let cli: Cli = parse_or_exit();
    let store = open_store_or_exit(&cli.root);
    match cli.command {
        Command::Run(args) => exit_with(container::run(&store, &args.options())),
        Command::Store(command) => exit_with(store_command(&store, command).map(|()| 0)),
    }
}

//! `step-02-mount-ns run --rootfs DIR [--read-only] [--init] [--hostname NAME] -- CMD [ARGS...]`

use anyhow::Result;
use clap::{Parser, Subcommand};
use pid::cli::{exit_with, parse_or_exit};
use std::path::PathBuf;
use step_02_mount_ns as mount_ns;

/// Step 02 of the tara workshop: run a command in its own root filesystem,
/// with its own /proc, /sys and /dev, as PID 1 of new namespaces.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    run --rootfs ./rootfs -- ls /            the rootfs's entries, nothing of the host\n  \
    run --rootfs ./rootfs -- mount           the container's own mount table\n  \
    run --rootfs ./rootfs --read-only -- touch /x   fails: Read-only file system\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it, 126 if CMD is not executable,\n\
    127 if it is not found in the rootfs, 125 for an error of the runtime itself (for\n\
    example a missing rootfs). Needs root."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run CMD with DIR as its root filesystem and wait for it
    Run(RootfsRunArgs),
}

#[derive(Debug, clap::Args)]
struct RootfsRunArgs {
    /// The directory to use as the container's root filesystem
    #[arg(long, value_name = "DIR")]
    rootfs: PathBuf,

    /// Mount the root filesystem read-only (/tmp stays writable, as a tmpfs)
    #[arg(long)]
    read_only: bool,

    #[command(flatten)]
    common: pid::cli::RunArgs,
}

fn run(args: &RootfsRunArgs) -> Result<i32> {
    let rootfs = mount_ns::Rootfs::new(&args.rootfs, args.read_only)?;
    mount_ns::run(&args.common.spec(), &rootfs)
}

fn main() {
    let cli: Cli = parse_or_exit();
    match cli.command {
        Command::Run(args) => exit_with(run(&args)),
    }
}

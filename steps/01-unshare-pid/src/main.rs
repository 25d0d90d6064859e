//! `step-01-unshare-pid run [--init] [--hostname NAME] -- CMD [ARGS...]`

use clap::{Parser, Subcommand};
use step_01_unshare_pid as pid;

use pid::cli::{exit_with, parse_or_exit, RunArgs};

/// Step 01 of the tara workshop: run a host command as PID 1 of new PID,
/// mount and UTS namespaces, with a private /proc.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    run -- sh -c 'echo $$'          prints 1: the shell is PID 1\n  \
    run --init -- ps -o pid,comm    the init is PID 1, ps is PID 2\n  \
    run --hostname box -- hostname  prints box; the host keeps its name\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it, 126 if CMD is not executable,\n\
    127 if it is not found, 125 for an error of the runtime itself. Needs root."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run CMD in new PID, mount and UTS namespaces and wait for it
    Run(RunArgs),
}

fn main() {
    let cli: Cli = parse_or_exit();
    match cli.command {
        Command::Run(args) => exit_with(pid::run(&args.spec(), &pid::HostFilesystem)),
    }
}

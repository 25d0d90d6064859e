//! The runtime's tiny init (`--init`).
//!
//! PID 1 of a PID namespace has two duties no ordinary program expects:
//! every orphan in the namespace is re-parented to it, so it must reap them
//! or they stay zombies; and the kernel delivers it only the signals it has
//! a handler for, so a program that never installed one cannot be stopped
//! with SIGTERM. The init takes PID 1, starts the command as PID 2, forwards
//! signals to it, reaps everything, and exits with the command's status. When
//! it exits, the kernel kills whatever is left in the namespace.

use crate::child::run_command;
use crate::cli::report;
use crate::exit_status::{exit_code, RUNTIME_ERROR};
use crate::signals::supervise;
use nix::sys::prctl;
use nix::unistd::{fork, ForkResult};

/// The name `ps` shows for the init.
const INIT_NAME: &std::ffi::CStr = c"init";

/// Runs `command` as the init's only child and supervises it; returns the
/// exit code for the whole container.
pub fn run_as_init(command: &[String]) -> i32 {
    // Only the name in /proc/PID/comm: a copy of the runtime otherwise shows
    // up in `ps` under the runtime's own name.
    let _ = prctl::set_name(INIT_NAME);
    // SAFETY: the container's PID 1 is single-threaded, so fork is safe.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => std::process::exit(run_command(command)),
        Ok(ForkResult::Parent { child }) => match supervise(child) {
            Ok(status) => exit_code(status),
            Err(error) => {
                report(&format!("init: {error:#}"));
                RUNTIME_ERROR
            }
        },
        Err(errno) => {
            report(&format!("init: fork(2): {errno}"));
            RUNTIME_ERROR
        }
    }
}

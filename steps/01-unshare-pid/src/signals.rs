//! Forwarding signals to the container and reaping its processes.
//!
//! Both the runtime (outside the container) and the tiny init (PID 1 inside
//! it) do the same job: wait for the next signal; if it is SIGCHLD, collect
//! the children that exited; otherwise pass the signal on to the command.
//! The signals are blocked and then taken with sigwait(2), one at a time, in
//! plain code: no signal handler runs at an awkward moment.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals a user sends to stop or steer a program; the runtime passes
/// them on to the container's command. (SIGKILL and SIGSTOP cannot be caught,
/// so they cannot be forwarded: they act on the runtime itself.)
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The forwarded signals, plus SIGCHLD, which tells us a child exited.
fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the supervised signals: they stay pending until [`supervise`]
/// takes them. The mask is inherited by clone and fork, and kept by exec.
pub fn block_supervised_signals() -> Result<()> {
    supervised_signals()
        .thread_block()
        .context("sigprocmask(SIG_BLOCK) for the forwarded signals")
}

/// Undoes [`block_supervised_signals`]; the command must start with the
/// normal mask, or it would never see SIGINT or SIGTERM.
pub fn unblock_supervised_signals() -> Result<()> {
    supervised_signals()
        .thread_unblock()
        .context("sigprocmask(SIG_UNBLOCK) before exec")
}

/// Forwards signals to `main` and reaps every child that exits, until `main`
/// itself has exited; returns how it ended.
// ANCHOR: supervise
pub fn supervise(main: Pid) -> Result<WaitStatus> {
    let signals = supervised_signals();
    loop {
        let signal = signals.wait().context("sigwait(2)")?;
        if signal == Signal::SIGCHLD {
            if let Some(status) = reap_children(main)? {
                return Ok(status);
            }
        } else {
            forward(signal, main)?;
        }
    }
}
// ANCHOR_END: supervise

/// Collects every child that has exited, so that none stays a zombie, and
/// returns the status of `main` if it was among them.
// ANCHOR: reap
fn reap_children(main: Pid) -> Result<Option<WaitStatus>> {
    // EXERCISE 4: reap every exited child without blocking. Hint: several children may have
    // exited for one SIGCHLD (pending signals do not queue), so loop on
    // waitpid(None, Some(WaitPidFlag::WNOHANG)): Ok(StillAlive) means "none left for now",
    // Err(Errno::ECHILD) means "no children at all"; remember the status whose pid() is `main`.
    todo!("EXERCISE 4: reap every exited child without blocking")
}
// ANCHOR_END: reap

/// Passes `signal` on to `main`.
// ANCHOR: forward
fn forward(signal: Signal, main: Pid) -> Result<()> {
    // EXERCISE 5: send `signal` to `main`. Hint: nix::sys::signal::kill. If `main` has just
    // exited (ESRCH), that is not an error: its SIGCHLD is on the way.
    todo!("EXERCISE 5: send `signal` to `main`")
}
// ANCHOR_END: forward

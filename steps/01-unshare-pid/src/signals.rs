//! Forwarding signals to the container and reaping its processes.
//!
//! Both the runtime (outside the container) and the tiny init (PID 1 inside
//! it) do the same job: wait for the next signal; if it is SIGCHLD, collect
//! the children that exited; otherwise pass the signal on to the command.
//! The signals are blocked, so they stay pending, and are read one at a time
//! from a signalfd(2), in plain code: no signal handler runs at an awkward
//! moment, and each record says who sent the signal.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{kill, signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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
/// Returns the mask as it was, for [`restore_signal_mask`].
pub fn block_supervised_signals() -> Result<SigSet> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&supervised_signals()),
        Some(&mut previous),
    )
    .context("sigprocmask(SIG_BLOCK) for the forwarded signals")?;
    Ok(previous)
}

/// Puts back a mask saved by [`block_supervised_signals`].
pub fn restore_signal_mask(previous: &SigSet) -> Result<()> {
    previous
        .thread_set_mask()
        .context("sigprocmask(SIG_SETMASK) restoring the signal mask")
}

/// Undoes [`block_supervised_signals`]; the command must start with the
/// normal mask, or it would never see SIGINT or SIGTERM.
pub fn unblock_supervised_signals() -> Result<()> {
    supervised_signals()
        .thread_unblock()
        .context("sigprocmask(SIG_UNBLOCK) before exec")
}

/// Gives SIGPIPE back its default action (terminate). Rust programs start
/// with SIGPIPE *ignored*, and an ignored signal stays ignored across exec:
/// without this, `yes | head -1` inside the container would complain about a
/// broken pipe instead of quietly stopping. (std::process::Command resets it
/// too; we exec by hand.)
pub fn restore_default_sigpipe() -> Result<()> {
    // SAFETY: SIG_DFL installs no Rust code as a handler.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .context("signal(SIGPIPE, SIG_DFL) before exec")?;
    Ok(())
}

/// Forwards signals to `main` and reaps every child that exits, until `main`
/// itself has exited; returns how it ended.
// ANCHOR: supervise
pub fn supervise(main: Pid) -> Result<WaitStatus> {
    // Reading a signalfd takes one pending signal out of the blocked set.
    let signals = SignalFd::with_flags(&supervised_signals(), SfdFlags::SFD_CLOEXEC)
        .context("signalfd(2) for the supervised signals")?;
    loop {
        let Some(info) = signals.read_signal().context("reading the signalfd")? else {
            continue;
        };
        let signal = Signal::try_from(info.ssi_signo as i32).context("an unknown signal number")?;
        if signal == Signal::SIGCHLD {
            if let Some(status) = reap_children(main)? {
                return Ok(status);
            }
        } else if sent_by_a_process(info.ssi_code) {
            forward(signal, main)?;
        }
    }
}

/// Whether a signal came from kill(2) and friends rather than from the kernel.
/// Ctrl-C, Ctrl-\ and a terminal hangup are sent by the kernel to the whole
/// foreground process group, and the container's processes belong to ours:
/// they already got it. Passing it on would deliver it twice (and "press
/// Ctrl-C twice to force quit" would trigger on the first press).
fn sent_by_a_process(si_code: i32) -> bool {
    si_code != libc::SI_KERNEL
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signals_from_processes_are_forwarded() {
        assert!(sent_by_a_process(libc::SI_USER), "kill(2)");
        assert!(sent_by_a_process(libc::SI_QUEUE), "sigqueue(3)");
        assert!(sent_by_a_process(libc::SI_TKILL), "tgkill(2)");
        assert!(
            !sent_by_a_process(libc::SI_KERNEL),
            "Ctrl-C from the terminal"
        );
    }
}

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
use nix::unistd::{getpgid, getpgrp, getpid, getsid, Pid};

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

/// Takes a forwarded signal that is pending, if one is: one that arrived
/// before the container's command runs (a Ctrl-C while the runtime set it
/// up). Forwarding it would not do: a PID 1 ignores every signal it has
/// no handler for, and the command has installed none yet.
pub fn take_pending_forwarded() -> Result<Option<Signal>> {
    let mut forwarded = SigSet::empty();
    for signal in FORWARDED {
        forwarded.add(signal);
    }
    let pending = SignalFd::with_flags(&forwarded, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd(2) for the pending signals")?;
    match pending.read_signal().context("reading the signalfd")? {
        Some(info) => Ok(Some(
            Signal::try_from(info.ssi_signo as i32).context("an unknown signal number")?,
        )),
        None => Ok(None),
    }
}

/// Blocks the supervised signals: they stay pending until [`supervise`]
/// takes them. The mask is inherited by clone and fork, and kept by exec.
/// Returns the mask as it was, for [`finish_supervision`].
pub fn block_supervised_signals() -> Result<SigSet> {
    // An *ignored* SIGCHLD (a caller may leave it so) tells the kernel to
    // reap our children itself, without a SIGCHLD: we would wait forever.
    // SAFETY: SIG_DFL installs no Rust code as a handler.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.context("signal(SIGCHLD, SIG_DFL)")?;
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&supervised_signals()),
        Some(&mut previous),
    )
    .context("sigprocmask(SIG_BLOCK) for the forwarded signals")?;
    Ok(previous)
}

/// Discards the supervised signals still pending (a Ctrl-C just as the
/// container exited must not kill the runtime before it reports the exit
/// code and cleans up), then puts back the mask `previous`.
pub fn finish_supervision(previous: &SigSet) -> Result<()> {
    let pending = SignalFd::with_flags(
        &supervised_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .context("signalfd(2) to discard pending signals")?;
    while pending
        .read_signal()
        .context("reading the signalfd")?
        .is_some()
    {}
    previous
        .thread_set_mask()
        .context("sigprocmask(SIG_SETMASK) restoring the signal mask")
}

/// Gives the command the signal state of a freshly started program: every
/// signal at its default action and none blocked. Handlers vanish with exec
/// anyway, but an *ignored* signal stays ignored across exec: Rust programs
/// ignore SIGPIPE (without this, `yes | head -1` inside the container would
/// complain about a broken pipe instead of quietly stopping), and a shell
/// starts background jobs with SIGINT and SIGQUIT ignored.
pub fn reset_for_exec() -> Result<()> {
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no Rust code as a handler.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
            .with_context(|| format!("signal({signal}, SIG_DFL) before exec"))?;
    }
    SigSet::empty()
        .thread_set_mask()
        .context("sigprocmask(SIG_SETMASK, {}) before exec")
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
        } else if !kernel_already_delivered(signal, info.ssi_code, main) {
            forward(signal, main)?;
        }
    }
}
// ANCHOR_END: supervise

/// Whether the kernel itself already gave `main` this signal. Ctrl-C and
/// Ctrl-\ come from the kernel (si_code SI_KERNEL) and go to the terminal's
/// whole foreground process group, which the container's processes share
/// with the runtime unless they left it: forwarding would deliver them twice
/// (and "press Ctrl-C twice to force quit" would fire on the first press).
/// A terminal hangup, though, goes to the session leader alone.
fn kernel_already_delivered(signal: Signal, si_code: i32, main: Pid) -> bool {
    let same_group = getpgid(Some(main)).is_ok_and(|group| group == getpgrp());
    let session_leader = getsid(None).is_ok_and(|session| session == getpid());
    delivered_to_whole_group(signal, si_code == libc::SI_KERNEL, session_leader) && same_group
}

/// The pure rule behind [`kernel_already_delivered`].
fn delivered_to_whole_group(signal: Signal, from_kernel: bool, session_leader: bool) -> bool {
    from_kernel && !(signal == Signal::SIGHUP && session_leader)
}

/// Collects every child that has exited, so that none stays a zombie, and
/// returns the status of `main` if it was among them.
// ANCHOR: reap
fn reap_children(main: Pid) -> Result<Option<WaitStatus>> {
    // EXERCISE 4: reap every exited child without blocking. Hint: several children may
    // have exited for one SIGCHLD (pending signals do not queue), so loop on
    // waitpid(None, Some(WaitPidFlag::WNOHANG)): Ok(StillAlive) means "none left for
    // now", Err(Errno::ECHILD) means "no children at all"; remember the status whose
    // pid() is `main`.
    // SOLUTION-BEGIN
    let mut main_status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(main_status),
            Ok(status) if status.pid() == Some(main) => main_status = Some(status),
            Ok(_orphan) => {}
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno).context("waitpid(-1, WNOHANG)"),
        }
    }
    // SOLUTION-END
}
// ANCHOR_END: reap

/// Passes `signal` on to `main`.
// ANCHOR: forward
fn forward(signal: Signal, main: Pid) -> Result<()> {
    // EXERCISE 5: send `signal` to `main`. Hint: nix::sys::signal::kill. A `main` that
    // has exited but is not reaped yet is a zombie: kill still succeeds (and does
    // nothing). ESRCH (no such process) comes only once it has been reaped: not an
    // error either.
    // SOLUTION-BEGIN
    match kill(main, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno).with_context(|| format!("forwarding {signal} to PID {main}")),
    }
    // SOLUTION-END
}
// ANCHOR_END: forward

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_sent_with_kill_are_always_forwarded() {
        assert!(!delivered_to_whole_group(Signal::SIGINT, false, false));
        assert!(!delivered_to_whole_group(Signal::SIGHUP, false, true));
    }

    #[test]
    fn terminal_signals_already_reached_the_process_group() {
        assert!(delivered_to_whole_group(Signal::SIGINT, true, false));
        assert!(delivered_to_whole_group(Signal::SIGQUIT, true, true));
        assert!(delivered_to_whole_group(Signal::SIGHUP, true, false));
    }

    #[test]
    fn a_hangup_reaches_only_the_session_leader() {
        assert!(!delivered_to_whole_group(Signal::SIGHUP, true, true));
    }
}

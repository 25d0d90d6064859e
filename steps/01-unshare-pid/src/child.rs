//! What the child does, from clone to exec.

use crate::cli::report;
use crate::exit_status::RUNTIME_ERROR;
use crate::{exec, init, signals, Hooks, Spec};
use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{pipe2, read, sethostname, write};
use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The child waits on this pipe until the parent has finished preparing
/// it from outside (checking its namespaces; in later steps, its cgroup and
/// network), then reads one byte and goes on.
#[derive(Debug)]
pub struct SyncPipe {
    read_end: OwnedFd,
    // In a RefCell so that each process can close its own copy: the child must
    // close the write end, or it would never see EOF if the parent died.
    write_end: RefCell<Option<OwnedFd>>,
}

impl SyncPipe {
    /// Creates the pipe; O_CLOEXEC keeps it out of the command.
    pub fn new() -> Result<Self> {
        let (read_end, write_end) =
            pipe2(OFlag::O_CLOEXEC).context("pipe2(2) for the sync pipe")?;
        Ok(SyncPipe {
            read_end,
            write_end: RefCell::new(Some(write_end)),
        })
    }

    /// In the parent: lets the child go on.
    pub fn release_child(&self) -> Result<()> {
        let write_end = self
            .write_end
            .borrow_mut()
            .take()
            .context("the child was already released")?;
        write(&write_end, b"1").context("writing to the sync pipe")?;
        Ok(())
    }

    /// In the child: waits until the parent calls [`SyncPipe::release_child`].
    fn wait_for_parent(&self) -> Result<()> {
        drop(self.write_end.borrow_mut().take());
        let mut byte = [0u8; 1];
        match read(&self.read_end, &mut byte).context("reading the sync pipe")? {
            1 => Ok(()),
            _ => bail!("the runtime went away before the container started"),
        }
    }
}

/// The child's entry point, run by clone(2) in the new namespaces. Its
/// return value is the child's exit code.
pub fn main(spec: &Spec, hooks: &dyn Hooks, sync: &SyncPipe) -> isize {
    // A panic must not unwind out of clone's callback (that aborts): end the
    // child with a runtime error instead; the panic message is already out.
    let code = catch_unwind(AssertUnwindSafe(|| start(spec, hooks, sync))).unwrap_or(RUNTIME_ERROR);
    code as isize
}

fn start(spec: &Spec, hooks: &dyn Hooks, sync: &SyncPipe) -> i32 {
    if let Err(error) = prepare(spec, hooks, sync) {
        report(&format!("{error:#}"));
        return RUNTIME_ERROR;
    }
    if spec.init {
        init::run_as_init(&spec.command)
    } else {
        run_command(&spec.command)
    }
}

/// Everything between clone and exec.
fn prepare(spec: &Spec, hooks: &dyn Hooks, sync: &SyncPipe) -> Result<()> {
    // If the runtime dies, the container goes with it: nobody would be left
    // to wait for it, forward signals to it or report its exit code.
    prctl::set_pdeathsig(Signal::SIGKILL).context("prctl(PR_SET_PDEATHSIG)")?;
    sync.wait_for_parent()?;
    close_inherited_descriptors(Closing::Now)?;
    hooks.prepare_filesystem()?;
    if let Some(hostname) = &spec.hostname {
        sethostname(hostname).with_context(|| format!("sethostname({hostname:?})"))?;
    }
    Ok(())
}

/// Execs `command` in a clean process state; returns (and reports) only on
/// failure, with the exit code a shell would use.
pub fn run_command(command: &[String]) -> i32 {
    if let Err(error) = prepare_exec() {
        report(&format!("{error:#}"));
        return RUNTIME_ERROR;
    }
    let failure = exec::exec_command(command);
    report(&failure);
    failure.exit_code()
}

/// What exec keeps must be what a freshly started command expects: default
/// signal actions, an empty signal mask, and no file descriptor but stdin,
/// stdout and stderr.
fn prepare_exec() -> Result<()> {
    signals::reset_for_exec()?;
    close_inherited_descriptors(Closing::OnExec)
}

/// When [`close_inherited_descriptors`] closes them.
#[derive(Debug, Clone, Copy)]
enum Closing {
    /// Now: for the child's own use, the sync pipe included.
    Now,
    /// At exec (FD_CLOEXEC), for what this process still opens until then.
    OnExec,
}

/// Closes every descriptor above 2. Whatever the runtime was started with
/// (an open directory of the host, a socket) must not reach the container: a
/// directory descriptor is a path back to the host's files, even after
/// pivot_root (runc's CVE-2024-21626 was such a leak), and the tiny init,
/// which never execs, would keep it for the container's whole life.
fn close_inherited_descriptors(when: Closing) -> Result<()> {
    let flags = match when {
        Closing::Now => 0,
        Closing::OnExec => libc::CLOSE_RANGE_CLOEXEC as i32,
    };
    // SAFETY: after the sync pipe, the child uses no descriptor above 2 that
    // it opened before this call. close_range(2) exists since Linux 5.9; its
    // CLOSE_RANGE_CLOEXEC flag (Closing::OnExec) since Linux 5.11.
    let result = unsafe { libc::close_range(3, u32::MAX, flags) };
    nix::errno::Errno::result(result)
        .map(drop)
        .with_context(|| {
            format!(
                "close_range(3, ~0, {when:?}) (Linux 5.9+; OnExec's CLOSE_RANGE_CLOEXEC: 5.11+)"
            )
        })
}

//! Step 01: run a command as PID 1 of its own PID, mount and UTS namespaces.
//!
//! The whole life of a container in this step:
//!
//! ```text
//! runtime (host PID namespace)                 child (new PID, mount and UTS namespaces)
//! ----------------------------                 -----------------------------------------
//! block the forwarded signals
//! clone(NEWPID | NEWNS | NEWUTS) ───────────▶  PID 1: waits on the sync pipe
//! check the child really is isolated
//! hooks.child_started(pid)  (cgroups, network in later steps)
//! write "go" to the sync pipe ──────────────▶  make mounts private, mount a new /proc
//!                                              set the hostname
//! forward signals, reap, wait ◀── SIGCHLD ──   exec CMD (or run the tiny init, CMD as PID 2)
//! exit with CMD's status (128+N if killed by signal N)
//! ```
//!
//! Later steps reuse this crate through [`run`] and [`Hooks`]: they replace the
//! filesystem setup (step 02 pivots into a rootfs) and add work in the parent
//! while the child waits (step 04 wires its network, step 05 its cgroup).

#[cfg(not(target_os = "linux"))]
compile_error!(
    "containers are made of Linux kernel features: build and test the workshop on Linux. \
     Start the workshop VM (`vagrant up`, then `vagrant ssh`) or see the book's Setup chapter."
);

pub mod child;
pub mod cli;
pub mod exec;
pub mod exit_status;
pub mod init;
pub mod mounts;
pub mod namespaces;
pub mod signals;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// What to run, and how to isolate it.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The command and its arguments; `command[0]` is looked up in `PATH`.
    pub command: Vec<String>,
    /// The hostname inside the new UTS namespace (unchanged when `None`).
    pub hostname: Option<String>,
    /// Run the runtime's tiny init as PID 1 and the command as PID 2.
    pub init: bool,
    /// The namespaces the child is cloned into.
    pub namespaces: CloneFlags,
}

impl Spec {
    /// A spec for `command` in the namespaces this step creates.
    pub fn new(command: Vec<String>) -> Self {
        Spec {
            command,
            hostname: None,
            init: false,
            namespaces: namespaces::container_namespaces(),
        }
    }
}

/// The points where later steps plug into the life of a container.
pub trait Hooks {
    /// Runs in the child, inside its new namespaces, before the hostname is set
    /// and the command starts. Step 01 mounts a private `/proc`; step 02 pivots
    /// into a root filesystem instead.
    fn prepare_filesystem(&self) -> Result<()> {
        mounts::mount_private_proc_safely()
    }

    /// Runs in the parent once the child exists, while it still waits on the
    /// sync pipe: the moment to put it into a cgroup or give it a network.
    fn child_started(&self, _child: Pid) -> Result<()> {
        Ok(())
    }
}

/// Step 01's behaviour: the host's filesystem with a private `/proc`.
#[derive(Debug, Default)]
pub struct HostFilesystem;

impl Hooks for HostFilesystem {}

/// Runs `spec` to completion and returns the exit code the runtime should
/// exit with: the command's own code, or 128+N when a signal N killed it.
pub fn run(spec: &Spec, hooks: &dyn Hooks) -> Result<i32> {
    ensure_single_threaded()?;
    // Blocked before clone so that no signal can slip in between: the child
    // inherits the mask and unblocks it just before exec.
    let previous_mask = signals::block_supervised_signals()?;
    let result = start_and_supervise(spec, hooks);
    signals::finish_supervision(&previous_mask)?;
    result
}

fn start_and_supervise(spec: &Spec, hooks: &dyn Hooks) -> Result<i32> {
    let sync = child::SyncPipe::new()?;
    let pid = namespaces::spawn_in_namespaces(spec.namespaces, || child::main(spec, hooks, &sync))?;
    let ready = namespaces::ensure_isolated(pid, spec.namespaces)
        .and_then(|()| hooks.child_started(pid))
        .and_then(|()| signals::take_pending_forwarded());
    let stop_before_start = match ready {
        Err(error) => Some(Err(error)),
        // Told to stop before it ran: it never runs, and ends as if the
        // signal had killed it.
        Ok(Some(signal)) => Some(Ok(128 + signal as i32)),
        Ok(None) => sync.release_child().err().map(Err),
    };
    if let Some(result) = stop_before_start {
        stop_unstarted_child(pid);
        return result;
    }
    let status = signals::supervise(pid).context("waiting for the container")?;
    Ok(exit_status::exit_code(status))
}

/// clone(2) copies only the calling thread: a lock another thread held at
/// that moment stays locked forever in the child (malloc's, for one). And
/// the signal mask we block is per thread: another thread would take the
/// signals meant for the supervision loop.
fn ensure_single_threaded() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse::<u32>().ok());
    match threads {
        Some(1) => Ok(()),
        Some(n) => {
            anyhow::bail!("run() must be called from a single-threaded process ({n} threads)")
        }
        None => anyhow::bail!("no Threads: line in /proc/self/status"),
    }
}

/// Kills a child that never got the signal to start, and reaps it.
fn stop_unstarted_child(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

//! Test support for the tara workshop's acceptance tests.
//!
//! * [`require_root`]: the tests drive the real kernel (namespaces, mounts,
//!   cgroups, veths) and need root; without it they fail at once with one
//!   message that says how to run them. They never skip: instructors grade
//!   with them.
//! * [`Sandbox`]: a private temporary directory per test, the processes the
//!   test started, and on drop, even when the test failed: the processes
//!   killed, the directory removed, and a check that nothing (a mount, a
//!   process) outlived the test.
//! * [`rootfs`]: a busybox root filesystem, built once per run under
//!   `target/`, shared by the tests behind a file lock.
//! * [`snapshots`]: insta settings with the redactions the workshop needs.
//! * [`exercises`]: failures that name the blank exercise, and tests that
//!   call one exercise's function in a fresh process.
//! * [`netns`]: a network namespace per test that plays the host, so that
//!   nothing a test does reaches the machine's own network.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "The tara workshop builds Linux containers: it needs a Linux kernel. \
     Start the workshop VM (`vagrant up`, then `vagrant ssh` and `cd /workshop`) and run the \
     tests there."
);

pub mod cgroups;
pub mod exercises;
pub mod finished;
pub mod netns;
pub mod process;
pub mod rootfs;
pub mod sandbox;
pub mod snapshots;
pub mod store_cli;

pub use cgroups::TestCgroup;
pub use exercises::{
    call_exercise, cut_from_the_host, fail_on_blank_exercise, in_child, in_fresh_process,
    run_to_end, share_every_mount_here, shared_mount_points, still_shared_message,
};
pub use finished::Finished;
pub use netns::{HostNetns, Outside};
pub use process::{run_with_deadline, Ended, Running, DEFAULT_DEADLINE};
pub use rootfs::{busybox_rootfs, private_busybox_rootfs};
pub use sandbox::Sandbox;
pub use snapshots::snapshot_settings;
pub use store_cli::StoreCli;

use std::time::{Duration, Instant};

/// The one message every acceptance test fails with when it lacks root.
pub const NEEDS_ROOT: &str = "\
these acceptance tests need root: they create namespaces, mounts, cgroups and network \
interfaces on the real kernel.
How to run them:
  * in the workshop VM: `vagrant ssh`, `cd /workshop`, `cargo test -p <package>`; the \
workspace's test runner (.cargo/config.toml) re-runs the test binaries with sudo;
  * on a Linux host: the same command, with passwordless sudo, or as root.";

/// Fails the test at once, with [`NEEDS_ROOT`], unless it runs as root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        // Printed by hand and unwound without the panic hook: the message is
        // the whole story, a backtrace (RUST_BACKTRACE=1) would bury it.
        eprintln!("error: {NEEDS_ROOT}");
        std::panic::resume_unwind(Box::new(NEEDS_ROOT));
    }
}

/// Polls `condition` until it returns `Some`, or panics after `deadline`
/// naming `what` was awaited. Never a bare sleep: a loaded machine only makes
/// the wait longer, not the test wrong.
pub fn wait_for<T>(what: &str, deadline: Duration, condition: impl FnMut() -> Option<T>) -> T {
    poll_until(deadline, condition)
        .unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// Polls `condition` until it returns `Some` or `deadline` has passed.
pub fn poll_until<T>(deadline: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The host's mount table as this process sees it: the lines of
/// /proc/self/mountinfo.
pub fn mount_table() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading /proc/self/mountinfo")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `sh -c SCRIPT` in a new mount namespace cut from the host's (all its
/// mounts private): whatever the script mounts goes away with it. Add the
/// script's arguments ($0, $1, ...) to the returned command.
pub fn sh_in_throwaway_mount_namespace(script: &str) -> std::process::Command {
    let mut command = std::process::Command::new("unshare");
    command.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
    ]);
    command
}

/// How the mounts of a throwaway mount namespace propagate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Every mount private: a host like this test machine.
    Private,
    /// Every mount shared, as on every systemd host (systemd makes `/`
    /// shared at boot). A runtime that forgets to make its mounts private
    /// leaks them there, and pivot_root refuses to work.
    Shared,
}

/// Runs `command` as if on a host whose mounts propagate as `propagation`
/// says, and fails the test if that host's mount table changed by the time
/// the command exited. Returns the command's output (run with a deadline).
///
/// The "host" is a throwaway mount namespace, cut from the real one first
/// (`--propagation private`), so nothing can leak into the machine's own
/// mount table, and nothing the machine mounts meanwhile disturbs the test.
pub fn run_on_throwaway_host(
    sandbox: &Sandbox,
    propagation: Propagation,
    command: &std::process::Command,
) -> std::process::Output {
    let make_shared = match propagation {
        Propagation::Private => "",
        Propagation::Shared => "mount --make-rshared / || exit 125",
    };
    // $0 is the scratch directory, "$@" the command.
    let script = format!(
        r#"{make_shared}
cat /proc/self/mountinfo > "$0/before"
"$@"
code=$?
cat /proc/self/mountinfo > "$0/after"
exit $code"#
    );
    let mut wrapped = sh_in_throwaway_mount_namespace(&script);
    wrapped
        .arg(sandbox.path())
        .arg(command.get_program())
        .args(command.get_args());
    copy_environment(command, &mut wrapped);
    sandbox.mark(&mut wrapped);
    let ended = run_with_deadline(wrapped, DEFAULT_DEADLINE);
    fail_on_blank_exercise(&ended.output);
    assert!(
        !ended.timed_out,
        "the command did not finish within {DEFAULT_DEADLINE:?}: {ended:?}"
    );
    let output = ended.output;
    let before = std::fs::read_to_string(sandbox.join("before")).expect("the mount table before");
    let after = std::fs::read_to_string(sandbox.join("after")).expect("the mount table after");
    if propagation == Propagation::Shared {
        assert!(
            before.contains("shared:"),
            "the namespace should have shared mounts:\n{before}"
        );
    }
    assert_eq!(
        after, before,
        "a mount of the container reached the host's mount table"
    );
    output
}

/// Gives `to` the environment changes made to `from` (set and removed
/// variables): for a wrapper command that runs `from`'s program.
pub fn copy_environment(from: &std::process::Command, to: &mut std::process::Command) {
    for (key, value) in from.get_envs() {
        match value {
            Some(value) => to.env(key, value),
            None => to.env_remove(key),
        };
    }
}

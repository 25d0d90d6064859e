//! Feedback for the student, one exercise at a time.
//!
//! * [`blank_exercise`], [`fail_on_blank_exercise`] and [`call_exercise`]:
//!   when a process or a call stops at an exercise that is still a `todo!()`,
//!   the test says which one instead of only "exited with 101".
//! * [`in_fresh_process`]: a test that calls an exercise's function directly
//!   runs it in a fresh copy of the test binary that runs that test alone,
//!   where `clone(2)`, `fork(2)` and changes to the mount namespace or the
//!   signal mask are safe and cannot disturb the tests running beside it.
//! * [`in_child`]: runs a closure in a child process cloned into new
//!   namespaces, and brings back what went wrong there as a message.

use crate::finished::Finished;
use crate::process::{run_with_deadline, Ended};
use crate::{poll_until, DEFAULT_DEADLINE};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What `todo!("EXERCISE 3: ...")` prints when it is reached.
const TODO_PREFIX: &str = "not yet implemented: ";

/// The exercise (`EXERCISE 3: mount a new procfs`) that a process stopped
/// at, if its stderr shows that it reached a `todo!()` of the starter.
pub fn blank_exercise(stderr: &str) -> Option<&str> {
    let (_, rest) = stderr.split_once(TODO_PREFIX)?;
    let line = rest.lines().next()?.trim();
    line.starts_with("EXERCISE").then_some(line)
}

/// The one-line explanation of a failure caused by a blank exercise.
pub fn needs_exercise(exercise: &str) -> String {
    format!(
        "this test needs {exercise}, which is still a todo!(): solve it and run the tests again"
    )
}

/// Fails the test at once, naming the exercise, when `output` is that of a
/// process that stopped at a blank exercise; the process's stderr is shown
/// once, as it is.
#[track_caller]
pub fn fail_on_blank_exercise(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(exercise) = blank_exercise(&stderr) {
        eprintln!("--- the runtime's stderr ---\n{}", stderr.trim_end());
        panic!("{}", needs_exercise(exercise));
    }
}

/// Calls an exercise's function in this process; if it reaches its
/// `todo!()`, fails the test naming the exercise, like every other test.
#[track_caller]
pub fn call_exercise<T>(exercise: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(exercise)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            match blank_exercise(message) {
                Some(exercise) => panic!("{}", needs_exercise(exercise)),
                None => std::panic::resume_unwind(payload),
            }
        }
    }
}

/// Runs `command` to its end (the whole process group it starts is killed
/// after [`DEFAULT_DEADLINE`]) and returns its output, ready for assertions,
/// after failing at once, naming the exercise, if it stopped at a blank one.
#[track_caller]
pub fn run_to_end(command: Command) -> Finished {
    let ended = run_with_deadline(command, DEFAULT_DEADLINE);
    fail_on_blank_exercise(&ended.output);
    Finished::new(ended)
}

/// Set in the fresh process to the name of the test it runs.
const FRESH_PROCESS_VARIABLE: &str = "TESTKIT_FRESH_PROCESS";

/// How long [`in_child`] waits: less than the fresh process's deadline, so
/// that the inner wait, which knows what hung, is the one that reports it.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `body` in a fresh copy of this test binary that runs only the
/// calling test, and fails the test if `body` panics there or takes longer
/// than [`DEFAULT_DEADLINE`]. Call it from the test function itself (the
/// test is found by its thread's name, which libtest sets).
///
/// Why: libtest runs tests on many threads at once, and `clone(2)` or
/// `fork(2)` copy only the calling thread: a lock that another thread holds
/// at that moment (malloc's, stdout's) stays locked forever in the child.
/// The fresh process runs one test, so no other thread is busy.
#[track_caller]
pub fn in_fresh_process(body: impl FnOnce()) {
    crate::require_root();
    let thread = std::thread::current();
    let name = thread
        .name()
        .filter(|name| *name != "main")
        .expect("in_fresh_process must be called from a test's own thread");
    if let Ok(running) = std::env::var(FRESH_PROCESS_VARIABLE) {
        assert_eq!(running, name, "the fresh process runs another test");
        return body();
    }
    let ended = run_fresh_process(name);
    let stdout = String::from_utf8_lossy(&ended.output.stdout);
    let stderr = String::from_utf8_lossy(&ended.output.stderr);
    if ended.output.status.success() && stdout.contains("1 passed") {
        return;
    }
    eprintln!(
        "--- the fresh process running {name} ---\n{}",
        stderr.trim_end()
    );
    match blank_exercise(&stderr) {
        Some(exercise) => panic!("{}", needs_exercise(exercise)),
        None if ended.timed_out => panic!(
            "{name} did not finish within {DEFAULT_DEADLINE:?} and was killed (what it printed is \
             above): is something waiting forever?"
        ),
        None if !stdout.contains("running 1 test") => {
            panic!(
                "the fresh process for {name} ran no test ({}):\n{stdout}",
                ended.output.status
            )
        }
        None => panic!(
            "{name} failed in its fresh process ({}; its message is above)",
            ended.output.status
        ),
    }
}

/// Runs the current test binary with only the test `name`, on one thread,
/// with a deadline.
fn run_fresh_process(name: &str) -> Ended {
    let binary = std::env::current_exe().expect("the path of the test binary");
    let mut command = Command::new(binary);
    command
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(FRESH_PROCESS_VARIABLE, name)
        .env("RUST_BACKTRACE", "0");
    run_with_deadline(command, DEFAULT_DEADLINE)
}

/// Runs `check` in a child process cloned into the new namespaces `flags`
/// and returns what it returned. An error message travels back through a
/// pipe; a panic in the child counts as an error too, and so does a child
/// that is still running after [`CHILD_DEADLINE`] (it is killed).
///
/// Call it only from [`in_fresh_process`]: see there why.
pub fn in_child(
    flags: CloneFlags,
    check: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let _ = PARENTS_MOUNT_NAMESPACE.set(own_mount_namespace().expect("our mount namespace"));
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2(2)");
    let mut check = Some(check);
    let child = move || {
        // Whatever happens to the test, the child must not outlive it.
        if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
            return 2;
        }
        let check = check.take().expect("the child runs once");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("the check panicked (see the message above)".to_string()));
        match result {
            Ok(()) => 0,
            Err(message) => {
                let _ = nix::unistd::write(&write_end, message.as_bytes());
                1
            }
        }
    };
    let mut stack = vec![0u8; 1024 * 1024];
    // SAFETY: the fresh process runs a single test: no other thread holds a
    // lock that the child would inherit locked; the child has its own stack.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(child),
            &mut stack,
            flags,
            Some(Signal::SIGCHLD as i32),
        )
    }
    .expect("clone(2) for the check's child");
    let exited = wait_with_deadline(pid, CHILD_DEADLINE);
    let message = read_message(read_end);
    match exited {
        Some(WaitStatus::Exited(_, 0)) => Ok(()),
        _ if !message.is_empty() => Err(message),
        None => Err(format!(
            "the check did not finish within {CHILD_DEADLINE:?} and was killed: is something \
             waiting forever?"
        )),
        Some(other) => Err(format!("the check's child ended with {other:?}")),
    }
}

/// Waits for `pid`; kills it after `deadline` and returns `None`.
fn wait_with_deadline(pid: Pid, deadline: Duration) -> Option<WaitStatus> {
    let exited = poll_until(deadline, || {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => None,
            other => Some(other.expect("waitpid for the check's child")),
        }
    });
    if exited.is_none() {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    exited
}

/// What the child wrote to the pipe before it exited. Read without
/// blocking: a process the check forked may still hold the write end.
fn read_message(read_end: OwnedFd) -> String {
    let _ = fcntl(&read_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(read_end).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The mount namespace of the process that called [`in_child`], as the child
/// finds it in its copy of the parent's memory.
static PARENTS_MOUNT_NAMESPACE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The target of /proc/self/ns/mnt, which names this process's mount namespace.
fn own_mount_namespace() -> Result<PathBuf, String> {
    std::fs::read_link("/proc/self/ns/mnt").map_err(|e| format!("readlink /proc/self/ns/mnt: {e}"))
}

/// Fails unless this is a child of [`in_child`] in a mount namespace of its
/// own: the mount helpers below would change the host's mounts otherwise.
fn ensure_own_mount_namespace() -> Result<(), String> {
    match PARENTS_MOUNT_NAMESPACE.get() {
        Some(parents) if *parents != own_mount_namespace()? => Ok(()),
        _ => Err(
            "refusing to change mount propagation outside a child of in_child with a new \
                  mount namespace"
                .into(),
        ),
    }
}

/// For a child in a new mount namespace: makes every mount private, so that
/// nothing the test mounts can reach the host.
pub fn cut_from_the_host() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    ensure_own_mount_namespace()?;
    let flags = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("mount --make-rprivate /: {e}"))
}

/// For a child in a new mount namespace: cuts every mount off from the host
/// (so nothing done here can reach it), then makes them all shared among
/// themselves, the way systemd makes them shared at boot. A runtime that
/// forgets MS_PRIVATE is then caught without any risk to the host.
pub fn share_every_mount_here() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    cut_from_the_host()?;
    let flags = MsFlags::MS_REC | MsFlags::MS_SHARED;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("mount --make-rshared /: {e}"))
}

/// The mount points still shared in this mount namespace, from
/// /proc/self/mountinfo (a `shared:N` tag among the optional fields).
pub fn shared_mount_points() -> Vec<String> {
    crate::mount_table()
        .iter()
        .filter(|line| line.split(" - ").next().unwrap_or("").contains(" shared:"))
        .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// An error message for mounts still shared: the first few of them.
pub fn still_shared_message(shared: &[String]) -> String {
    let first: Vec<&str> = shared.iter().take(3).map(String::as_str).collect();
    format!(
        "{} mounts are still shared ({}{}): was MS_PRIVATE passed with MS_REC, on /?",
        shared.len(),
        first.join(", "),
        if shared.len() > 3 { ", ..." } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_todo_of_the_starter_names_its_exercise() {
        let stderr = "thread 'main' (7) panicked at src/signals.rs:140:5:\n\
                      not yet implemented: EXERCISE 4: reap every exited child\n\
                      note: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            blank_exercise(stderr),
            Some("EXERCISE 4: reap every exited child")
        );
    }

    #[test]
    fn other_todos_and_errors_name_no_exercise() {
        assert_eq!(blank_exercise("not yet implemented: later\n"), None);
        assert_eq!(blank_exercise("sh: nope: not found\n"), None);
    }

    #[test]
    fn a_blank_exercise_called_in_process_is_named() {
        let panic =
            std::panic::catch_unwind(|| call_exercise(|| -> u32 { todo!("EXERCISE 2: add one") }))
                .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("this test needs EXERCISE 2: add one"),
            "{message}"
        );
        assert_eq!(call_exercise(|| 7), 7);
    }

    #[test]
    fn the_mount_helpers_refuse_the_hosts_namespace() {
        assert!(cut_from_the_host().is_err());
        assert!(share_every_mount_here().is_err());
    }

    #[test]
    fn only_the_first_shared_mounts_are_named() {
        let shared: Vec<String> = ["/", "/proc", "/sys", "/dev"].map(String::from).to_vec();
        let message = still_shared_message(&shared);
        assert!(
            message.starts_with("4 mounts are still shared (/, /proc, /sys, ...)"),
            "{message}"
        );
    }
}

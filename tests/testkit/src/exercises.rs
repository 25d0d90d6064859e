//! Feedback for the student, one exercise at a time.
//!
//! * [`blank_exercise`] and [`fail_on_blank_exercise`]: when a process stops
//!   at an exercise that is still a `todo!()`, the test says which one
//!   instead of only "exited with 101".
//! * [`in_fresh_process`]: a test that calls an exercise's function directly
//!   runs it in a fresh, nearly single-threaded copy of the test binary, where
//!   `clone(2)`, `fork(2)` and changes to the mount namespace or the signal
//!   mask are safe and cannot disturb the tests running beside it.
//! * [`in_child`]: runs a closure in a child process cloned into new
//!   namespaces, and brings back what went wrong there as a message.

use crate::finished::Finished;
use crate::{poll_until, DEFAULT_DEADLINE};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};

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
pub fn fail_on_blank_exercise(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(exercise) = blank_exercise(&stderr) {
        eprintln!("--- the runtime's stderr ---\n{}", stderr.trim_end());
        panic!("{}", needs_exercise(exercise));
    }
}

/// Runs `command` to its end (killed after [`DEFAULT_DEADLINE`]) and returns
/// its output ready for assertions, after failing at once,
/// naming the exercise, if it stopped at a blank one.
#[track_caller]
pub fn run_to_end(command: Command) -> Finished {
    let output = assert_cmd::Command::from_std(command)
        .timeout(DEFAULT_DEADLINE)
        .output()
        .expect("starting the command");
    fail_on_blank_exercise(&output);
    Finished::new(output)
}

/// Set in the fresh process to the name of the test it runs.
const FRESH_PROCESS_VARIABLE: &str = "TESTKIT_FRESH_PROCESS";

/// Runs `body` in a fresh copy of this test binary that runs only the test
/// `name` (which must be the calling test's own name), and fails the test
/// if `body` panics there or takes longer than [`DEFAULT_DEADLINE`].
///
/// Why: libtest runs tests on many threads at once, and `clone(2)` or
/// `fork(2)` copy only the calling thread: a lock that another thread holds
/// at that moment (malloc's, stdout's) stays locked forever in the child.
/// The fresh process runs one test, so no other thread is busy.
#[track_caller]
pub fn in_fresh_process(name: &str, body: impl FnOnce()) {
    crate::require_root();
    if std::env::var(FRESH_PROCESS_VARIABLE).is_ok_and(|running| running == name) {
        return body();
    }
    let output = run_fresh_process(name);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && stdout.contains("1 passed") {
        return;
    }
    if !stdout.contains("running 1 test") {
        panic!("in_fresh_process({name:?}): no test of that name in this binary:\n{stdout}");
    }
    eprintln!(
        "--- the fresh process running {name} ---\n{}",
        stderr.trim_end()
    );
    match blank_exercise(&stderr) {
        Some(exercise) => panic!("{}", needs_exercise(exercise)),
        None if output.status.code().is_none() => panic!(
            "{name} did not finish within {DEFAULT_DEADLINE:?} and was killed (what it printed is \
             above): is something waiting forever?"
        ),
        None => panic!("{name} failed in its fresh process (its message is above)"),
    }
}

/// Runs the current test binary with only the test `name`, on one thread,
/// with a deadline; returns its output (status without a code when killed).
fn run_fresh_process(name: &str) -> Output {
    let binary = std::env::current_exe().expect("the path of the test binary");
    let mut command = Command::new(binary);
    command
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(FRESH_PROCESS_VARIABLE, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    assert_cmd::Command::from_std(command)
        .timeout(DEFAULT_DEADLINE)
        .output()
        .unwrap_or_else(|e| panic!("starting the test binary for {name}: {e}"))
}

/// Runs `check` in a child process cloned into the new namespaces `flags`
/// and returns what it returned. An error message travels back through a
/// pipe; a panic in the child counts as an error too.
///
/// Call it only from [`in_fresh_process`]: see there why.
pub fn in_child(
    flags: CloneFlags,
    check: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe(2)");
    let mut check = Some(check);
    let child = move || {
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
    let status = wait_with_deadline(pid);
    let message = read_message(read_end);
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        _ if !message.is_empty() => Err(message),
        other => Err(format!("the check's child ended with {other:?}")),
    }
}

/// For a child in a new mount namespace: cuts every mount off from the host
/// (so nothing done here can reach it), then makes them all shared among
/// themselves, the way systemd makes `/` shared at boot. A runtime that
/// forgets MS_PRIVATE is then caught without any risk to the host.
pub fn share_every_mount_here() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    for propagation in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | propagation,
            None::<&str>,
        )
        .map_err(|e| format!("mount --make-r{propagation:?} /: {e}"))?;
    }
    Ok(())
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

/// Waits for `pid`, killing it after [`DEFAULT_DEADLINE`].
fn wait_with_deadline(pid: Pid) -> WaitStatus {
    let flags = Some(nix::sys::wait::WaitPidFlag::WNOHANG);
    let exited = poll_until(DEFAULT_DEADLINE, || match waitpid(pid, flags) {
        Ok(WaitStatus::StillAlive) => None,
        other => Some(other.expect("waitpid for the check's child")),
    });
    exited.unwrap_or_else(|| {
        let _ = kill(pid, Signal::SIGKILL);
        waitpid(pid, None).expect("waitpid for the killed child")
    })
}

/// Everything written to the pipe whose write end the child held (and we
/// dropped when the closure moved into the child's copy).
fn read_message(read_end: OwnedFd) -> String {
    let mut message = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut message);
    message
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
}

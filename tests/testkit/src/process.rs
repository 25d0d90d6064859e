//! Processes a test starts and must not lose.

use crate::exercises::{blank_exercise, needs_exercise};
use crate::poll_until;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test waits for anything before it fails: generous, because a
/// loaded 2-core machine is slow, and harmless, because waits end as soon as
/// their condition holds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// How a command run with [`run_with_deadline`] ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status and everything it printed.
    pub output: Output,
    /// Whether it was killed because the deadline had passed.
    pub timed_out: bool,
}

/// Runs `command` to its end, with no stdin, in a process group of its own,
/// and kills the whole group if it is still running after `deadline`.
///
/// Its stdout and stderr go to files, not pipes: a process it left behind
/// that still holds them cannot make the test wait for an end of file that
/// never comes, and the group kill takes such processes down too.
pub fn run_with_deadline(mut command: Command, deadline: Duration) -> Ended {
    let dir = tempfile::tempdir().expect("a temp dir for the command's output");
    let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("an output file");
    command
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .process_group(0);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let exited = poll_until(deadline, || child.try_wait().expect("waitpid"));
    let timed_out = exited.is_none();
    let status = exited.unwrap_or_else(|| {
        // The group's ID is its leader's PID, a process this test started.
        let group = Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        child.wait().expect("waitpid after the kill")
    });
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap_or_default();
    Ended {
        output: Output {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
        },
        timed_out,
    }
}

/// A child process whose stdout is read line by line in the background, and
/// whose stderr is collected for failure messages. Dropping it kills the
/// process (by its PID, which this test started) and reaps it.
#[derive(Debug)]
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Running {
    /// Takes over a child spawned with stdout and stderr piped.
    pub fn new(mut child: Child) -> Self {
        let stdout = child
            .stdout
            .take()
            .expect("spawn the child with stdout piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let collected = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                    let text = String::from_utf8_lossy(&chunk[..read]);
                    collected.lock().unwrap().push_str(&text);
                }
            })
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_reader,
        }
    }

    /// The PID of the process, as the host sees it.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// What the process has written on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the process prints `expected` as a whole line.
    #[track_caller]
    pub fn wait_for_line(&mut self, expected: &str) {
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == expected => return self.seen.push(line),
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("timed out waiting for the line {expected:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status =
                        poll_until(DEFAULT_DEADLINE, || self.child.try_wait().ok().flatten())
                            .map_or("still running".to_string(), |status| status.to_string());
                    self.fail(&format!(
                        "the process closed its stdout before printing {expected:?} ({status})"
                    ))
                }
            }
        }
    }

    /// Fails the test because of `what`, showing the process's stderr once,
    /// as it is, and naming the exercise when it stopped at a blank one.
    #[track_caller]
    pub fn fail(&mut self, what: &str) -> ! {
        // Once the process has exited, the reader thread may still hold its
        // last words (the exercise's todo!() message): let it finish.
        if let (Ok(Some(_)), Some(reader)) = (self.child.try_wait(), &self.stderr_reader) {
            poll_until(Duration::from_secs(2), || {
                reader.is_finished().then_some(())
            });
        }
        let stderr = self.stderr();
        eprintln!("--- the process's stderr ---\n{}", stderr.trim_end());
        if let Some(exercise) = blank_exercise(&stderr) {
            panic!("{what}: {}", needs_exercise(exercise));
        }
        panic!("{what}; it printed on stdout: {:?}", self.seen)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// Waits for the process to exit and returns its status and everything
    /// it printed on stdout.
    pub fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let status = poll_until(DEFAULT_DEADLINE, || self.child.try_wait().expect("waitpid"))
            .unwrap_or_else(|| {
                self.fail(&format!(
                    "the process {} did not exit within {DEFAULT_DEADLINE:?}",
                    self.pid()
                ))
            });
        // The pipe closes when the last holder exits; the reader thread then
        // disconnects the channel.
        while let Ok(line) = self.lines.recv_timeout(DEFAULT_DEADLINE) {
            self.seen.push(line);
        }
        // And the stderr reader has read the process's last words.
        if let Some(reader) = &self.stderr_reader {
            poll_until(DEFAULT_DEADLINE, || reader.is_finished().then_some(()));
        }
        (status, self.seen.clone())
    }

    /// The PIDs of this process's children, from /proc (CONFIG_PROC_CHILDREN).
    pub fn children(&self) -> Vec<Pid> {
        children_of(self.pid())
    }

    /// The one child of this process, once it exists: for a runtime, the
    /// container's PID 1 as the host sees it.
    pub fn only_child(&self) -> Pid {
        let children = crate::wait_for("the process to have a child", DEFAULT_DEADLINE, || {
            Some(self.children()).filter(|children| !children.is_empty())
        });
        assert_eq!(children.len(), 1, "expected one child, found {children:?}");
        children[0]
    }
}

/// The PIDs of `pid`'s children, as the host sees them.
pub fn children_of(pid: Pid) -> Vec<Pid> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// The state letter of `pid` in /proc/PID/stat (R, S, T, Z, ...), if it exists.
pub fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether `signal` is pending for `pid` (the ShdPnd or SigPnd masks of
/// /proc/PID/status).
pub fn signal_pending(pid: Pid, signal: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (signal as u32 - 1);
    status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("ShdPnd:")
                .or_else(|| line.strip_prefix("SigPnd:"))
        })
        .filter_map(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .any(|mask| mask & bit != 0)
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_stopped_process_shows_state_t_and_its_pending_signal() {
        let child = Command::new("sleep")
            .arg("60")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let sleeper = Running::new(child);
        sleeper.signal(Signal::SIGSTOP);
        crate::wait_for("sleep to stop", DEFAULT_DEADLINE, || {
            (process_state(sleeper.pid()) == Some('T')).then_some(())
        });
        assert!(!signal_pending(sleeper.pid(), Signal::SIGTERM));
        sleeper.signal(Signal::SIGTERM);
        crate::wait_for("SIGTERM to be pending", DEFAULT_DEADLINE, || {
            signal_pending(sleeper.pid(), Signal::SIGTERM).then_some(())
        });
    }
}

//! Processes a test starts and must not lose.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a test waits for anything before it fails: generous, because a
/// loaded 2-core machine is slow, and harmless, because waits end as soon as
/// their condition holds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// A child process whose stdout is read line by line in the background.
/// Dropping it kills the process (by its PID, which this test started) and
/// reaps it.
#[derive(Debug)]
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Takes over a child spawned with `stdout(Stdio::piped())`.
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
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The PID of the process, as the host sees it.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits until the process prints `expected` as a whole line.
    pub fn wait_for_line(&mut self, expected: &str) {
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == expected => return self.seen.push(line),
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for the line {expected:?}; the process printed {:?}",
                    self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed its stdout before printing {expected:?}; it printed {:?} \
                     and exited with {:?}",
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// Waits for the process to exit and returns its status and everything
    /// it printed on stdout.
    pub fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process {} did not exit within {DEFAULT_DEADLINE:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe closes when the last holder exits; the reader thread then
        // disconnects the channel.
        while let Ok(line) = self.lines.recv_timeout(DEFAULT_DEADLINE) {
            self.seen.push(line);
        }
        (status, self.seen.clone())
    }

    /// The PIDs of this process's children, from /proc (CONFIG_PROC_CHILDREN).
    pub fn children(&self) -> Vec<Pid> {
        children_of(self.pid())
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

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

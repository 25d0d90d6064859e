//! One sandbox per test: a temp directory, the processes the test started,
//! and a leak check when it is dropped.

use crate::process::Running;
use crate::{poll_until, require_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Every process a sandbox starts carries this variable in its environment
/// (and so do the container processes it forks, unless a runtime clears the
/// environment), so that leaks can be found by scanning /proc.
pub const MARKER_VARIABLE: &str = "TESTKIT_SANDBOX";

/// A test's private corner of the machine. Dropping it cleans up, also when
/// the test failed, and fails the test if anything it started outlived it.
#[derive(Debug)]
pub struct Sandbox {
    dir: TempDir,
    marker: String,
    leak_grace: Duration,
}

/// How long a dropped sandbox waits for what its test started to go away
/// (a PID namespace, a cgroup, a veth are torn down asynchronously).
const LEAK_GRACE: Duration = Duration::from_secs(10);

impl Sandbox {
    /// Checks for root, then creates the sandbox.
    pub fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix(".tmp")
            .tempdir()
            .expect("creating the sandbox's temp dir");
        let marker = dir
            .path()
            .file_name()
            .expect("a temp dir has a name")
            .to_string_lossy()
            .into_owned();
        Sandbox {
            dir,
            marker,
            leak_grace: LEAK_GRACE,
        }
    }

    /// The sandbox's private directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the sandbox's directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Marks `command` as started by this sandbox (see [`MARKER_VARIABLE`]).
    pub fn mark<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env(MARKER_VARIABLE, &self.marker)
    }

    /// Starts `command` in the background with its stdout and stderr
    /// captured, and the sandbox's marker.
    pub fn spawn(&self, mut command: Command) -> Running {
        self.mark(&mut command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        Running::new(child)
    }

    /// The PIDs of live processes carrying this sandbox's marker.
    pub fn marked_processes(&self) -> Vec<i32> {
        let needle = format!("{MARKER_VARIABLE}={}", self.marker);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|environ| {
                        environ
                            .split(|b| *b == 0)
                            .any(|var| var == needle.as_bytes())
                    })
                    .unwrap_or(false)
            })
            .filter(|pid| !is_zombie(*pid))
            .collect()
    }

    /// Mount points in this process's mount table that lie in the sandbox.
    pub fn mounts_inside(&self) -> Vec<String> {
        let dir = self.path().to_string_lossy().into_owned();
        crate::mount_table()
            .into_iter()
            .filter(|line| {
                line.split(' ')
                    .nth(4)
                    .is_some_and(|point| point.starts_with(&dir))
            })
            .collect()
    }

    /// Everything this sandbox left behind, as human-readable lines.
    fn leaks(&self) -> Vec<String> {
        let mut leaks: Vec<String> = self
            .mounts_inside()
            .into_iter()
            .map(|mount| format!("mount left behind: {mount}"))
            .collect();
        leaks.extend(
            self.marked_processes()
                .into_iter()
                .map(|pid| format!("process left behind: PID {pid} ({})", command_line(pid))),
        );
        leaks
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Processes die asynchronously (a PID namespace is torn down after its
        // init exits): give them the deadline, then report and kill them.
        let settled = poll_until(self.leak_grace, || self.leaks().is_empty().then_some(()));
        let leaks = self.leaks();
        for pid in self.marked_processes() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        for mount in self.mounts_inside() {
            if let Some(point) = mount.split(' ').nth(4) {
                let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if settled.is_none() && !leaks.is_empty() && !std::thread::panicking() {
            panic!("the test leaked resources:\n  {}", leaks.join("\n  "));
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_DEADLINE;

    #[test]
    fn a_marked_process_is_found_until_it_is_gone() {
        let sandbox = Sandbox::new();
        let mut command = Command::new("sleep");
        command.arg("60");
        let mut sleeper = sandbox.spawn(command);
        let pid = sleeper.pid().as_raw();
        // The kernel fills /proc/PID/environ in a late stage of execve.
        crate::wait_for("the sleep to carry the marker", DEFAULT_DEADLINE, || {
            (sandbox.marked_processes() == vec![pid]).then_some(())
        });
        sleeper.signal(nix::sys::signal::Signal::SIGKILL);
        sleeper.wait();
        assert!(sandbox.marked_processes().is_empty());
    }

    #[test]
    fn a_leaked_process_fails_the_test_and_is_killed() {
        let mut sandbox = Sandbox::new();
        sandbox.leak_grace = Duration::from_millis(200);
        let mut command = Command::new("sleep");
        command.arg("60");
        sandbox.mark(&mut command);
        let mut child = command.spawn().unwrap();
        let pid = child.id() as i32;
        // The marker shows in /proc/PID/environ once the child has exec'd.
        crate::wait_for("the sleep to carry the marker", DEFAULT_DEADLINE, || {
            sandbox.marked_processes().contains(&pid).then_some(())
        });
        // Drop the sandbox with the process still running: it must complain.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(sandbox)));
        let message = *dropped.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains(&format!("PID {pid}")), "{message}");
        crate::wait_for("the leaked sleep to be killed", DEFAULT_DEADLINE, || {
            is_zombie(pid).then_some(())
        });
        child.wait().unwrap();
    }
}

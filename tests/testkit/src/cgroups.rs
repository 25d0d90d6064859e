//! A cgroup parent of a test's own, for step 05's `--cgroup-parent`.
//!
//! On cgroup v1 (this project's CI machine) it is a name relative to the
//! test process's own cgroup, so a container's cgroup lands beneath it in
//! every hierarchy, and nowhere else. On cgroup v2 (the students' VM, the
//! kernel-test guest) a cgroup that holds processes cannot hand controllers
//! to its children, so the parent is a cgroup of its own at the top of the
//! unified hierarchy, `/tara-test-PID-N`. Dropping it fails the test if a
//! container's cgroup is still there, and removes the parent.

use crate::{copy_environment, poll_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Processes a test's containers may have together.
const SAFETY_PIDS_MAX: &str = "500";

/// The v1 controllers step 05 uses, each with its hierarchy.
const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];

/// A cgroup hierarchy mounted here: where, with which v1 controllers (empty
/// for v2), and this process's cgroup in it.
#[derive(Debug, Clone)]
struct Mounted {
    point: PathBuf,
    controllers: String,
    own: String,
}

/// A test's cgroup parent.
#[derive(Debug)]
pub struct TestCgroup {
    name: String,
    v2: bool,
    mounts: Vec<Mounted>,
}

impl TestCgroup {
    pub fn new() -> Self {
        let name = format!(
            "tara-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let v1 = v1_hierarchies();
        let cgroup = if v1.is_empty() {
            let own = own_cgroup("").unwrap_or_else(|| "/".into());
            TestCgroup {
                name,
                v2: true,
                mounts: vec![Mounted {
                    point: unified_mount(),
                    controllers: String::new(),
                    own,
                }],
            }
        } else {
            TestCgroup {
                name,
                v2: false,
                mounts: v1,
            }
        };
        cgroup.make_with_a_safety_limit();
        cgroup
    }

    /// Makes the parent, with a `pids.max` of its own: a test whose
    /// container is not in its cgroup (a wrong exercise) must not let a
    /// fork bomb reach the machine's limits.
    fn make_with_a_safety_limit(&self) {
        for dir in self.dirs() {
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating the test's cgroup {}: {e}", dir.display()));
            let pids_max = dir.join("pids.max");
            if pids_max.exists() {
                std::fs::write(&pids_max, SAFETY_PIDS_MAX)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", pids_max.display()));
            }
        }
    }

    /// The parent's directory in the hierarchy of `controller` (v1), or
    /// the unified one (v2).
    pub fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .zip(self.dirs())
            .find(|(mount, _)| self.v2 || mount.controllers.split(',').any(|c| c == controller))
            .map(|(_, dir)| dir)
    }

    /// Whether this machine has cgroup v2 only (else v1, or hybrid).
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// What to pass to `--cgroup-parent`.
    pub fn parent_arg(&self) -> String {
        if self.v2 {
            format!("/{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The parent's directory in each hierarchy (they exist once a
    /// container was started under it).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|mount| {
                let base = if self.v2 { "/" } else { mount.own.as_str() };
                mount
                    .point
                    .join(base.trim_start_matches('/'))
                    .join(&self.name)
            })
            .collect()
    }

    /// The containers' cgroups below the parent, at any depth: what
    /// containers left. (Parents the runtime made, such as `tara`, stay
    /// until the test ends, as docker's `/docker` does.)
    pub fn left(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in self.dirs() {
            collect_dirs(&dir, &mut found);
        }
        found.retain(|dir| is_container_cgroup(dir));
        found
    }

    /// Fails unless no cgroup is left below the parent, waiting a little
    /// for the kernel to finish removing.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let gone = poll_until(Duration::from_secs(10), || {
            self.left().is_empty().then_some(())
        });
        assert!(gone.is_some(), "cgroups left behind: {:?}", self.left());
    }

    /// `command` run in a cgroup namespace whose root is this test's
    /// cgroup, with the v1 hierarchies mounted afresh in a mount namespace
    /// of its own: what the runtime sees as `/tara` is then
    /// `<this parent>/tara`. Lets a test use the default parent on a v1
    /// machine without making a cgroup outside its own.
    pub fn wrap_in_cgroup_namespace(&self, command: &Command) -> Command {
        assert!(
            !self.v2,
            "on cgroup v2 the default parent is tested as it is"
        );
        let mut script = String::from("set -e\n");
        for dir in self.dirs() {
            script.push_str(&format!(
                "mkdir -p '{0}'; echo $$ > '{0}/cgroup.procs'\n",
                dir.display()
            ));
        }
        let mut inner = String::from("set -e; mount -t tmpfs tmpfs /sys/fs/cgroup\n");
        for mount in &self.mounts {
            inner.push_str(&format!(
                "mkdir /sys/fs/cgroup/{0}; mount -t cgroup -o {0} cgroup /sys/fs/cgroup/{0}\n",
                mount.controllers
            ));
        }
        inner.push_str("exec \"$@\"");
        script.push_str(
            "exec unshare --cgroup --mount --propagation private sh -c \"$INNER\" sh \"$@\"",
        );
        let mut wrapped = Command::new("sh");
        wrapped
            .env("INNER", inner)
            .args(["-c", &script, "sh"])
            .arg(command.get_program())
            .args(command.get_args());
        copy_environment(command, &mut wrapped);
        wrapped
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let left = poll_until(Duration::from_secs(10), || {
            self.left().is_empty().then_some(())
        });
        let leaked = self.left();
        for dir in self.dirs() {
            remove_bottom_up(&dir);
        }
        if left.is_none() && !std::thread::panicking() {
            panic!("the test left cgroups behind: {leaked:?}");
        }
    }
}

/// A container's cgroup is named by its ID, 64 hex digits.
fn is_container_cgroup(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            found.push(entry.path());
            collect_dirs(&entry.path(), found);
        }
    }
}

/// rmdir's `dir` and everything below it, deepest first; a cgroup with
/// processes in it is first emptied by killing them (they are the test's).
fn remove_bottom_up(dir: &Path) {
    let mut below = Vec::new();
    collect_dirs(dir, &mut below);
    below.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    below.push(dir.to_path_buf());
    for cgroup in below {
        if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = poll_until(Duration::from_secs(10), || {
            match std::fs::remove_dir(&cgroup) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => None,
                _ => Some(()),
            }
        });
    }
}

/// The mounted v1 hierarchies of step 05's controllers (none on v2).
fn v1_hierarchies() -> Vec<Mounted> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<Mounted> = Vec::new();
    for line in mountinfo.lines() {
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = filesystem.split(' ').collect();
        if fields.first() != Some(&"cgroup") {
            continue;
        }
        let controllers: Vec<&str> = fields
            .get(2)
            .unwrap_or(&"")
            .split(',')
            .filter(|option| V1_CONTROLLERS.contains(option))
            .collect();
        let Some(first) = controllers.first() else {
            continue;
        };
        let point = PathBuf::from(mount.split(' ').nth(4).unwrap_or_default());
        if found.iter().any(|known| known.point == point) {
            continue;
        }
        if let Some(own) = own_cgroup(first) {
            found.push(Mounted {
                point,
                controllers: controllers.join(","),
                own,
            });
        }
    }
    found
}

/// Where the cgroup2 filesystem is mounted.
fn unified_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .find_map(|line| {
            let (mount, filesystem) = line.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?;
            filesystem
                .starts_with("cgroup2 ")
                .then(|| PathBuf::from(point))
        })
        .expect("a cgroup2 filesystem is mounted")
}

/// This process's cgroup in the hierarchy of `controller` ("" for v2).
fn own_cgroup(controller: &str) -> Option<String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|name| name == controller)
        };
        matches.then(|| path.to_string())
    })
}

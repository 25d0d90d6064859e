//! A container's cgroup: made, limited, joined, read, and removed.
//!
//! The interface is the same on both versions; what differs is in [`v1`]
//! and [`v2`], side by side:
//!
//! | what           | cgroup v2 (one directory)        | cgroup v1 (one per hierarchy)           |
//! |----------------|----------------------------------|-----------------------------------------|
//! | make           | enable controllers down the path | mkdir in each hierarchy                 |
//! | memory         | `memory.max`, `memory.swap.max`  | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` |
//! | processes      | `pids.max`                       | `pids.max`                              |
//! | CPU            | `cpu.max`, `cpu.weight`          | `cpu.cfs_quota_us`, `cpu.cfs_period_us`, `cpu.shares` |
//! | join           | `cgroup.procs`                   | `cgroup.procs` in each hierarchy        |
//! | OOM kills      | `memory.events`                  | `memory.oom_control`                    |
//! | kill all       | `cgroup.kill`                    | freeze (`freezer.state`), kill, thaw    |
//! | remove         | rmdir                            | rmdir in each hierarchy                 |

pub mod v1;
pub mod v2;

use crate::hierarchy::{self, Hierarchy, Layout, Version};
use crate::limits::Limits;
use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where containers' cgroups go unless `--cgroup-parent` says otherwise:
/// `/tara/<id>`, at the top of the hierarchy, as docker's `/docker/<id>`.
pub const DEFAULT_PARENT: &str = "/tara";

/// How long the kernel gets to end a cgroup's processes.
const EMPTY_DEADLINE: Duration = Duration::from_secs(10);

/// One container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub version: Version,
    /// Its directories: one in v2; one per hierarchy in v1.
    pub dirs: Vec<CgroupDir>,
}

/// A directory of the cgroup, and the controllers it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// v1: the hierarchy's controllers (`cpu,cpuacct` is one directory for
    /// two); v2: empty, the directory has them all.
    pub controllers: Vec<String>,
    /// e.g. `/sys/fs/cgroup/memory/tara/<id>`.
    pub path: PathBuf,
}

/// One file to write a limit to: `memory.max` = `67108864`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitFile {
    /// The controller the file belongs to (picks the directory in v1).
    pub controller: &'static str,
    pub name: &'static str,
    pub value: String,
}

impl LimitFile {
    pub fn new(controller: &'static str, name: &'static str, value: impl ToString) -> Self {
        LimitFile {
            controller,
            name,
            value: value.to_string(),
        }
    }
}

/// What `stats` shows of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the cgroup was made, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, without the page cache the kernel can drop at once
    /// (as `docker stats` counts it).
    pub memory: u64,
    /// The memory limit, `None` when there is none.
    pub memory_limit: Option<u64>,
    /// Processes and threads (`pids.current`).
    pub pids: u64,
    /// Processes the kernel killed for lack of memory.
    pub oom_kills: u64,
}

/// A `--cgroup-parent` that is a path of plain names.
pub fn check_parent(parent: &str) -> Result<()> {
    if parent == "/" {
        return Ok(());
    }
    let relative = parent.strip_prefix('/').unwrap_or(parent);
    let bad = |part: &str| {
        part.is_empty()
            || part == "."
            || part == ".."
            || part.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    if relative.split('/').any(bad) {
        bail!("--cgroup-parent {parent:?}: give a path of names, e.g. /tara or tara/tests");
    }
    Ok(())
}

impl Cgroup {
    /// Where the cgroup `name` goes under `parent`: an absolute parent is a
    /// path from the top of each hierarchy; a relative one is below this
    /// process's own cgroup there (`--cgroup-parent` as docker and runc
    /// read it).
    pub fn plan(layout: &Layout, parent: &str, name: &str) -> Result<Cgroup> {
        check_parent(parent)?;
        let dirs = layout
            .hierarchies
            .iter()
            .map(|hierarchy| {
                let parent = if parent.starts_with('/') {
                    parent.to_string()
                } else {
                    hierarchy::join(&hierarchy.own, parent)
                };
                Ok(CgroupDir {
                    controllers: hierarchy.mount.controllers.clone(),
                    path: hierarchy.dir_of(&hierarchy::join(&parent, name))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Cgroup {
            version: layout.version,
            dirs,
        })
    }

    /// Makes the cgroup's directories, and its parents where missing.
    pub fn create(&self, layout: &Layout) -> Result<()> {
        for (dir, hierarchy) in self.dirs.iter().zip(&layout.hierarchies) {
            match self.version {
                Version::V2 => v2::create(hierarchy, &dir.path)?,
                Version::V1 => v1::create(&dir.path)?,
            }
        }
        Ok(())
    }

    /// Writes the limits into the cgroup's files. Where the kernel counts no
    /// swap, a swap limit is left out, with a warning when it was asked for.
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let files = match self.version {
            Version::V2 => v2::limit_files(limits),
            Version::V1 => v1::limit_files(limits),
        };
        for file in files {
            let path = self.file(file.controller, file.name)?;
            if is_swap_file(file.name) && !path.exists() {
                if limits.memory_swap.is_some() {
                    pid::cli::report(&format!(
                        "warning: this kernel does not count swap ({} is missing): no swap limit",
                        file.name
                    ));
                }
                continue;
            }
            write(&path, &file.value)
                .with_context(|| format!("setting the limit {} = {}", file.name, file.value))?;
        }
        Ok(())
    }

    // ANCHOR: join
    /// Moves the process `pid` (all its threads) into the cgroup: from now
    /// on, what it and its children use is counted and limited here.
    /// (Exercise 4 comes after exercise 3, `kill_and_remove` below: with
    /// removal solved first, a failed start already leaves nothing, and
    /// one more test turns green before this one.)
    pub fn join(&self, pid: Pid) -> Result<()> {
        // EXERCISE 4: move the child into the cgroup. Hint: write its PID to cgroup.procs
        // in every directory of the cgroup (v1 has one per hierarchy).
        todo!("EXERCISE 4: move the child into the cgroup")
    }
    // ANCHOR_END: join

    /// What the cgroup has used, and its memory limit.
    pub fn usage(&self) -> Result<Usage> {
        match self.version {
            Version::V2 => v2::usage(self.dir_of("memory")?),
            Version::V1 => v1::usage(
                self.dir_of("cpuacct")?,
                self.dir_of("memory")?,
                self.dir_of("pids")?,
            ),
        }
    }

    /// How many processes the kernel's OOM killer ended in the cgroup.
    pub fn oom_kills(&self) -> Result<u64> {
        let memory = self.dir_of("memory")?;
        match self.version {
            Version::V2 => v2::oom_kills(memory),
            Version::V1 => v1::oom_kills(memory),
        }
    }

    /// Whether any of the cgroup's directories is still there.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|dir| dir.path.exists())
    }

    // ANCHOR: kill_and_remove
    /// Ends every process left in the cgroup and removes it, with any cgroup
    /// the container made below it. A cgroup that is gone already (removed
    /// by another command) is not an error.
    pub fn kill_and_remove(&self) -> Result<()> {
        // EXERCISE 3: kill what is left, wait until the cgroup is empty, then remove it.
        // Hint: return early unless exists(); kill_all; wait_until_empty; then rmdir
        // (remove_dir) every cgroup of each dir's subtree(), NotFound being fine.
        todo!("EXERCISE 3: kill what is left, wait until the cgroup is empty, then remove it")
    }
    // ANCHOR_END: kill_and_remove

    /// Sends SIGKILL to every process in the cgroup, so that none survives
    /// its container (one may have escaped PID 1's end, or the runtime died).
    pub fn kill_all(&self) -> Result<()> {
        match self.version {
            Version::V2 => v2::kill_all(&self.dirs[0].path),
            Version::V1 => v1::kill_all(&self.dirs),
        }
    }

    /// Waits until no process is left in the cgroup, nor below it.
    pub fn wait_until_empty(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let mut busy = Vec::new();
            for dir in &self.dirs {
                for cgroup in subtree(&dir.path) {
                    if !processes(&cgroup)?.is_empty() {
                        busy.push(cgroup.display().to_string());
                    }
                }
            }
            if busy.is_empty() {
                return Ok(());
            }
            if start.elapsed() > EMPTY_DEADLINE {
                bail!(
                    "the processes of {} did not end within {:?}",
                    busy.join(", "),
                    EMPTY_DEADLINE
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The directory that has `controller`.
    fn dir_of(&self, controller: &str) -> Result<&Path> {
        self.dirs
            .iter()
            .find(|dir| {
                self.version == Version::V2 || dir.controllers.iter().any(|c| c == controller)
            })
            .map(|dir| dir.path.as_path())
            .with_context(|| format!("no {controller} hierarchy is mounted"))
    }

    /// A file of `controller`, e.g. `memory.max`.
    fn file(&self, controller: &str, name: &str) -> Result<PathBuf> {
        Ok(self.dir_of(controller)?.join(name))
    }
}

fn is_swap_file(name: &str) -> bool {
    name.contains("swap") || name.contains("memsw")
}

/// `dir` and every cgroup below it, the deepest first (none when `dir` is
/// gone): a container may make cgroups of its own inside its cgroup.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            found.extend(subtree(&entry.path()));
        }
    }
    found.push(dir.to_path_buf());
    found
}

/// Sends SIGKILL to every process in `dir` and below it. A process gone
/// already is fine: it was on its way out.
pub fn kill_each(dir: &Path) -> Result<()> {
    for cgroup in subtree(dir) {
        for pid in processes(&cgroup)? {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    Ok(())
}

/// The PIDs in a cgroup directory's `cgroup.procs` (empty when it is gone).
pub fn processes(dir: &Path) -> Result<Vec<Pid>> {
    let path = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        read => read.with_context(|| format!("reading {}", path.display()))?,
    };
    Ok(text
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .map(Pid::from_raw)
        .collect())
}

/// Writes `value` to the cgroup file `path`: one write(2), as the kernel
/// reads a cgroup file's new value from a single write.
pub fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

/// Reads a cgroup file, trimmed.
pub fn read(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Reads a file of one number.
pub fn read_number(path: &Path) -> Result<u64> {
    let text = read(path)?;
    text.parse()
        .with_context(|| format!("{} holds {text:?}, not a number", path.display()))
}

/// The value of `key` in a flat keyed file such as `memory.stat` or
/// `memory.events` (lines `key value`).
pub fn keyed_value(path: &Path, key: &str) -> Result<u64> {
    value_after(path, key, ' ')
}

/// The machine's memory, the limit `stats` shows for an unlimited cgroup
/// (as docker does).
pub fn machine_memory() -> Result<u64> {
    value_after(Path::new("/proc/meminfo"), "MemTotal", ':').map(|kib| kib * 1024)
}

/// The first number after `key` and `separator` on a line of `path`
/// (`oom_kill 1`, `MemTotal:  24684112 kB`).
fn value_after(path: &Path, key: &str, separator: char) -> Result<u64> {
    let text = read(path)?;
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(separator)?;
            let number = value.split_whitespace().next()?;
            (name == key).then(|| number.parse().ok()).flatten()
        })
        .with_context(|| format!("no {key} in {}", path.display()))
}

/// Walks down from the hierarchy's mount point to `dir`: every directory
/// on the way, top first (the mount point included, `dir` not).
pub fn ancestors_below_mount(hierarchy: &Hierarchy, dir: &Path) -> Result<Vec<PathBuf>> {
    let below = dir
        .strip_prefix(&hierarchy.mount.mount_point)
        .with_context(|| format!("{} is not in its hierarchy", dir.display()))?;
    let mut current = hierarchy.mount.mount_point.clone();
    let mut ancestors = vec![current.clone()];
    let parts: Vec<_> = below.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        ancestors.push(current.clone());
    }
    Ok(ancestors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::CgroupMount;
    use tempfile::TempDir;

    fn layout(version: Version, own: &str) -> Layout {
        let mount = |point: &str, controllers: &[&str]| Hierarchy {
            mount: CgroupMount {
                version,
                mount_point: PathBuf::from(point),
                root: "/".to_string(),
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
            },
            own: own.to_string(),
        };
        let hierarchies = match version {
            Version::V2 => vec![mount("/sys/fs/cgroup", &[])],
            Version::V1 => vec![
                mount("/sys/fs/cgroup/memory", &["memory"]),
                mount("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            ],
        };
        Layout {
            version,
            hierarchies,
        }
    }

    #[test]
    fn an_absolute_parent_starts_at_the_top_and_a_relative_one_at_our_cgroup() {
        let v2 = layout(Version::V2, "/user.slice/session-1.scope");
        let absolute = Cgroup::plan(&v2, "/tara", "abc").unwrap();
        assert_eq!(absolute.dirs[0].path, Path::new("/sys/fs/cgroup/tara/abc"));
        let relative = Cgroup::plan(&v2, "tests", "abc").unwrap();
        assert_eq!(
            relative.dirs[0].path,
            Path::new("/sys/fs/cgroup/user.slice/session-1.scope/tests/abc")
        );
        let v1 = layout(Version::V1, "/");
        let paths: Vec<PathBuf> = Cgroup::plan(&v1, "/tara", "abc")
            .unwrap()
            .dirs
            .into_iter()
            .map(|dir| dir.path)
            .collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/sys/fs/cgroup/memory/tara/abc"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/tara/abc"),
            ]
        );
    }

    #[test]
    fn a_parent_is_a_path_of_plain_names() {
        for good in ["/tara", "tara", "/a/b.slice", "/", "x@1:y"] {
            assert!(check_parent(good).is_ok(), "{good:?} was refused");
        }
        for bad in [
            "",
            "..",
            "/tara/../..",
            "a//b",
            "/a/./b",
            "a b",
            "a\nb",
            "tara/",
        ] {
            assert!(check_parent(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn the_directory_of_a_controller_is_found_by_its_hierarchy() {
        let cgroup = Cgroup::plan(&layout(Version::V1, "/"), "/tara", "abc").unwrap();
        assert_eq!(
            cgroup.file("cpuacct", "cpuacct.usage").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/tara/abc/cpuacct.usage")
        );
        assert!(cgroup.file("pids", "pids.max").is_err());
    }

    #[test]
    fn ancestors_are_listed_from_the_mount_point_down() {
        let v2 = layout(Version::V2, "/");
        let dir = Path::new("/sys/fs/cgroup/a/b/leaf");
        assert_eq!(
            ancestors_below_mount(&v2.hierarchies[0], dir).unwrap(),
            [
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/a"),
                PathBuf::from("/sys/fs/cgroup/a/b"),
            ]
        );
    }

    /// A fake cgroup in a temp dir: its directories, with the files
    /// `files` (empty), as the kernel would show them.
    fn fake(version: Version, dirs: &[(&str, &[&str])], files: &[&str]) -> (TempDir, Cgroup) {
        let temp = tempfile::tempdir().unwrap();
        let dirs = dirs
            .iter()
            .map(|(name, controllers)| {
                let path = temp.path().join(name);
                std::fs::create_dir(&path).unwrap();
                for file in files {
                    std::fs::write(path.join(file), "").unwrap();
                }
                CgroupDir {
                    controllers: controllers.iter().map(|c| c.to_string()).collect(),
                    path,
                }
            })
            .collect();
        (temp, Cgroup { version, dirs })
    }

    fn contents(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn v1_limits_go_to_the_files_of_each_controllers_hierarchy() {
        let files = [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "pids.max",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.shares",
        ];
        let dirs: [(&str, &[&str]); 3] = [
            ("memory", &["memory"]),
            ("pids", &["pids"]),
            ("cpu,cpuacct", &["cpu", "cpuacct"]),
        ];
        let (temp, cgroup) = fake(Version::V1, &dirs, &files);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(crate::limits::Swap::Total(96 << 20)),
            pids: Some(100),
            cpus: Some(1.5),
            cpu_shares: Some(512),
        };
        cgroup.set_limits(&limits).unwrap();
        let read = |file: &str| contents(&temp.path().join(file));
        assert_eq!(read("memory/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory/memory.memsw.limit_in_bytes"), "100663296");
        assert_eq!(read("pids/pids.max"), "100");
        assert_eq!(read("cpu,cpuacct/cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu,cpuacct/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu,cpuacct/cpu.shares"), "512");
        assert_eq!(read("pids/cpu.shares"), "", "a file of another hierarchy");
    }

    #[test]
    fn without_swap_accounting_the_swap_limit_is_left_out() {
        let dirs: [(&str, &[&str]); 1] = [("memory", &["memory"])];
        let (temp, cgroup) = fake(Version::V1, &dirs, &["memory.limit_in_bytes"]);
        let limits = Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        };
        cgroup.set_limits(&limits).unwrap();
        assert_eq!(
            contents(&temp.path().join("memory/memory.limit_in_bytes")),
            "67108864"
        );
        assert!(!temp
            .path()
            .join("memory/memory.memsw.limit_in_bytes")
            .exists());
        let no_pids = Limits {
            pids: Some(10),
            ..Limits::default()
        };
        let error = cgroup.set_limits(&no_pids).unwrap_err();
        assert!(
            format!("{error:#}").contains("no pids hierarchy"),
            "{error:#}"
        );
    }

    #[test]
    fn usage_is_read_from_the_v2_files_and_the_v1_ones() {
        let (temp, v2) = fake(Version::V2, &[("leaf", &[])], &[]);
        let leaf = temp.path().join("leaf");
        for (file, text) in [
            ("memory.current", "10485760\n"),
            ("memory.stat", "anon 8388608\ninactive_file 2097152\n"),
            ("memory.max", "max\n"),
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
            ("pids.current", "3\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
        ] {
            std::fs::write(leaf.join(file), text).unwrap();
        }
        let expected = Usage {
            cpu_ns: 1_500_000,
            memory: 8 << 20,
            memory_limit: None,
            pids: 3,
            oom_kills: 1,
        };
        assert_eq!(v2.usage().unwrap(), expected);
        let dirs: [(&str, &[&str]); 3] = [
            ("memory", &["memory"]),
            ("pids", &["pids"]),
            ("cpuacct", &["cpuacct"]),
        ];
        let (temp, v1) = fake(Version::V1, &dirs, &[]);
        for (file, text) in [
            ("memory/memory.usage_in_bytes", "10485760\n"),
            (
                "memory/memory.stat",
                "cache 0\ntotal_inactive_file 2097152\n",
            ),
            ("memory/memory.limit_in_bytes", "33554432\n"),
            (
                "memory/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
            ("cpuacct/cpuacct.usage", "1500000\n"),
            ("pids/pids.current", "3\n"),
        ] {
            std::fs::write(temp.path().join(file), text).unwrap();
        }
        let limited = Usage {
            memory_limit: Some(32 << 20),
            ..expected
        };
        assert_eq!(v1.usage().unwrap(), limited);
    }

    #[test]
    fn keyed_files_are_read_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(keyed_value(&events, "oom_kill").unwrap(), 1);
        assert_eq!(keyed_value(&events, "max").unwrap(), 12);
        assert!(keyed_value(&events, "oom_group_kill").is_err());
    }
}

//! `cargo xtask test` leaves no cgroup behind.
//!
//! Step 05 makes a cgroup for every container, below a parent of the test's
//! own (or `/tara` in the kernel-test guests). A cgroup left behind is
//! invisible to the test that leaked it once its parent is gone, and stays
//! until the machine reboots. So `test_everything` lists, before its first
//! check and after its last, every cgroup directory the runtime or its
//! tests could make: a name that starts with `tara` (`/tara`,
//! `tara-test-PID-N`) or is a container's ID (64 hex digits). A new one
//! fails the run. Only reads.

use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The cgroup directories of tara's kind on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    dirs: BTreeSet<PathBuf>,
}

impl Snapshot {
    pub fn take() -> Result<Snapshot> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut dirs = BTreeSet::new();
        for point in cgroup_mount_points(&mountinfo) {
            collect(&point, &mut dirs);
        }
        Ok(Snapshot { dirs })
    }
}

/// Fails, naming them, when `after` has cgroups that `before` had not.
pub fn ensure_none_left(before: &Snapshot, after: &Snapshot) -> Result<()> {
    let left: Vec<String> = after
        .dirs
        .difference(&before.dirs)
        .map(|dir| dir.display().to_string())
        .collect();
    if !left.is_empty() {
        bail!(
            "the checks left cgroups behind (a test, or the code it tests, did not remove \
             what it made):\n  {}",
            left.join("\n  ")
        );
    }
    Ok(())
}

/// The mount points of every cgroup filesystem (v1 and v2).
fn cgroup_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, filesystem) = line.split_once(" - ")?;
            let kind = filesystem.split(' ').next()?;
            let point = mount.split(' ').nth(4)?;
            matches!(kind, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// Adds the directories below `dir` that are tara's kind, at any depth.
fn collect(dir: &Path, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let path = entry.path();
        if is_taras(&entry.file_name().to_string_lossy()) {
            found.insert(path.clone());
        }
        collect(&path, found);
    }
}

fn is_taras(name: &str) -> bool {
    name.starts_with("tara") || (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_of_both_versions_are_found() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup_mount_points(mountinfo),
            [
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }

    #[test]
    fn only_new_cgroups_of_taras_kind_count() {
        assert!(is_taras("tara"));
        assert!(is_taras("tara-test-12-0"));
        assert!(is_taras(&"ab".repeat(32)));
        assert!(!is_taras("user.slice"));
        let before = Snapshot {
            dirs: [PathBuf::from("/sys/fs/cgroup/tara")].into(),
        };
        let same = before.clone();
        assert!(ensure_none_left(&before, &same).is_ok());
        let mut after = before.clone();
        after.dirs.insert(PathBuf::from("/sys/fs/cgroup/tara/abc"));
        let error = ensure_none_left(&before, &after).unwrap_err().to_string();
        assert!(error.contains("/sys/fs/cgroup/tara/abc"), "{error}");
        assert!(ensure_none_left(&after, &before).is_ok(), "removed is fine");
    }
}

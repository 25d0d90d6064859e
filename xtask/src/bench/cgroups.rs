//! Where the bench's cgroups go, and how they are removed.
//!
//! Every cgroup the bench makes, through step 05, runc or crun, lies in a
//! directory named after the bench (`tara-bench-PID`):
//!
//! - on cgroup v1 (this project's CI machine, v1 and v2 side by side), below
//!   the bench's own cgroup in every hierarchy. Step 05 and runc read a
//!   relative path that way (`--cgroup-parent tara-bench-PID`, runc's
//!   `cgroupsPath: "tara-bench-PID/runc-…"`). crun does not: it takes a
//!   relative path from the top of each hierarchy, and it refuses a v2
//!   hierarchy that holds a controller beside the v1 ones. So crun runs in a
//!   mount namespace of its own whose `/sys/fs/cgroup` is a tmpfs showing
//!   only the v1 hierarchies, each bind-mounted from the bench's own cgroup:
//!   its `/tara-bench-PID/crun-…` lands below the bench's cgroup too.
//! - on cgroup v2 (the students' VM), a cgroup that holds processes cannot
//!   hand controllers to children, so the parent is a cgroup of the bench's
//!   own at the top of the unified hierarchy, `/tara-bench-PID`, given to
//!   all three as an absolute path.
//!
//! When the bench ends, every directory of that name, in every mounted
//! hierarchy, is removed bottom-up, and one that cannot be is an error.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a cgroup may stay busy after its last process exited.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(5);

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The bench's own cgroup in it, as a directory under the mount point.
    pub own_dir: PathBuf,
    /// A cgroup2 filesystem (the whole tree on v2, `unified` on hybrid).
    pub v2: bool,
}

/// The machine's cgroup layout, as the bench process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// cgroup2 mounted on /sys/fs/cgroup: one unified hierarchy.
    pub v2_only: bool,
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    pub fn read() -> Result<Layout> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let layout = Layout::parse(&mountinfo, &own);
        if layout.hierarchies.is_empty() {
            bail!("no cgroup filesystem is mounted (see /proc/self/mountinfo)");
        }
        Ok(layout)
    }

    /// The layout from the text of `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    pub fn parse(mountinfo: &str, own_cgroups: &str) -> Layout {
        let hierarchies: Vec<Hierarchy> = mountinfo
            .lines()
            .filter_map(|line| hierarchy(line, own_cgroups))
            .collect();
        let v2_only = hierarchies
            .iter()
            .any(|h| h.v2 && h.mount_point == Path::new("/sys/fs/cgroup"));
        Layout {
            v2_only,
            hierarchies,
        }
    }

    /// "v2", "v1 and v2 side by side (hybrid)" or "v1".
    pub fn describe(&self) -> &'static str {
        if self.v2_only {
            "v2"
        } else if self.hierarchies.iter().any(|h| h.v2) {
            "v1 and v2 side by side (hybrid)"
        } else {
            "v1"
        }
    }

    /// The v1 hierarchies mounted directly below /sys/fs/cgroup, by name
    /// (`memory`, `cpu,cpuacct`, `systemd`), with the bench's own cgroup.
    pub fn v1_below_sys_fs_cgroup(&self) -> Vec<(String, PathBuf)> {
        self.hierarchies
            .iter()
            .filter(|h| !h.v2 && h.mount_point.parent() == Some(Path::new("/sys/fs/cgroup")))
            .filter_map(|h| {
                let name = h.mount_point.file_name()?.to_string_lossy().into_owned();
                Some((name, h.own_dir.clone()))
            })
            .collect()
    }
}

/// The hierarchy one mountinfo line describes, if it is a cgroup
/// filesystem whose tree shows the bench's own cgroup.
fn hierarchy(line: &str, own_cgroups: &str) -> Option<Hierarchy> {
    // "36 25 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut mount_fields = mount.split(' ');
    let root = mount_fields.nth(3)?;
    let mount_point = mount_fields.next()?;
    let mut filesystem_fields = filesystem.split(' ');
    let kind = filesystem_fields.next()?;
    let options: Vec<&str> = filesystem_fields.nth(1)?.split(',').collect();
    let v2 = match kind {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    let own = own_cgroups.lines().find_map(|entry| {
        // "4:memory:/user.slice", "1:name=systemd:/", "0::/"
        let mut parts = entry.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if v2 {
            controllers.is_empty()
        } else {
            !controllers.is_empty() && controllers.split(',').all(|c| options.contains(&c))
        };
        matches.then_some(path)
    })?;
    // A mount of a subtree (its root is not "/") shows the cgroups below
    // that root only.
    let below_root = own.strip_prefix(root.trim_end_matches('/'))?;
    Some(Hierarchy {
        mount_point: PathBuf::from(mount_point),
        own_dir: Path::new(mount_point).join(below_root.trim_start_matches('/')),
        v2,
    })
}

/// A shell script that runs its arguments in the mount namespace it is
/// started in (`unshare --mount`), after it replaced `/sys/fs/cgroup` there
/// with a tmpfs holding the v1 hierarchies only, each bind-mounted from
/// the bench's own cgroup, and the links beside them (`cpu -> cpu,cpuacct`).
/// `staging` is an empty directory where the tmpfs is filled first.
pub fn crun_view_script(
    staging: &Path,
    hierarchies: &[(String, PathBuf)],
    links: &[(String, String)],
) -> String {
    let staging = super::quote(&staging.to_string_lossy());
    let mut script = String::from(
        "#!/bin/sh\n\
         # Written by `cargo xtask bench`. crun 1.8 refuses a cgroup layout whose v2\n\
         # hierarchy holds a controller beside the v1 ones, and reads a relative\n\
         # cgroupsPath from the top of each hierarchy. In this private mount namespace\n\
         # /sys/fs/cgroup shows only the v1 hierarchies, each from the bench's own\n\
         # cgroup, so crun sees plain v1 and its cgroups land below the bench's.\n\
         set -eu\n",
    );
    script.push_str(&format!(
        "mount -t tmpfs -o mode=755 tara-bench {staging}\n"
    ));
    for (name, own_dir) in hierarchies {
        let target = format!("{staging}/{}", super::quote(name));
        let source = super::quote(&own_dir.to_string_lossy());
        script.push_str(&format!("mkdir {target}\nmount --bind {source} {target}\n"));
    }
    for (name, points_to) in links {
        script.push_str(&format!(
            "ln -s {} {staging}/{}\n",
            super::quote(points_to),
            super::quote(name)
        ));
    }
    script.push_str(&format!(
        "mount --move {staging} /sys/fs/cgroup\nexec \"$@\"\n"
    ));
    script
}

/// The links in /sys/fs/cgroup that point to one of `names`
/// (`cpu -> cpu,cpuacct`).
pub fn links_to(names: &[String]) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            names
                .contains(&target)
                .then(|| (entry.file_name().to_string_lossy().into_owned(), target))
        })
        .collect()
}

/// Every directory named `name` in every mounted hierarchy, at any depth.
pub fn find_named(layout: &Layout, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in &layout.hierarchies {
        collect_named(&hierarchy.mount_point, name, &mut found);
    }
    found
}

fn collect_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        if entry.file_name() == name {
            found.push(entry.path());
        } else {
            collect_named(&entry.path(), name, found);
        }
    }
}

/// Removes `dir` and the cgroups below it, deepest first (a cgroup is
/// removed with rmdir, and only once it has no children and no process).
pub fn remove_tree(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A process that just exited may keep it busy for a moment.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                if start.elapsed() > REMOVAL_DEADLINE {
                    return Err(error).with_context(|| {
                        format!("rmdir {}: processes are still in it", dir.display())
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => return Err(error).with_context(|| format!("rmdir {}", dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/root rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/jobs/42
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn a_hybrid_layout_has_each_hierarchy_with_our_own_cgroup() {
        let layout = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        assert!(!layout.v2_only);
        assert_eq!(layout.describe(), "v1 and v2 side by side (hybrid)");
        let own: Vec<&Path> = layout
            .hierarchies
            .iter()
            .map(|h| h.own_dir.as_path())
            .collect();
        assert_eq!(
            own,
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct"),
                Path::new("/sys/fs/cgroup/memory/jobs/42"),
                Path::new("/sys/fs/cgroup/systemd"),
                Path::new("/sys/fs/cgroup/unified"),
            ]
        );
        let v1 = layout.v1_below_sys_fs_cgroup();
        let names: Vec<&str> = v1.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "systemd"]);
    }

    #[test]
    fn a_v2_layout_is_one_hierarchy() {
        let layout = Layout::parse(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
        );
        assert!(layout.v2_only);
        assert_eq!(layout.describe(), "v2");
        assert_eq!(
            layout.hierarchies[0].own_dir,
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
        );
        assert!(layout.v1_below_sys_fs_cgroup().is_empty());
    }

    #[test]
    fn a_subtree_mount_is_joined_without_doubling_the_path() {
        let layout = Layout::parse(
            "35 31 0:32 /jobs /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "4:memory:/jobs/42\n",
        );
        assert_eq!(
            layout.hierarchies[0].own_dir,
            Path::new("/sys/fs/cgroup/memory/42")
        );
    }

    #[test]
    fn the_crun_view_binds_each_hierarchy_from_our_cgroup() {
        let script = crun_view_script(
            Path::new("/w/view"),
            &[
                ("cpu,cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct".into()),
                ("memory".into(), "/sys/fs/cgroup/memory/jobs/42".into()),
            ],
            &[("cpu".into(), "cpu,cpuacct".into())],
        );
        let body: Vec<&str> = script.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "set -eu",
                "mount -t tmpfs -o mode=755 tara-bench /w/view",
                "mkdir /w/view/cpu,cpuacct",
                "mount --bind /sys/fs/cgroup/cpu,cpuacct /w/view/cpu,cpuacct",
                "mkdir /w/view/memory",
                "mount --bind /sys/fs/cgroup/memory/jobs/42 /w/view/memory",
                "ln -s cpu,cpuacct /w/view/cpu",
                "mount --move /w/view /sys/fs/cgroup",
                "exec \"$@\"",
            ]
        );
    }
}

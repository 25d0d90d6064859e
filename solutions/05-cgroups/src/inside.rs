//! The container's view of its cgroup: a cgroup namespace, and the cgroup
//! filesystem mounted read-only at `/sys/fs/cgroup`.
//!
//! A cgroup namespace makes the cgroup its process is in at unshare(2)
//! the root of what it sees: `/proc/self/cgroup` shows `0::/`, and a
//! cgroup filesystem mounted inside shows only that subtree. The child
//! unshares it itself, once the runtime has moved it into its cgroup:
//! cloned with `CLONE_NEWCGROUP`, its root would be the runtime's cgroup.

use crate::cgroup::Cgroup;
use crate::hierarchy::Version;
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::path::{Path, PathBuf};

const MOUNT_POINT: &str = "/sys/fs/cgroup";

/// In the child, in its new root, after step 02 mounted /sys.
pub fn enter_namespace_and_mount(cgroup: &Cgroup) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWCGROUP).context("unshare(CLONE_NEWCGROUP)")?;
    match cgroup.version {
        Version::V2 => mount_read_only("cgroup2", Path::new(MOUNT_POINT), "cgroup2", None),
        Version::V1 => mount_v1_hierarchies(cgroup),
    }
}

/// v1: a tmpfs with a directory per hierarchy, as systemd lays it out.
/// `cpu,cpuacct` shared by two controllers also answers as `cpu` and
/// `cpuacct`, through symbolic links.
fn mount_v1_hierarchies(cgroup: &Cgroup) -> Result<()> {
    let top = Path::new(MOUNT_POINT);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), top, Some("tmpfs"), flags, Some("mode=755"))
        .context("mounting a tmpfs on /sys/fs/cgroup")?;
    for dir in &cgroup.dirs {
        let name = dir.controllers.join(",");
        let point: PathBuf = top.join(&name);
        std::fs::create_dir(&point).with_context(|| format!("mkdir {}", point.display()))?;
        mount_read_only("cgroup", &point, "cgroup", Some(&name))?;
        for controller in dir.controllers.iter().filter(|c| **c != name) {
            std::os::unix::fs::symlink(&name, top.join(controller))
                .with_context(|| format!("symlink /sys/fs/cgroup/{controller}"))?;
        }
    }
    remount_read_only(top)
}

/// Mounts a cgroup filesystem, then makes that mount (only that mount, not
/// the hierarchy everyone shares) read-only: the container reads its
/// limits and usage there, and cannot change them through it. A guard
/// rail, not yet a wall: the container's root still has CAP_SYS_ADMIN and
/// could mount the hierarchy again, writable; step 06 drops it.
fn mount_read_only(source: &str, point: &Path, fstype: &str, options: Option<&str>) -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(source), point, Some(fstype), flags, options).with_context(|| {
        format!(
            "mount -t {fstype} {} {}",
            options.unwrap_or(""),
            point.display()
        )
    })?;
    remount_read_only(point)
}

fn remount_read_only(point: &Path) -> Result<()> {
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(None::<&str>, point, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("remounting {} read-only", point.display()))
}

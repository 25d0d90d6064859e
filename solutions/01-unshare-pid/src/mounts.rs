//! The child's view of `/proc`.
//!
//! `ps`, `top` and friends learn which processes exist by listing `/proc`.
//! A procfs instance shows the PID namespace of the process that mounted it,
//! so the child (PID 1 of its new namespace) mounts a fresh one over `/proc`.
//! It does so in its own mount namespace, and only after making every mount
//! private: otherwise, where the copy of the host's `/proc` mount is shared
//! (on any systemd host every mount is), the new `/proc` would propagate back
//! into the host's mount table.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Makes every mount private, then mounts a procfs for the child's PID
/// namespace over `/proc`. Must run inside the new mount namespace.
// ANCHOR: private_proc
pub fn mount_private_proc() -> Result<()> {
    // EXERCISE 3: make every mount private, then mount a new procfs.
    // Hint: mount(None, "/", None, MS_REC | MS_PRIVATE, None) changes the propagation of
    // the whole tree; then mount the filesystem type "proc" (source "proc") on /proc with
    // MS_NOSUID | MS_NODEV | MS_NOEXEC. Add .context(...) to both calls.
    // SOLUTION-BEGIN
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / recursively private (mount --make-rprivate /)")?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting a new procfs on /proc")?;
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: private_proc

/// A safety net behind the exercise: fails, naming them, if any mount of
/// this namespace is still shared. Everything mounted under a shared mount
/// also appears in the host's mount namespace.
pub fn refuse_shared_mounts() -> Result<()> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let shared = shared_mount_points(&mountinfo);
    if let Some(first) = shared.first() {
        bail!(
            "{} mounts ({first}, ...) are still shared with the host: make them private first \
             (MS_REC | MS_PRIVATE on /)",
            shared.len()
        );
    }
    Ok(())
}

/// The mount points whose optional fields (between the mount options and
/// the lone "-") contain a `shared:N` peer group tag.
fn shared_mount_points(mountinfo: &str) -> Vec<&str> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let optional = fields.get(6..)?.iter().take_while(|field| **field != "-");
            optional
                .clone()
                .any(|field| field.starts_with("shared:"))
                .then(|| fields[4])
        })
        .collect()
}

/// Step 01's filesystem setup with its safety net: if the mounts were left
/// shared, the new /proc went to the host too; unmounting it here propagates
/// the same way and takes it back.
pub fn mount_private_proc_safely() -> Result<()> {
    mount_private_proc()?;
    refuse_shared_mounts().inspect_err(|_| {
        let _ = umount2("/proc", MntFlags::MNT_DETACH);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 27 0:28 / /sys/fs/cgroup rw,relatime master:3 - tmpfs tmpfs rw
32 31 0:29 / /mnt rw shared:7 master:2 - tmpfs tmpfs rw
";

    #[test]
    fn shared_mounts_are_found_by_their_peer_group_tag() {
        assert_eq!(shared_mount_points(MOUNTINFO), ["/proc", "/mnt"]);
    }

    #[test]
    fn private_and_slave_mounts_are_fine() {
        for line in MOUNTINFO.lines().skip(1).take(2) {
            assert!(shared_mount_points(line).is_empty(), "{line}");
        }
    }
}

//! Switching the child's root to the container's root filesystem.
//!
//! Why not chroot(2)? chroot only changes how paths starting with `/` are
//! resolved for one process. The host's whole mount tree is still there, and
//! a root process can walk back out: chroot into a subdirectory, keep a
//! descriptor to a directory outside, `fchdir` to it, `cd ..` up to the real
//! root. pivot_root(2) instead moves the *mount namespace's* root: once the
//! old root is detached, no path and no mount leads back to the host.

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};
use std::path::Path;

const NONE: Option<&str> = None;

/// Makes every mount in this (new) mount namespace private.
// ANCHOR: make_private
pub fn make_mounts_private() -> Result<()> {
    // EXERCISE 1: stop mount events from propagating between this namespace and the host.
    // Hint: a new mount namespace starts with copies of the host's mounts, in the same
    // peer groups: on a systemd host every mount is shared, so anything mounted here
    // would show up there, and pivot_root fails with EINVAL.
    // mount(NONE, "/", NONE, MS_REC | MS_PRIVATE, NONE) fixes both.
    // SOLUTION-BEGIN
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)
        .context("making every mount private (mount --make-rprivate /)")?;
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: make_private

/// Bind-mounts the rootfs onto itself.
// ANCHOR: bind
pub fn bind_onto_itself(rootfs: &Path) -> Result<()> {
    // EXERCISE 2: make the rootfs a mount point. Hint: pivot_root requires the new root
    // to be a mount point, and a plain directory is not one; bind-mounting it onto
    // itself makes it one: mount(Some(rootfs), rootfs, NONE, MS_BIND | MS_REC, NONE).
    // MS_REC brings along anything already mounted below it.
    // SOLUTION-BEGIN
    mount(
        Some(rootfs),
        rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .with_context(|| format!("bind-mounting the rootfs {} onto itself", rootfs.display()))?;
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: bind

/// Makes `rootfs` the root of this mount namespace and detaches the old root.
// ANCHOR: switch_root
pub fn switch_root(rootfs: &Path) -> Result<()> {
    // EXERCISE 3: pivot into the rootfs and detach the old root. Hint: chdir(rootfs),
    // then pivot_root(".", "."): the old root ends up mounted on top of the new one, at
    // "/", and umount2(".", MNT_DETACH) removes it (lazily: busy mounts go when their
    // users do). Finish with chdir("/"), so the working directory is inside the new root.
    // SOLUTION-BEGIN
    chdir(rootfs).with_context(|| format!("chdir({})", rootfs.display()))?;
    pivot_root(".", ".").with_context(|| {
        format!(
            "pivot_root into {} (EINVAL: is a mount still shared? EBUSY: is the rootfs a mount point?)",
            rootfs.display()
        )
    })?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root (umount2 MNT_DETACH)")?;
    chdir("/").context("chdir(/) in the new root")?;
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: switch_root

/// Remounts the root read-only (`--read-only`). A bind mount has its own
/// read-only flag, so this changes the container's view only, never the
/// directory on the host.
pub fn make_root_read_only() -> Result<()> {
    // A remount sets the per-mount flags nosuid, nodev and noexec to the
    // ones given: carry them over, or `--read-only` would turn a nosuid
    // rootfs into one where setuid programs work. (The atime mode is kept
    // when no atime flag is given; repeating it changes nothing.)
    let kept = kept_mount_flags(statvfs("/").context("statvfs(/)")?.flags());
    mount(
        NONE,
        "/",
        NONE,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept,
        NONE,
    )
    .context("remounting / read-only")?;
    Ok(())
}

/// The flags of a mounted filesystem (as statvfs reports them) that a
/// remount must repeat to keep them.
fn kept_mount_flags(current: FsFlags) -> MsFlags {
    const KEPT: [(FsFlags, MsFlags); 6] = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    KEPT.iter()
        .filter(|(fs_flag, _)| current.contains(*fs_flag))
        .fold(MsFlags::empty(), |flags, (_, ms_flag)| flags | *ms_flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remount_keeps_nosuid_nodev_noexec_and_atime() {
        let current = FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RELATIME;
        assert_eq!(
            kept_mount_flags(current),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RELATIME
        );
        assert_eq!(kept_mount_flags(FsFlags::ST_RDONLY), MsFlags::empty());
    }
}

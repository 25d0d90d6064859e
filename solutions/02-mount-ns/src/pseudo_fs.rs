//! The kernel's filesystems a container expects: /proc, /sys, /dev, /tmp.
//!
//! Each is a fresh mount inside the new root, never a view of the host's:
//! * `/proc` shows the PID namespace of whoever mounted it: the container's.
//! * `/sys` is mounted read-only: it holds knobs for the whole machine. (A
//!   guard against accidents, not a wall: a process that keeps the
//!   capability CAP_SYS_ADMIN can remount it, and so can change `/proc/sys`.
//!   Dropping capabilities comes with the full runtime, in step 06.)
//! * `/dev` is a small tmpfs holding only the devices every program needs
//!   (see [`crate::devices`]), not the host's disks.

use crate::devices;
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Flags for mounts that hold no programs and no device nodes.
const DATA_ONLY: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts a filesystem of type `fstype` on `target`, creating the directory
/// first if the rootfs lacks it.
fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    ensure_directory(target)?;
    mount(Some(fstype), target, Some(fstype), flags, data)
        .with_context(|| format!("mounting {fstype} on {target} (options {data:?})"))
}

fn ensure_directory(path: &str) -> Result<()> {
    if !Path::new(path).is_dir() {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the mount point {path}"))?;
    }
    Ok(())
}

/// A procfs for the container's PID namespace.
pub fn mount_proc() -> Result<()> {
    mount_fs("proc", "/proc", DATA_ONLY, None)
}

/// A read-only sysfs.
pub fn mount_sys() -> Result<()> {
    mount_fs("sysfs", "/sys", DATA_ONLY | MsFlags::MS_RDONLY, None)
}

/// A tmpfs on /dev with the standard devices, a private /dev/pts and a
/// /dev/shm.
// ANCHOR: mount_dev
pub fn mount_dev() -> Result<()> {
    // nosuid, but not nodev: /dev holds the device nodes. Not noexec either,
    // as with docker: some programs map /dev/zero executable.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    mount_fs("tmpfs", "/dev", flags, Some("mode=755,size=65536k"))?;
    devices::create_device_nodes(Path::new("/dev"))?;
    // A new devpts instance: the container's terminals are its own, and
    // /dev/ptmx must open *this* instance's multiplexer.
    mount_fs(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mount_fs(
        "tmpfs",
        "/dev/shm",
        DATA_ONLY,
        Some("mode=1777,size=65536k"),
    )?;
    devices::create_links(Path::new("/dev"))
}
// ANCHOR_END: mount_dev

/// With `--read-only`, /tmp stays writable as a tmpfs: many programs need a
/// scratch directory, and what they write there vanishes with the container,
/// so the image is still never changed (podman's `--read-only-tmpfs`).
pub fn mount_tmp() -> Result<()> {
    mount_fs(
        "tmpfs",
        "/tmp",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
}

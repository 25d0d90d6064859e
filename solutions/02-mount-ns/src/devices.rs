//! The device nodes of a container's /dev.
//!
//! A device node is a special file naming a driver by its major and minor
//! numbers; opening it talks to that driver. Docker and runc give a container
//! the same handful as below and nothing else: in particular no disk, so a
//! process inside cannot read the host's block devices even as root.

use anyhow::{Context, Result};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// The character devices every container gets: (name, major, minor).
/// The numbers are fixed by the kernel (Documentation/admin-guide/devices.txt).
pub const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symbolic links of a standard /dev: (link, target).
pub const LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Creates the [`DEVICES`] in `dev`, readable and writable by everyone.
// ANCHOR: device_nodes
pub fn create_device_nodes(dev: &Path) -> Result<()> {
    // EXERCISE 4: create each of DEVICES as a character device node. Hint: mknod(path,
    // SFlag::S_IFCHR, mode, makedev(major, minor)); the umask clears bits of the mode
    // you ask for, so set 0o666 afterwards with std::fs::set_permissions.
    // SOLUTION-BEGIN
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let mode = Mode::from_bits_truncate(0o666);
        mknod(&path, SFlag::S_IFCHR, mode, makedev(major, minor))
            .with_context(|| format!("mknod {} c {major} {minor}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("chmod 666 {}", path.display()))?;
    }
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: device_nodes

/// Creates the [`LINKS`] in `dev`.
pub fn create_links(dev: &Path) -> Result<()> {
    for (link, target) in LINKS {
        let path = dev.join(link);
        symlink(target, &path).with_context(|| format!("ln -s {target} {}", path.display()))?;
    }
    Ok(())
}

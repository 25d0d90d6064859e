//! Step 02: the container gets its own root filesystem.
//!
//! Step 01 gave the child its own PID, mount and UTS namespaces, but it still
//! saw the host's files. Now, inside its new mount namespace, the child:
//!
//! ```text
//! 1. makes every mount private          so nothing it mounts reaches the host
//! 2. bind-mounts the rootfs on itself   pivot_root wants a mount point
//! 3. pivot_root(".", ".") and detaches  the old root: no path leads back to the host
//! 4. mounts /proc, /sys (read-only), /dev (a tmpfs with a few device nodes,
//!    /dev/pts, /dev/shm), and with --read-only a tmpfs on /tmp
//! 5. with --read-only, remounts / read-only
//! ```
//!
//! Everything else (namespaces, PID 1, signals, exit codes) is step 01's
//! solution, reused through its [`pid::Hooks`].

pub mod devices;
pub mod pseudo_fs;
pub mod root;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A container root filesystem: a directory holding `/bin/sh` and friends.
#[derive(Debug, Clone)]
pub struct Rootfs {
    path: PathBuf,
    read_only: bool,
}

impl Rootfs {
    /// Checks, in the runtime before anything is cloned, that `path` is a
    /// directory, so that a typo gets a clear error rather than a failure
    /// deep inside the child.
    pub fn new(path: &Path, read_only: bool) -> Result<Self> {
        let metadata = std::fs::metadata(path).with_context(|| {
            format!(
                "rootfs {}: cannot use it as a root filesystem",
                path.display()
            )
        })?;
        if !metadata.is_dir() {
            bail!("rootfs {}: not a directory", path.display());
        }
        let path = path
            .canonicalize()
            .with_context(|| format!("rootfs {}: resolving the path", path.display()))?;
        if is_the_hosts_root(&path)? {
            bail!(
                "rootfs {}: the host's own root cannot be a container's root filesystem",
                path.display()
            );
        }
        Ok(Rootfs { path, read_only })
    }

    /// The absolute path of the root filesystem on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `path` is the host's `/` itself, also through a bind mount: the
/// same device and inode.
fn is_the_hosts_root(path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let host_root = std::fs::metadata("/").context("stat /")?;
    let candidate = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((candidate.dev(), candidate.ino()) == (host_root.dev(), host_root.ino()))
}

impl pid::Hooks for Rootfs {
    /// Runs in the child, in its new mount namespace, before exec.
    // ANCHOR: prepare_filesystem
    fn prepare_filesystem(&self) -> Result<()> {
        root::make_mounts_private()?;
        // A safety net: with shared mounts, the bind mount below would also
        // appear on the host, and pivot_root would fail anyway.
        pid::mounts::refuse_shared_mounts()?;
        root::bind_onto_itself(&self.path)?;
        root::switch_root(&self.path)?;
        pseudo_fs::mount_proc()?;
        pseudo_fs::mount_sys()?;
        pseudo_fs::mount_dev()?;
        if self.read_only {
            pseudo_fs::mount_tmp()?;
            root::make_root_read_only()?;
        }
        set_container_environment();
        Ok(())
    }
    // ANCHOR_END: prepare_filesystem
}

/// The PATH inside the container: the host's PATH names the host's
/// directories, meaningless in the image. This is docker's default.
pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command is looked up with, and inherits, the environment of the child:
/// give it the container's PATH, and forget the host's working directories.
fn set_container_environment() {
    // The child is single-threaded, so changing the environment is sound.
    std::env::set_var("PATH", CONTAINER_PATH);
    std::env::remove_var("PWD");
    std::env::remove_var("OLDPWD");
}

/// Runs `spec` with `rootfs` as its root filesystem; returns the exit code.
pub fn run(spec: &pid::Spec, rootfs: &Rootfs) -> Result<i32> {
    pid::run(spec, rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_rootfs_is_refused_with_its_path() {
        let error = Rootfs::new(Path::new("/no/such/rootfs"), false).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("/no/such/rootfs"), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[test]
    fn a_file_is_not_a_rootfs() {
        let error = Rootfs::new(Path::new("/etc/hostname"), false)
            .or_else(|_| Rootfs::new(Path::new("/proc/self/status"), false))
            .unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
    }

    #[test]
    fn a_directory_is_kept_absolute() {
        let rootfs = Rootfs::new(Path::new("/usr/../usr/bin"), true).unwrap();
        assert_eq!(rootfs.path(), Path::new("/usr/bin"));
    }

    #[test]
    fn the_hosts_own_root_is_refused() {
        let error = Rootfs::new(Path::new("/usr/.."), false).unwrap_err();
        assert!(error.to_string().contains("host's own root"), "{error}");
    }
}

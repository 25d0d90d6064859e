//! The child's view of `/proc`.
//!
//! `ps`, `top` and friends learn which processes exist by listing `/proc`.
//! A procfs instance shows the PID namespace of the process that mounted it,
//! so the child (PID 1 of its new namespace) mounts a fresh one over `/proc`.
//! It does so in its own mount namespace, and only after making every mount
//! private: otherwise, on a host where `/` is a shared mount (any systemd
//! host), the new `/proc` would propagate back into the host's mount table.

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

/// Makes every mount private, then mounts a procfs for the child's PID
/// namespace over `/proc`. Must run inside the new mount namespace.
// ANCHOR: private_proc
pub fn mount_private_proc() -> Result<()> {
    // EXERCISE 3: stop mount events from propagating to the host, then mount a new procfs.
    // Hint: mount(None, "/", None, MS_REC | MS_PRIVATE, None) changes the propagation of the
    // whole tree; then mount the filesystem type "proc" (source "proc") on /proc with
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

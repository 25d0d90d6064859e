//! The container's root: an overlay of the image's layers and its own.
//!
//! overlayfs merges directories. The *lower* directories are read-only and
//! stacked: a file in a higher one hides the same path in a lower one. The
//! *upper* directory takes every change: a file modified in the merged view
//! is first copied up from its lower directory; a file deleted there gets a
//! *whiteout* in upper (a character device 0/0) that hides it; a directory
//! removed and made again is marked *opaque* (the xattr
//! `trusted.overlay.opaque=y`), which hides everything below it. The *work*
//! directory, on the same filesystem as upper, is overlayfs's scratch space
//! for making those changes atomically.
//!
//! Everything is given to mount(2) as one option string, and the kernel
//! copies at most one page of it (4096 bytes): docker's `overlay2/l/` short
//! links, relative to the directory the mount is made from, keep a deep
//! image's string short. We do the same with `l/<26 hex digits>`.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::unistd::chdir;
use std::path::{Path, PathBuf};

/// The kernel copies one page of mount options: a longer string is cut.
pub const MAX_OPTIONS_LEN: usize = 4095;

/// Options that keep the upper directory in the plain form `diff` and
/// `commit` understand: no `redirect_dir` (a renamed lower directory would
/// be recorded as an xattr pointing to its old path; with it off, the
/// kernel answers rename(2) of a lower directory with EXDEV and `mv` falls
/// back to copy and delete), no `metacopy` (a copy-up would copy the
/// metadata only), no `index` (hard-link bookkeeping in the work dir).
pub const PLAIN_UPPER_OPTIONS: &str = "redirect_dir=off,index=off,metacopy=off";

/// The overlay's mount options for the image's layers (`lowers`, bottom
/// first, as the image lists them), the container's `upper` and `work`
/// directories. The paths are relative to the store's directory.
// ANCHOR: mount_options
pub fn mount_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    // EXERCISE 1: build overlayfs's option string. Hint: "lowerdir=A:B:C,upperdir=U,workdir=W"
    // where lowerdir lists the layers top-most first (the image lists them bottom first:
    // iterate in reverse) joined by ':'; then append "," and PLAIN_UPPER_OPTIONS.
    // SOLUTION-BEGIN
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|lower| lower.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={},{PLAIN_UPPER_OPTIONS}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    )
    // SOLUTION-END
}
// ANCHOR_END: mount_options

/// Fails, with the rule, when `options` would not fit in the page the
/// kernel copies.
pub fn check_options_fit(options: &str) -> Result<()> {
    if options.len() > MAX_OPTIONS_LEN {
        bail!(
            "the overlay's mount options take {} bytes, but mount(2) copies one page \
             ({MAX_OPTIONS_LEN} bytes and a NUL): too many layers",
            options.len()
        );
    }
    Ok(())
}

/// Mounts the overlay described by `options` on `merged`. The relative
/// paths in `options` are resolved from `store_root`, so the mount must be
/// made from there. Runs in the container's mount namespace: the overlay is
/// gone when the container is.
// ANCHOR: mount_overlay
pub fn mount_overlay(store_root: &Path, options: &str, merged: &Path) -> Result<()> {
    // EXERCISE 2: mount the overlay. Hint: chdir(store_root) first (the kernel resolves the
    // relative lowerdir, upperdir and workdir paths from the current directory), then
    // mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(options)).
    // SOLUTION-BEGIN
    chdir(store_root).with_context(|| format!("chdir({})", store_root.display()))?;
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options),
    )
    .with_context(|| {
        format!(
            "mounting the overlay on {} (mount -t overlay overlay -o {options} {})",
            merged.display(),
            merged.display()
        )
    })?;
    Ok(())
    // SOLUTION-END
}
// ANCHOR_END: mount_overlay

#[cfg(test)]
mod tests {
    use super::*;

    /// An option string like the one for `layers` layers (the unit tests of
    /// the given code must not call the exercises).
    fn options_for(layers: usize) -> String {
        let lowers: Vec<String> = (0..layers).map(|i| format!("l/{i:026}")).collect();
        format!(
            "lowerdir={},upperdir=containers/{id}/upper,workdir=containers/{id}/work,{}",
            lowers.join(":"),
            PLAIN_UPPER_OPTIONS,
            id = "0".repeat(64)
        )
    }

    #[test]
    fn a_128_layer_image_fits_in_one_page_and_150_do_not() {
        check_options_fit(&options_for(128)).unwrap();
        assert!(check_options_fit(&options_for(150)).is_err());
    }
}

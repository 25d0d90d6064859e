//! OCI whiteouts and overlayfs whiteouts: the two forms of a deletion.
//!
//! A layer records what changed in a filesystem: files added or modified,
//! and files *deleted*. Tar has no way to say "deleted", so OCI images (after
//! AUFS, the first union filesystem docker used) mark deletions with empty
//! files, while overlayfs, which stacks the unpacked layers at run time, has
//! markers of its own:
//!
//! ```text
//!                      OCI layer tar               overlayfs directory
//! NAME was deleted     empty file  .wh.NAME        character device 0/0 named NAME
//! DIR hides the lower  entry       DIR/.wh..wh..opq  xattr trusted.overlay.opaque=y
//!   layers' contents                                on DIR
//! ```
//!
//! Importing a layer converts the first column to the second
//! ([`apply_oci_marker`]), exporting one the second to the first
//! ([`oci_form`]).

use anyhow::{bail, Context, Result};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// In an OCI layer, `.wh.NAME` says that NAME was deleted.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// In an OCI layer, a directory holding this entry hides the lower layers'
/// contents of that directory.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Names that start with this, other than [`OPAQUE_MARKER`], are AUFS's own
/// bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`) that old docker versions left
/// in layers: not files of the image, so skipped, as docker does.
pub const AUFS_METADATA_PREFIX: &str = ".wh..wh.";
/// Overlayfs's mark of an opaque directory (value `y`). The `trusted.`
/// namespace can be read and written only with CAP_SYS_ADMIN: an
/// unprivileged process cannot fake or remove it.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How an overlayfs entry is written in an OCI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciForm {
    /// As it is.
    Plain,
    /// A deleted file: an empty regular file `.wh.NAME` instead.
    Whiteout,
    /// The directory, then an empty file `.wh..wh..opq` inside it.
    OpaqueDirectory,
}

/// Turns an OCI whiteout marker into its overlayfs form. `dir` is the
/// directory (in the layer being unpacked, already created) holding the
/// entry `name`. Returns true for a marker, which the caller then skips,
/// false for any other entry.
// ANCHOR: apply_oci_marker
pub fn apply_oci_marker(dir: &Path, name: &OsStr) -> Result<bool> {
    // EXERCISE 3: turn an OCI whiteout into its overlayfs form. Hint: compare bytes:
    // `name.as_bytes()`. OPAQUE_MARKER (.wh..wh..opq) makes `dir` opaque:
    // xattr::set(dir, OPAQUE_XATTR, b"y"). Any other AUFS_METADATA_PREFIX name is
    // skipped: Ok(true), nothing written. WHITEOUT_PREFIX + NAME (.wh.NAME) deletes
    // NAME: `strip_prefix` gives NAME, deleted_name(NAME) checks it is a plain file
    // name, and mknod(dir/NAME, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)) makes
    // the whiteout. Return Ok(true) for the markers, Ok(false) for anything else.
    todo!("EXERCISE 3: turn an OCI whiteout into its overlayfs form")
}
// ANCHOR_END: apply_oci_marker

/// The NAME of a whiteout `.wh.NAME`, checked: it must name an entry of the
/// marker's own directory, not the directory itself, its parent or nothing.
pub fn deleted_name(name: &[u8]) -> Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        bail!(
            "malformed whiteout {WHITEOUT_PREFIX}{}: it must name a file",
            String::from_utf8_lossy(name)
        );
    }
    Ok(OsStr::from_bytes(name))
}

/// What the entry at `path` (with its `metadata`, from lstat) of a directory
/// in overlay form means in an OCI layer.
// ANCHOR: oci_form
pub fn oci_form(path: &Path, metadata: &Metadata) -> Result<OciForm> {
    // EXERCISE 4: find what an overlayfs entry means in OCI form. Hint: a whiteout is
    // a character device numbered 0/0: metadata.file_type().is_char_device() and
    // metadata.rdev() == 0. An opaque directory is a directory (metadata.is_dir())
    // whose OPAQUE_XATTR is "y": xattr::get(path, OPAQUE_XATTR) gives
    // Ok(Some(value)) when it is set. Anything else is OciForm::Plain.
    todo!("EXERCISE 4: find what an overlayfs entry means in OCI form")
}
// ANCHOR_END: oci_form

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_names_name_an_entry_of_the_directory() {
        assert_eq!(deleted_name(b"passwd").unwrap(), "passwd");
        for name in [&b""[..], b".", b"..", b"a/b"] {
            let error = deleted_name(name).unwrap_err().to_string();
            assert!(error.contains("malformed whiteout"), "{error}");
        }
    }
}

//! An image layer: an OCI tar archive in, an overlayfs lower directory out,
//! and back.
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
//! Importing converts the first column to the second ([`apply_oci_marker`]),
//! exporting the second to the first ([`oci_form`]).
//!
//! A layer is named by its *diff id*: the SHA-256 of its uncompressed tar.
//! It is unpacked once, under `layers/sha256/<hex>/diff`, and never written
//! again: every image and container that uses it shares it.

use crate::store::{self, Locked, Store};
use anyhow::{bail, Context, Result};
use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use nix::sys::time::TimeVal;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tar::{EntryType, Header};

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// "sha256:HEX" of the uncompressed tar.
    pub diff_id: String,
    /// The bytes of its regular files (their apparent sizes).
    pub size: u64,
}

/// In an OCI layer, `.wh.NAME` says that NAME was deleted.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// In an OCI layer, a directory holding this entry hides the lower layers'
/// contents of that directory.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Overlayfs's mark of an opaque directory (value `y`). The `trusted.`
/// namespace can be read and written only with CAP_SYS_ADMIN: an
/// unprivileged process cannot fake or remove it.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The length of a layer's short name: 26 hex characters (104 bits, as many
/// characters as docker's overlay2 uses) keep a deep image's overlay mount
/// options within one page while collisions stay out of reach.
const SHORT_NAME_LENGTH: usize = 26;

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

/// The short link name of a layer (`l/<this>`), used in the overlay mount
/// options: the first 26 hex characters of its diff id.
pub fn short_name(diff_id: &str) -> Result<String> {
    Ok(store::digest_hex(diff_id)?[..SHORT_NAME_LENGTH].to_owned())
}

/// Imports a layer tar (plain or gzip) into the store: unpacks it into a
/// staging directory while hashing the uncompressed stream, converts OCI
/// whiteouts to overlay form, then publishes it as
/// `layers/sha256/<hex>/diff` (and a `size` file) with the short link
/// `l/<short>`. A layer already in the store is stored once: the new copy
/// is discarded. An entry that would write outside the layer fails the
/// whole import, with an error naming the entry, and nothing is published.
pub fn import_layer(store: &Store, lock: &Locked, tar: impl Read) -> Result<Layer> {
    let staging = store.staging_dir(lock)?;
    let diff = staging.join("diff");
    create_directory(&diff)?;
    let (diff_id, size) = unpack_layer(uncompressed(tar)?, &diff)?;
    let size_file = staging.join("size");
    fs::write(&size_file, size.to_string())
        .with_context(|| format!("writing {}", size_file.display()))?;
    publish_layer(store, lock, &staging, &diff_id)?;
    Ok(Layer { diff_id, size })
}

/// Tars a plain directory (`image import NAME DIR`) into a staging file and
/// imports that, so that a directory and a tarball go through the same code.
///
/// A directory is a root filesystem, not an overlayfs layer: its entries are
/// taken as they are, without looking for overlayfs whiteouts.
pub fn import_dir(store: &Store, lock: &Locked, dir: &Path) -> Result<Layer> {
    let staging = store.staging_dir(lock)?;
    let tar_path = staging.join("layer.tar");
    let file =
        File::create(&tar_path).with_context(|| format!("creating {}", tar_path.display()))?;
    write_tree(dir, BufWriter::new(file), Conversion::None)
        .with_context(|| format!("archiving {}", dir.display()))?;
    let tar = File::open(&tar_path).with_context(|| format!("opening {}", tar_path.display()))?;
    let layer = import_layer(store, lock, tar)?;
    store::remove_path(&staging)?;
    Ok(layer)
}

/// Writes the directory `dir`, in overlay form (a container's upper
/// directory or a layer's `diff`), as an OCI layer tar.
///
/// The same tree gives the same bytes: entries sorted by name; each keeps
/// its mode, owner and modification time, and nothing else (no access or
/// change time, no user names). Whiteouts and opaque directories are written
/// in OCI form, files linked to each other stay hard links, and sockets are
/// skipped (a socket is a live endpoint of a process, not data).
pub fn write_layer(dir: &Path, out: impl Write) -> Result<()> {
    write_tree(dir, out, Conversion::OverlayToOci)
}

/// Turns an OCI whiteout marker into its overlayfs form. `dir` is the
/// directory (in the layer being unpacked, already created) holding the
/// entry `name`. Returns true for a marker, which the caller then skips,
/// false for any other entry.
// ANCHOR: apply_oci_marker
pub fn apply_oci_marker(dir: &Path, name: &OsStr) -> Result<bool> {
    // EXERCISE 3: turn an OCI whiteout into its overlayfs form. Hint: compare bytes:
    // `name.as_bytes()`. OPAQUE_MARKER (.wh..wh..opq) makes `dir` opaque:
    // xattr::set(dir, OPAQUE_XATTR, b"y"). WHITEOUT_PREFIX + NAME (.wh.NAME) deletes
    // NAME: `strip_prefix` gives NAME, deleted_name(NAME) checks it is a plain file
    // name, and mknod(dir/NAME, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)) makes
    // the whiteout. Return Ok(true) for both markers, Ok(false) for anything else.
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

/// A layer's bytes, uncompressed. Compression is recognized by its magic
/// number, not by a file name or a media type that may lie: gzip streams
/// start with the bytes 1f 8b.
pub fn uncompressed<'a>(mut reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    let mut start = Vec::new();
    (&mut reader)
        .take(GZIP_MAGIC.len() as u64)
        .read_to_end(&mut start)
        .context("reading the start of the archive")?;
    // Put back what was read.
    let whole = io::Cursor::new(start.clone()).chain(reader);
    if start == GZIP_MAGIC {
        // Multi: a gzip file may hold several compressed streams in a row
        // (pigz writes them, `cat a.gz b.gz` makes them).
        Ok(Box::new(flate2::read::MultiGzDecoder::new(whole)))
    } else {
        Ok(Box::new(whole))
    }
}

/// A reader that computes the SHA-256 of what passes through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads the rest of the stream, then gives its digest, "sha256:HEX".
    /// (A tar archive ends with zero blocks that its reader may not ask for:
    /// they are part of the bytes the digest covers.)
    pub fn digest(mut self) -> Result<String> {
        io::copy(&mut self, &mut io::sink()).context("reading the archive to its end")?;
        Ok(format!("sha256:{:x}", self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        Ok(count)
    }
}

/// Unpacks the layer tar `tar` into `root`: returns its diff id and size.
fn unpack_layer(tar: impl Read, root: &Path) -> Result<(String, u64)> {
    let mut hashing = HashingReader::new(tar);
    let mut archive = tar::Archive::new(&mut hashing);
    // A layer is a root filesystem: setuid bits and owners are part of it.
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    // Extended attributes could carry trusted.overlay.* ones, that would
    // change what overlayfs shows: only the opaque one is set, by us.
    archive.set_unpack_xattrs(false);
    let mut unpacker = Unpacker {
        root,
        size: 0,
        directory_times: Vec::new(),
    };
    for entry in archive.entries().context("reading the layer tar")? {
        let mut entry = entry.context("reading the layer tar")?;
        unpacker.unpack(&mut entry)?;
    }
    unpacker.set_directory_times()?;
    let size = unpacker.size;
    Ok((hashing.digest()?, size))
}

/// The state of a layer being unpacked.
struct Unpacker<'a> {
    root: &'a Path,
    size: u64,
    /// Directories and their modification times, set last: each entry
    /// unpacked into a directory changes its time.
    directory_times: Vec<(PathBuf, u64)>,
}

impl Unpacker<'_> {
    fn unpack<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        if entry.header().entry_type().is_pax_global_extensions() {
            return Ok(()); // metadata about the archive, not a file
        }
        let path = entry
            .path()
            .context("reading an entry's path")?
            .into_owned();
        self.unpack_at(entry, &path)
            .with_context(|| format!("unpacking the layer's entry {}", path.display()))
    }

    fn unpack_at<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &Path) -> Result<()> {
        let relative = contained_path(path)?;
        let Some(name) = relative.file_name() else {
            return Ok(()); // "./": the layer's root, which is ours
        };
        let parent = self.create_parents(relative.parent(), entry.header())?;
        if apply_oci_marker(&parent, name)? {
            return keep_whiteout_owner_and_time(entry.header(), &parent, name);
        }
        let destination = parent.join(name);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            self.unpack_directory(entry, &destination)
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            self.unpack_file(entry, &destination)
        } else if kind.is_symlink() {
            // Its target is data, read only inside the container: a link
            // may point anywhere. What is dangerous is writing *through*
            // it, which create_parents refuses.
            replace_existing(&destination, false)?;
            unpack_entry(entry, &destination)
        } else if kind.is_hard_link() {
            self.unpack_hard_link(entry, &destination)
        } else if kind.is_fifo() || is_whiteout_device(entry.header()) {
            unpack_special_file(entry.header(), &destination)
        } else if kind.is_character_special() || kind.is_block_special() {
            bail!(
                "refusing a device node ({}): a container gets its devices from the runtime",
                device_numbers(entry.header())
            )
        } else {
            bail!("refusing an entry of unknown type {kind:?}")
        }
    }

    /// Creates the missing parents of an entry. As the archive does not
    /// list them, they get the entry's time: a layer always unpacks to the
    /// same tree, which exports to the same bytes.
    fn create_parents(&mut self, relative: Option<&Path>, header: &Header) -> Result<PathBuf> {
        let mut created = Vec::new();
        let parent = walk_directories(self.root, relative, Some(&mut created))?;
        let mtime = header.mtime().context("reading the entry's time")?;
        let times = created.into_iter().map(|directory| (directory, mtime));
        self.directory_times.extend(times);
        Ok(parent)
    }

    fn unpack_directory<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &Path) -> Result<()> {
        replace_existing(path, true)?;
        unpack_entry(entry, path)?;
        let mtime = entry.header().mtime().context("reading the entry's time")?;
        self.directory_times.push((path.to_owned(), mtime));
        Ok(())
    }

    fn unpack_file<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &Path) -> Result<()> {
        replace_existing(path, false)?;
        unpack_entry(entry, path)?;
        let metadata =
            fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
        self.size += metadata.len();
        Ok(())
    }

    /// A hard link must name a file this layer already unpacked: a link to
    /// a file outside would let the container change it.
    fn unpack_hard_link<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &Path) -> Result<()> {
        let target = entry
            .link_name()
            .context("reading the hard link's target")?
            .context("a hard link without a target")?
            .into_owned();
        let relative = contained_path(&target)
            .with_context(|| format!("hard link to {}", target.display()))?;
        let not_ours = || {
            let target = relative.display();
            format!("hard link to {target}, which is not a file unpacked earlier in this layer")
        };
        check_no_symlinks(self.root, relative.parent()).with_context(not_ours)?;
        let target = self.root.join(&relative);
        match fs::symlink_metadata(&target) {
            Ok(metadata) if !metadata.is_dir() => {}
            _ => bail!(not_ours()),
        }
        replace_existing(path, false)?;
        fs::hard_link(&target, path)
            .with_context(|| format!("ln {} {}", target.display(), path.display()))
    }

    fn set_directory_times(&self) -> Result<()> {
        for (path, mtime) in &self.directory_times {
            let still_a_directory = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
            if still_a_directory {
                set_mtime(path, *mtime)?;
            }
        }
        Ok(())
    }
}

/// `path`, from an untrusted archive, as a path relative to where the
/// archive is unpacked. Refused: `..` (it would climb out) and absolute
/// paths (they would start from the host's root).
pub fn contained_path(path: &Path) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::ParentDir => bail!("refusing a path with a `..` component"),
            Component::RootDir | Component::Prefix(_) => bail!("refusing an absolute path"),
        }
    }
    Ok(relative)
}

/// Creates the missing directories of `relative` (mode 0755, as an archive
/// may list a file before its directory, or not at all) under `root`, and
/// returns the full path. A symbolic link on the way is refused: the layer
/// itself may have put it there, pointing at /etc of the host, and the next
/// entry would be written through it.
pub fn create_parents(root: &Path, relative: Option<&Path>) -> Result<PathBuf> {
    walk_directories(root, relative, Some(&mut Vec::new()))
}

/// Checks that `relative` is made of directories under `root`, none of
/// them a symbolic link.
fn check_no_symlinks(root: &Path, relative: Option<&Path>) -> Result<PathBuf> {
    walk_directories(root, relative, None)
}

/// Walks `relative` under `root`, refusing symbolic links; creates the
/// missing directories (and lists them in `created`) if there is a list.
fn walk_directories(
    root: &Path,
    relative: Option<&Path>,
    mut created: Option<&mut Vec<PathBuf>>,
) -> Result<PathBuf> {
    let mut path = root.to_path_buf();
    for name in relative.into_iter().flat_map(Path::iter) {
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(metadata) if metadata.is_symlink() => {
                bail!(
                    "refusing an entry through a symlink: {} is a symbolic link",
                    path.display()
                )
            }
            Ok(_) => bail!("{} is not a directory", path.display()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => match created.as_mut() {
                Some(created) => {
                    create_directory(&path)?;
                    created.push(path.clone());
                }
                None => bail!("{} does not exist", path.display()),
            },
            Err(error) => return Err(error).with_context(|| format!("stat {}", path.display())),
        }
    }
    Ok(path)
}

/// Creates the directory `path` with mode 0755, whatever the umask.
fn create_directory(path: &Path) -> Result<()> {
    fs::create_dir(path).with_context(|| format!("mkdir {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))
}

/// Makes room for a new entry at `path`: a later entry replaces an earlier
/// one of the same name, except that a directory over a directory merges
/// with it.
fn replace_existing(path: &Path, is_directory: bool) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() && is_directory => Ok(()),
        Ok(_) => store::remove_path(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("stat {}", path.display())),
    }
}

/// Unpacks `entry` at `path`, a path we checked.
///
/// Why `Entry::unpack` and not `Entry::unpack_in`? unpack_in does its own
/// checks, but answers a path with `..` by skipping the entry and returning
/// false, strips a leading `/` silently, and creates missing directories
/// with no mode of ours: a layer that asked for something else would be
/// unpacked as something else, without a word. We check, and refuse, first.
fn unpack_entry<R: Read>(entry: &mut tar::Entry<R>, path: &Path) -> Result<()> {
    entry
        .unpack(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Gives the whiteout made for the marker `name` (if it was one, not an
/// opaque marker) the marker's owner and time, as docker does: exported
/// again, the layer keeps them.
fn keep_whiteout_owner_and_time(header: &Header, dir: &Path, name: &OsStr) -> Result<()> {
    match name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        Some(deleted) if name != OPAQUE_MARKER => {
            set_owner_and_time(header, &dir.join(OsStr::from_bytes(deleted)))
        }
        _ => Ok(()),
    }
}

/// Is this a character device 0/0: a whiteout already in overlayfs form?
/// It means the same in both, so it is kept.
fn is_whiteout_device(header: &Header) -> bool {
    header.entry_type().is_character_special()
        && matches!(header.device_major(), Ok(Some(0)))
        && matches!(header.device_minor(), Ok(Some(0)))
}

/// "MAJOR:MINOR" of a device entry, `?` for a number the header lacks.
fn device_numbers(header: &Header) -> String {
    let number = |number: io::Result<Option<u32>>| match number {
        Ok(Some(number)) => number.to_string(),
        _ => "?".to_owned(),
    };
    let (major, minor) = (header.device_major(), header.device_minor());
    format!("{}:{}", number(major), number(minor))
}

/// Creates a FIFO or a whiteout (which the tar crate would unpack as a
/// regular file) with the entry's owner, mode and time.
fn unpack_special_file(header: &Header, path: &Path) -> Result<()> {
    let kind = if header.entry_type().is_fifo() {
        SFlag::S_IFIFO
    } else {
        SFlag::S_IFCHR
    };
    replace_existing(path, false)?;
    mknod(path, kind, Mode::empty(), makedev(0, 0))
        .with_context(|| format!("mknod {} ({kind:?})", path.display()))?;
    // The owner first: chown(2) clears the setuid and setgid bits.
    set_owner_and_time(header, path)?;
    let mode = header.mode()? & 0o7777;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn set_owner_and_time(header: &Header, path: &Path) -> Result<()> {
    let uid = u32::try_from(header.uid()?).context("uid out of range")?;
    let gid = u32::try_from(header.gid()?).context("gid out of range")?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
    set_mtime(path, header.mtime()?)
}

/// Sets the access and modification times of `path` (not following a
/// symbolic link) to `seconds` since the epoch.
fn set_mtime(path: &Path, seconds: u64) -> Result<()> {
    let seconds = i64::try_from(seconds).context("time out of range")?;
    let time = TimeVal::new(seconds, 0);
    nix::sys::stat::lutimes(path, &time, &time)
        .with_context(|| format!("setting the time of {}", path.display()))
}

/// Moves the finished `staging` directory to `layers/sha256/<hex>`, unless
/// that layer is already there, then links its short name.
fn publish_layer(store: &Store, lock: &Locked, staging: &Path, diff_id: &str) -> Result<()> {
    let destination = store.layer_dir(diff_id)?;
    if destination.exists() {
        store::remove_path(staging)?;
    } else {
        store.publish(staging, &destination, lock)?;
    }
    link_short_name(store, lock, diff_id)
}

/// Points `l/<short>` at the layer's `diff`, with a relative link (the store
/// may be moved), created under `tmp/` and renamed into place: rename(2)
/// replaces an existing link atomically, so this also repairs a link that a
/// crash left missing.
fn link_short_name(store: &Store, lock: &Locked, diff_id: &str) -> Result<()> {
    let link = store.root().join("l").join(short_name(diff_id)?);
    let target = Path::new("../layers/sha256")
        .join(store::digest_hex(diff_id)?)
        .join("diff");
    let staging = store.staging_dir(lock)?;
    let temporary = staging.join("link");
    symlink(&target, &temporary)
        .with_context(|| format!("ln -s {} {}", target.display(), temporary.display()))?;
    fs::rename(&temporary, &link)
        .with_context(|| format!("rename({}, {})", temporary.display(), link.display()))?;
    store::remove_path(&staging)
}

/// Whether the tree written is in overlay form, to convert to OCI form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    None,
    OverlayToOci,
}

fn write_tree(dir: &Path, out: impl Write, conversion: Conversion) -> Result<()> {
    let mut writer = TreeWriter {
        root: dir,
        tar: tar::Builder::new(out),
        conversion,
        first_links: HashMap::new(),
    };
    writer.write_directory_contents(Path::new(""))?;
    let mut out = writer
        .tar
        .into_inner()
        .context("finishing the tar archive")?;
    out.flush().context("writing the tar archive")
}

/// Writes a directory tree as a tar archive.
struct TreeWriter<'a, W: Write> {
    root: &'a Path,
    tar: tar::Builder<W>,
    conversion: Conversion,
    /// The first path written of each file with several links, by
    /// (device, inode): later paths are written as hard links to it.
    first_links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWriter<'_, W> {
    fn write_directory_contents(&mut self, relative: &Path) -> Result<()> {
        let dir = self.root.join(relative);
        let mut names = fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<io::Result<Vec<OsString>>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        // Sorted, byte by byte: the order of readdir(2) depends on the
        // filesystem and on the history of the directory.
        names.sort();
        for name in names {
            let relative = relative.join(name);
            let path = self.root.join(&relative);
            let metadata =
                fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
            self.write_entry(&path, &relative, &metadata)?;
            if metadata.is_dir() {
                self.write_directory_contents(&relative)?;
            }
        }
        Ok(())
    }

    fn write_entry(&mut self, path: &Path, relative: &Path, metadata: &Metadata) -> Result<()> {
        let form = match self.conversion {
            Conversion::OverlayToOci => oci_form(path, metadata)?,
            Conversion::None => OciForm::Plain,
        };
        match form {
            OciForm::Plain => self.write_plain(path, relative, metadata),
            OciForm::Whiteout => {
                let name = relative.file_name().context("a whiteout without a name")?;
                let mut marker = OsString::from(WHITEOUT_PREFIX);
                marker.push(name);
                // Mode 0600, as docker writes whiteouts.
                self.write_empty_file(&relative.with_file_name(marker), 0o600, metadata)
            }
            OciForm::OpaqueDirectory => {
                self.write_plain(path, relative, metadata)?;
                let mode = metadata.mode() & 0o777;
                self.write_empty_file(&relative.join(OPAQUE_MARKER), mode, metadata)
            }
        }
        .with_context(|| format!("archiving {}", path.display()))
    }

    fn write_plain(&mut self, path: &Path, relative: &Path, metadata: &Metadata) -> Result<()> {
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            let mut name = relative.as_os_str().to_owned();
            name.push("/");
            let mut header = header_of(metadata, EntryType::Directory);
            self.tar.append_data(&mut header, name, io::empty())?;
        } else if file_type.is_file() {
            self.write_file(path, relative, metadata)?;
        } else if file_type.is_symlink() {
            let target =
                fs::read_link(path).with_context(|| format!("readlink {}", path.display()))?;
            let mut header = header_of(metadata, EntryType::Symlink);
            self.tar.append_link(&mut header, relative, target)?;
        } else if file_type.is_fifo() {
            let mut header = header_of(metadata, EntryType::Fifo);
            self.tar.append_data(&mut header, relative, io::empty())?;
        } else if file_type.is_char_device() || file_type.is_block_device() {
            self.write_device(relative, metadata)?;
        }
        // Anything else is a socket: skipped.
        Ok(())
    }

    fn write_file(&mut self, path: &Path, relative: &Path, metadata: &Metadata) -> Result<()> {
        if metadata.nlink() > 1 {
            let inode = (metadata.dev(), metadata.ino());
            if let Some(first) = self.first_links.get(&inode) {
                let mut header = header_of(metadata, EntryType::Link);
                self.tar.append_link(&mut header, relative, first)?;
                return Ok(());
            }
            self.first_links.insert(inode, relative.to_owned());
        }
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut header = header_of(metadata, EntryType::Regular);
        header.set_size(metadata.len());
        self.tar.append_data(&mut header, relative, file)?;
        Ok(())
    }

    fn write_device(&mut self, relative: &Path, metadata: &Metadata) -> Result<()> {
        let kind = if metadata.file_type().is_char_device() {
            EntryType::Char
        } else {
            EntryType::Block
        };
        let mut header = header_of(metadata, kind);
        let rdev = metadata.rdev();
        header.set_device_major(u32::try_from(major(rdev)).context("device major")?)?;
        header.set_device_minor(u32::try_from(minor(rdev)).context("device minor")?)?;
        self.tar.append_data(&mut header, relative, io::empty())?;
        Ok(())
    }

    fn write_empty_file(&mut self, relative: &Path, mode: u32, metadata: &Metadata) -> Result<()> {
        let mut header = header_of(metadata, EntryType::Regular);
        header.set_mode(mode);
        self.tar.append_data(&mut header, relative, io::empty())?;
        Ok(())
    }
}

/// A tar header of type `kind` with what a layer keeps of `metadata`: the
/// permission bits (setuid, setgid and sticky included), the owner and the
/// modification time. GNU format: its extension entries hold paths and link
/// targets longer than the header's 100 bytes, which the tar crate adds.
fn header_of(metadata: &Metadata, kind: EntryType) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(metadata.mode() & 0o7777);
    header.set_uid(metadata.uid().into());
    header.set_gid(metadata.gid().into());
    header.set_mtime(metadata.mtime().max(0).unsigned_abs());
    header.set_size(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// A tar entry header with `path` written as is, unchecked: the tar
    /// crate's own setters refuse the hostile paths we need.
    fn raw_header(path: &str, kind: EntryType, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        header
    }

    fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, kind: EntryType, data: &[u8]) {
        let header = raw_header(path, kind, data.len() as u64);
        tar.append(&header, data).unwrap();
    }

    #[test]
    fn short_names_are_26_hex_characters() {
        let diff_id = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(short_name(&diff_id).unwrap(), "0123456789abcdef0123456789");
        assert!(short_name("sha256:../../x").is_err());
    }

    /// Imports the tar that `build` makes: it must fail with an error that
    /// names `entry` and says `why`, and publish nothing.
    fn assert_refused(build: impl FnOnce(&mut tar::Builder<Vec<u8>>), entry: &str, why: &str) {
        let (_dir, store) = new_store();
        let lock = store.lock().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        build(&mut tar);
        let error = import_layer(&store, &lock, &tar.into_inner().unwrap()[..]).unwrap_err();
        let message = format!("{error:#}");
        let names_entry = message.contains(&format!("entry {entry}:"));
        assert!(names_entry && message.contains(why), "{entry}: {message}");
        for published in ["layers/sha256", "l"] {
            let count = fs::read_dir(store.root().join(published)).unwrap().count();
            assert_eq!(count, 0, "{entry}: nothing published in {published}");
        }
    }

    #[test]
    fn entries_outside_the_layer_are_refused() {
        let (file, dotdot, absolute) = (EntryType::Regular, "`..`", "an absolute path");
        assert_refused(|t| append(t, "../escape", file, b"x"), "../escape", dotdot);
        assert_refused(|t| append(t, "a/../../x", file, b"x"), "a/../../x", dotdot);
        assert_refused(
            |t| append(t, "/etc/passwd", file, b"x"),
            "/etc/passwd",
            absolute,
        );
    }
}

//! An image layer: an OCI tar archive in, an overlayfs lower directory out,
//! and back.
//!
//! Importing unpacks a layer's tar, safely: no entry may write outside the
//! layer, and OCI whiteouts become overlayfs ones ([`crate::whiteout`]).
//! Exporting tars a directory in overlay form, whiteouts back in OCI form.
//!
//! A layer is named by its *diff id*: the SHA-256 of its uncompressed tar.
//! It is unpacked once, under `layers/sha256/<hex>/diff`, and never written
//! again: every image and container that uses it shares it.

use crate::store::{self, Locked, Store};
use crate::whiteout::{AUFS_METADATA_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX};
use anyhow::{bail, Context, Result};
use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use nix::sys::time::TimeVal;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use tar::{EntryType, Header};

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// "sha256:HEX" of the uncompressed tar.
    pub diff_id: String,
    /// The bytes of its regular files (their apparent sizes).
    pub size: u64,
}

// Exercises 3 and 4 live in whiteout.rs; still reachable from here too.
pub use crate::whiteout::{apply_oci_marker, oci_form, OciForm};

/// The length of a layer's short name: 26 hex characters (104 bits, as many
/// characters as docker's overlay2 uses) keep a deep image's overlay mount
/// options within one page. Two layers do not share one by chance, but they
/// can be made to: about 2^52 hashes (the birthday bound) find two tars whose
/// diff ids start alike. So a short name is never taken from the layer that
/// holds it: such an import is refused.
const SHORT_NAME_LENGTH: usize = 26;

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
    let mut unpacker = Unpacker {
        root,
        size: 0,
        directory_times: Vec::new(),
    };
    let setup = |archive: &mut tar::Archive<_>| {
        // A layer is a root filesystem: setuid bits and owners are part of it.
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        // Extended attributes could carry trusted.overlay.* ones, that would
        // change what overlayfs shows: only the opaque one is set, by us.
        archive.set_unpack_xattrs(false);
    };
    for_each_entry(&mut hashing, setup, |entry| unpacker.unpack(entry))?;
    unpacker.set_directory_times()?;
    Ok((hashing.digest()?, unpacker.size))
}

/// The most that the headers of one tar entry may take, 1 MiB: its GNU long
/// name and long link, its PAX records, its sparse map. The tar crate reads
/// them into memory whole, and 600 MiB of one repeated byte gzip to 600 KiB.
pub const MAX_ENTRY_HEADERS: u64 = 1 << 20;

/// Calls `each` on every entry of the tar stream `tar`, after `setup` has set
/// the archive's options. An entry whose headers take more than
/// [`MAX_ENTRY_HEADERS`] fails it, before they are read into memory.
///
/// How, in one pass: the reader under the tar crate refuses to read past a
/// limit. When an entry is handed to `each`, the reader stands at the start
/// of the entry's data; the next entry's headers start where the data ends
/// (rounded up to a 512-byte block), and may go on for MAX_ENTRY_HEADERS.
/// (A first pass over the headers alone would need the input twice, and would
/// have to find the entries exactly where the tar crate does: PAX records can
/// change an entry's size, sparse maps add blocks. Where two tar parsers
/// disagree, one archive shows each of them different entries.)
pub(crate) fn for_each_entry<R: Read>(
    tar: R,
    setup: impl FnOnce(&mut tar::Archive<HeaderLimit<R>>),
    mut each: impl FnMut(&mut tar::Entry<'_, HeaderLimit<R>>) -> Result<()>,
) -> Result<()> {
    let reader = HeaderLimit {
        inner: tar,
        position: Rc::new(Cell::new(0)),
        limit: Rc::new(Cell::new(MAX_ENTRY_HEADERS)),
    };
    let (position, limit) = (Rc::clone(&reader.position), Rc::clone(&reader.limit));
    let mut archive = tar::Archive::new(reader);
    setup(&mut archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let blocks = data_length(&mut entry)?.checked_next_multiple_of(512);
        let data_end = position.get() + blocks.context("an entry's size overflows")?;
        limit.set(data_end.saturating_add(MAX_ENTRY_HEADERS));
        // The extension entries the tar crate hands on (a PAX global header,
        // one without a standard magic number) are held to the same bound.
        let kind = entry.header().entry_type();
        let is_extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if is_extension && entry.size() > MAX_ENTRY_HEADERS {
            bail!(
                "refusing a {kind:?} entry of {} bytes: at most {MAX_ENTRY_HEADERS}",
                entry.size()
            );
        }
        each(&mut entry)?;
    }
    Ok(())
}

/// How many bytes of the archive hold `entry`'s data: its size, except for a
/// GNU sparse file, whose size is the file's, holes included.
fn data_length<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<u64> {
    if !entry.header().entry_type().is_gnu_sparse() {
        return Ok(entry.size());
    }
    // A PAX `size` record would override the header's size. No tar program
    // writes one for a GNU sparse file: refused, rather than read as tar does.
    if entry.pax_extensions()?.is_some() {
        bail!("refusing a GNU sparse file with PAX records");
    }
    Ok(entry.header().entry_size()?)
}

/// The reader under the tar crate in [`for_each_entry`]: it refuses to read
/// past `limit`, and counts what it read in `position`.
#[derive(Debug)]
pub(crate) struct HeaderLimit<R> {
    inner: R,
    position: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
}

impl<R: Read> Read for HeaderLimit<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let allowed = self.limit.get().saturating_sub(self.position.get());
        if allowed == 0 && !buffer.is_empty() {
            return Err(io::Error::other(format!(
                "an entry's headers (GNU long name or link, PAX records, sparse map) \
                 take more than {} MiB: refusing to read them into memory",
                MAX_ENTRY_HEADERS >> 20
            )));
        }
        let wanted = buffer
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let count = self.inner.read(&mut buffer[..wanted])?;
        self.position.set(self.position.get() + count as u64);
        Ok(count)
    }
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
        // In AUFS's bookkeeping directories (.wh..wh.plnk/...): skipped, as
        // they are (see apply_oci_marker).
        let aufs_metadata =
            |name: &OsStr| name.as_bytes().starts_with(AUFS_METADATA_PREFIX.as_bytes());
        if relative
            .parent()
            .is_some_and(|parent| parent.iter().any(aufs_metadata))
        {
            return Ok(());
        }
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
    /// a file outside would let the container change it. So no directory on
    /// the way to its target may be a symbolic link: with `link -> /etc`,
    /// `link/passwd` is the host's. (A target that is itself a symbolic link
    /// is linked as it is: link(2) does not follow it.)
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
/// opaque marker or AUFS metadata) the marker's owner and time, as docker
/// does: exported again, the layer keeps them.
fn keep_whiteout_owner_and_time(header: &Header, dir: &Path, name: &OsStr) -> Result<()> {
    let name = name.as_bytes();
    if name.starts_with(AUFS_METADATA_PREFIX.as_bytes()) {
        return Ok(()); // the opaque marker, or AUFS's bookkeeping: no whiteout
    }
    match name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        Some(deleted) => set_owner_and_time(header, &dir.join(OsStr::from_bytes(deleted))),
        None => Ok(()),
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
/// that layer is already there, then links its short name. A short name
/// that another layer holds refuses the layer first: nothing is published.
fn publish_layer(store: &Store, lock: &Locked, staging: &Path, diff_id: &str) -> Result<()> {
    let (link, target) = short_link(store, diff_id)?;
    let linked = match link_target(&link)? {
        None => false, // a new layer, or a crash left its link missing
        Some(existing) if existing == target => true,
        // Replacing it would swap that layer's files under its images and
        // containers; removing this layer later would break them.
        Some(existing) => bail!(
            "short name collision: {} already links to {}, another layer than {diff_id} \
             (their diff ids share the first 104 bits): refusing the layer",
            link.display(),
            existing.display()
        ),
    };
    let destination = store.layer_dir(diff_id)?;
    if destination.exists() {
        store::remove_path(staging)?;
    } else {
        store.publish(staging, &destination, lock)?;
    }
    if !linked {
        link_short_name(store, lock, &link, &target)?;
    }
    Ok(())
}

/// Removes `l/<short>` of the layer `diff_id`, if it links to this layer: a
/// link to another one is that layer's (which [`import_layer`] refuses to
/// replace). Missing, it is already removed.
pub fn unlink_short_name(store: &Store, diff_id: &str) -> Result<()> {
    let (link, target) = short_link(store, diff_id)?;
    if link_target(&link)?.is_some_and(|existing| existing == target) {
        fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    Ok(())
}

/// The layer's short link `l/<short>`, and what it links to: its `diff`,
/// by a relative path (the store may be moved).
fn short_link(store: &Store, diff_id: &str) -> Result<(PathBuf, PathBuf)> {
    let link = store.root().join("l").join(short_name(diff_id)?);
    let target = Path::new("../layers/sha256")
        .join(store::digest_hex(diff_id)?)
        .join("diff");
    Ok((link, target))
}

/// What the symbolic link `link` points to; None if there is no `link`.
fn link_target(link: &Path) -> Result<Option<PathBuf>> {
    match fs::read_link(link) {
        Ok(target) => Ok(Some(target)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("readlink {}", link.display())),
    }
}

/// Creates the symbolic link `link` to `target`: under `tmp/`, then renamed
/// into place.
fn link_short_name(store: &Store, lock: &Locked, link: &Path, target: &Path) -> Result<()> {
    let staging = store.staging_dir(lock)?;
    let temporary = staging.join("link");
    symlink(target, &temporary)
        .with_context(|| format!("ln -s {} {}", target.display(), temporary.display()))?;
    fs::rename(&temporary, link)
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
        let root = self.root.to_path_buf();
        walk_sorted(&root, relative, &mut |relative, metadata| {
            self.write_entry(&root.join(relative), relative, metadata)?;
            Ok(true)
        })
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

/// Calls `visit` for every entry below `base/relative`, depth first, with
/// its path relative to `base` and its lstat(2); goes into a directory only
/// when `visit` returns true. Names are sorted byte by byte: the order of
/// readdir(2) depends on the filesystem and on the directory's history, and
/// a layer written twice must come out the same.
pub fn walk_sorted(
    base: &Path,
    relative: &Path,
    visit: &mut dyn FnMut(&Path, &Metadata) -> Result<bool>,
) -> Result<()> {
    let dir = base.join(relative);
    let mut names = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<io::Result<Vec<OsString>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    names.sort();
    for name in names {
        let relative = relative.join(name);
        let path = base.join(&relative);
        let metadata =
            fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if visit(&relative, &metadata)? && metadata.is_dir() {
            walk_sorted(base, &relative, visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::new_store;

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

    /// A tar header of an extension entry (`L`, `K`, `x`, `g`) of `size`
    /// bytes, as GNU tar and the tar crate name them.
    fn extension_header(kind: EntryType, size: u64) -> Header {
        raw_header("././@LongLink", kind, size)
    }

    /// A file `a`, then `header` and `size` bytes of `fill` padded to a
    /// block, then a file `b`.
    fn tar_around(header: &Header, size: usize, fill: u8) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "a", EntryType::Regular, b"x");
        let mut bytes = tar.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024); // the end-of-archive blocks
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + size.next_multiple_of(512), fill);
        let mut tar = tar::Builder::new(bytes);
        append(&mut tar, "b", EntryType::Regular, b"x");
        tar.into_inner().unwrap()
    }

    /// The paths for_each_entry hands out, reading each entry's data if
    /// `read_data`, or the error, and how much of the input it read.
    fn entries_of(bytes: &[u8], read_data: bool) -> (Result<Vec<String>>, u64) {
        let mut input = io::Cursor::new(bytes);
        let mut paths = Vec::new();
        let walked = for_each_entry(
            &mut input,
            |_| {},
            |entry| {
                paths.push(entry.path()?.display().to_string());
                if read_data {
                    io::copy(entry, &mut io::sink())?;
                }
                Ok(())
            },
        );
        (walked.map(|()| paths), input.position())
    }

    #[test]
    fn huge_extension_headers_are_refused_before_they_are_read() {
        let mib = 1 << 20;
        for kind in [
            EntryType::GNULongName,
            EntryType::GNULongLink,
            EntryType::XHeader,
        ] {
            let header = extension_header(kind, 2 * mib);
            let (walked, read) = entries_of(&tar_around(&header, 2 * mib as usize, b'a'), false);
            let error = format!("{:#}", walked.unwrap_err());
            assert!(error.contains("take more than 1 MiB"), "{kind:?}: {error}");
            assert!(read <= 1024 + mib, "{kind:?}: read {read} bytes");
        }
        // Handed on by the tar crate, held to the same bound.
        let header = extension_header(EntryType::XGlobalHeader, 2 * mib);
        let (walked, _) = entries_of(&tar_around(&header, 2 * mib as usize, b'a'), false);
        let error = format!("{:#}", walked.unwrap_err());
        assert!(
            error.contains("XGlobalHeader entry of 2097152 bytes"),
            "{error}"
        );
    }

    #[test]
    fn long_names_and_big_files_pass_the_header_bound() {
        let mut tar = tar::Builder::new(Vec::new());
        let big = vec![7u8; 3 << 20];
        append(&mut tar, "big", EntryType::Regular, &big);
        // 300 bytes: the tar crate writes a GNU long name entry first.
        let long = "d/".repeat(149) + "f";
        let mut header = Header::new_gnu();
        header.set_size(1);
        tar.append_data(&mut header, &long, &b"x"[..]).unwrap();
        append(&mut tar, "big-again", EntryType::Regular, &big);
        append(&mut tar, "last", EntryType::Regular, b"x");
        let bytes = tar.into_inner().unwrap();
        for read_data in [false, true] {
            let (walked, _) = entries_of(&bytes, read_data);
            assert_eq!(walked.unwrap(), ["big", &long, "big-again", "last"]);
        }
    }

    #[test]
    fn a_hard_link_whose_target_goes_through_a_symlink_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let passwd = outside.path().join("passwd");
        fs::write(&passwd, "root:x:0:0").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        symlink(outside.path(), root.join("link")).unwrap();
        fs::write(root.join("file"), "ours").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        let mut unpacker = Unpacker {
            root,
            size: 0,
            directory_times: Vec::new(),
        };
        let mut hard_link = |target: &str| {
            let mut header = raw_header("stolen", EntryType::Link, 0);
            header.set_link_name(target).unwrap();
            header.set_cksum();
            let mut bytes = header.as_bytes().to_vec();
            bytes.resize(2048, 0);
            let mut archive = tar::Archive::new(&bytes[..]);
            let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
            let linked = unpacker.unpack_hard_link(&mut entry, &root.join("stolen"));
            linked.map_err(|error| format!("{error:#}"))
        };
        let error = hard_link("link/passwd").unwrap_err();
        assert!(
            error.contains("hard link to link/passwd, which is not a file unpacked earlier")
                && error.contains("link is a symbolic link"),
            "{error}"
        );
        assert!(fs::symlink_metadata(root.join("stolen")).is_err());
        assert_eq!(fs::metadata(&passwd).unwrap().nlink(), 1);
        // A link to a symbolic link is one more symbolic link.
        symlink(&passwd, root.join("passwd-link")).unwrap();
        hard_link("passwd-link").unwrap();
        assert_eq!(fs::read_link(root.join("stolen")).unwrap(), passwd);
        assert_eq!(fs::metadata(&passwd).unwrap().nlink(), 1);
        let error = hard_link("dir").unwrap_err();
        assert!(error.contains("not a file unpacked earlier"), "{error}");
        hard_link("./file").unwrap();
        assert_eq!(fs::read_to_string(root.join("stolen")).unwrap(), "ours");
        assert_eq!(fs::metadata(root.join("file")).unwrap().nlink(), 2);
    }

    #[test]
    fn what_is_inside_aufs_metadata_directories_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let mut unpacker = Unpacker {
            root: root.path(),
            size: 0,
            directory_times: Vec::new(),
        };
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, ".wh..wh.plnk/1234.5678", EntryType::Regular, b"x");
        append(&mut tar, "a/.wh..wh.aufs/x/y", EntryType::Regular, b"x");
        let bytes = tar.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        for entry in archive.entries().unwrap() {
            unpacker.unpack(&mut entry.unwrap()).unwrap();
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
        let header = raw_header(".wh..wh.plnk", EntryType::Regular, 0);
        let plnk = OsStr::new(".wh..wh.plnk");
        keep_whiteout_owner_and_time(&header, root.path(), plnk).unwrap();
    }

    /// A diff id whose first 104 bits are those of every other one here.
    fn colliding_diff_id(last: char) -> String {
        format!("sha256:{}{}", "ab".repeat(13), last.to_string().repeat(38))
    }

    fn publish(store: &Store, lock: &Locked, diff_id: &str) -> Result<()> {
        let staging = store.staging_dir(lock).unwrap();
        fs::create_dir(staging.join("diff")).unwrap();
        publish_layer(store, lock, &staging, diff_id)
    }

    #[test]
    fn a_short_name_is_never_taken_from_the_layer_that_holds_it() {
        let (_dir, store) = new_store();
        let lock = store.lock().unwrap();
        let (first, second) = (colliding_diff_id('0'), colliding_diff_id('1'));
        let link = store.root().join("l").join("ab".repeat(13));
        let first_diff = Path::new("../layers/sha256")
            .join(store::digest_hex(&first).unwrap())
            .join("diff");
        publish(&store, &lock, &first).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), first_diff);
        assert!(link.join("..").join("..").is_dir(), "a link that resolves");
        // The same layer again: it is there, with its link.
        publish(&store, &lock, &first).unwrap();

        let error = format!("{:#}", publish(&store, &lock, &second).unwrap_err());
        assert!(error.contains("short name collision"), "{error}");
        assert!(!store.layer_dir(&second).unwrap().exists(), "not published");
        assert_eq!(fs::read_link(&link).unwrap(), first_diff);

        unlink_short_name(&store, &second).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), first_diff, "not its link");
        unlink_short_name(&store, &first).unwrap();
        assert!(fs::symlink_metadata(&link).is_err());
        unlink_short_name(&store, &first).unwrap();
        // A link lost in a crash is made again.
        publish(&store, &lock, &first).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), first_diff);
    }
}

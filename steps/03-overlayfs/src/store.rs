//! Where images, layers and containers live: the directory given by `--root`.
//!
//! ```text
//! ROOT/
//!   lock                          flock(2): one command changes the store at a time
//!   tmp/                          work in progress; renamed into place when complete
//!   layers/sha256/<diff-id>/diff  a layer's files, unpacked once, never written again
//!   layers/sha256/<diff-id>/size  its size in bytes
//!   l/<short>  ->  ../layers/sha256/<diff-id>/diff   short names for the mount options
//!   images/<name>.json            an image: its OCI config, naming its layers in order
//!   containers/<id>/state.json    a container: image, command, status, exit code
//!   containers/<id>/upper, work   its overlay's writable layer and overlayfs's scratch dir
//!   containers/<id>/merged        where the overlay is mounted (inside the container only)
//! ```
//!
//! Every change is made under `tmp/` and then renamed into place: rename(2)
//! is atomic, so a command that fails or is killed half-way leaves either
//! the old state or the new one, never half of it. What it left in `tmp/`
//! is removed by the next command that takes the lock.

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The default `--root`, as docker's /var/lib/docker.
pub const DEFAULT_ROOT: &str = "/var/lib/tara";

/// The state directory of images, layers and containers.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while a command changes the store; dropping it unlocks.
#[derive(Debug)]
pub struct Locked {
    _lock: Flock<File>,
}

impl Store {
    /// Opens (creating it if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["tmp", "layers/sha256", "l", "images", "containers"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        // Layers keep their owners and setuid bits, and a container's upper
        // dir holds what root wrote inside: a user of the host who could reach
        // them could run a setuid-root program from an image (docker's
        // CVE-2021-41091). Only root may enter the store's directories.
        restrict(root, 0o711)?;
        for dir in ["tmp", "layers", "l", "images", "containers"] {
            restrict(&root.join(dir), 0o700)?;
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        Ok(Store { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's lock (waiting for another command to finish), then
    /// removes what a command that died left in `tmp/`: nobody else can be
    /// working there while we hold the lock.
    pub fn lock(&self) -> Result<Locked> {
        let path = self.root.join("lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .with_context(|| format!("flock({}, LOCK_EX)", path.display()))?;
        self.clean_tmp()?;
        Ok(Locked { _lock: lock })
    }

    /// Removes everything under `tmp/`: what the command holding `_lock`
    /// was building when it failed, so that a failure leaves the store as
    /// it was.
    pub fn discard_staging(&self, _lock: &Locked) -> Result<()> {
        self.clean_tmp()
    }

    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).with_context(|| format!("listing {}", tmp.display()))? {
            let path = entry?.path();
            remove_path(&path)?;
        }
        Ok(())
    }

    /// A new, empty directory under `tmp/` to build something in.
    pub fn staging_dir(&self, _lock: &Locked) -> Result<PathBuf> {
        let path = self.root.join("tmp").join(random_hex(16)?);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(path)
    }

    /// Moves `staging` (under `tmp/`) to `destination`, atomically.
    pub fn publish(&self, staging: &Path, destination: &Path, _lock: &Locked) -> Result<()> {
        fs::rename(staging, destination)
            .with_context(|| format!("rename({}, {})", staging.display(), destination.display()))
    }

    /// Removes `path` (a layer's or a container's directory) for good: it
    /// is renamed into `tmp/` first, so that a crash half-way never leaves
    /// half of it under its name (`tmp/` is emptied by the next command).
    pub fn discard(&self, path: &Path, lock: &Locked) -> Result<()> {
        let trash = self.staging_dir(lock)?;
        self.publish(path, &trash.join("discarded"), lock)?;
        remove_path(&trash)
    }

    /// The directory of the layer `diff_id` ("sha256:HEX").
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers/sha256").join(digest_hex(diff_id)?))
    }

    /// The diff IDs ("sha256:HEX") of every layer in the store.
    pub fn layer_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("layers/sha256");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let name = entry?.file_name();
            ids.push(format!("sha256:{}", name.to_string_lossy()));
        }
        Ok(ids)
    }

    /// The images' directory.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The containers' directory.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
}

/// Sets the permission bits of `dir` to `mode`.
fn restrict(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", dir.display()))
}

/// The hex part of a "sha256:HEX" digest, checked: it becomes a file name.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        bail!("unsupported digest {digest:?}: only sha256 is supported");
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        bail!("malformed digest {digest:?}: expected sha256: and 64 lowercase hex digits");
    }
    Ok(hex)
}

/// `bytes` random bytes from the kernel, as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .context("reading /dev/urandom")?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Removes a file, a symbolic link or a whole directory tree.
pub fn remove_path(path: &Path) -> Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("stat {}", path.display())),
    };
    let removed = if metadata.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    removed.with_context(|| format!("removing {}", path.display()))
}

/// Writes `contents` to `path` atomically: a temporary file beside it, then
/// rename(2).
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let name = path.file_name().context("a file name")?.to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}", random_hex(8)?));
    let mut file =
        File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    // Written and flushed to disk before the rename: after a crash the name
    // holds the old contents or the new, never an empty file.
    std::io::Write::write_all(&mut file, contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path)
        .with_context(|| format!("rename({}, {})", temporary.display(), path.display()))
}

/// A store in a new temporary directory, for the unit tests.
#[cfg(test)]
pub(crate) fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_sha256_digests_name_files() {
        let hex = "a".repeat(64);
        assert_eq!(digest_hex(&format!("sha256:{hex}")).unwrap(), hex);
        assert!(digest_hex(&format!("sha512:{hex}")).is_err());
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_hex(32).unwrap(), random_hex(32).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

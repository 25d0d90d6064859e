//! The initramfs: a cpio archive ("newc" format) the kernel unpacks into
//! its first root filesystem before it starts `/init`.

use super::debian::Program;
use super::linux::{self, Kernel};
use anyhow::{Context, Result};
use cpio::newc::{Builder, ModeFileType};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The script the kernel runs as PID 1.
const INIT: &str = include_str!("init.sh");

/// Where Debian and Ubuntu put the static busybox (package busybox-static).
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// The directories /init mounts on.
const DIRECTORIES: [&str; 9] = [
    "bin",
    "dev",
    "lib",
    "lib/modules",
    "lower",
    "newroot",
    "proc",
    "sys",
    "upper",
];

/// The host's static busybox: the guest's tools until switch_root.
pub fn busybox() -> Result<PathBuf> {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .context(
            "busybox is not installed: the initramfs needs the host's static busybox \
             (`sudo apt-get install busybox-static`, or `sudo bash vagrant/provision.sh`)",
        )
}

/// The initramfs of `kernel`, built unless an identical one is cached.
pub fn build(kernel: &Kernel, cache: &Path, xz: &Program) -> Result<PathBuf> {
    let modules = kernel.modules_to_load()?;
    let busybox = busybox()?;
    let dir = cache.join("initramfs");
    let path = dir.join(format!(
        "{}-{:016x}.cpio",
        kernel.release,
        fingerprint(&modules, &busybox)?
    ));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_older_archives(&dir, &kernel.release)?;
    let mut files: Vec<(Builder, Vec<u8>)> = Vec::new();
    for directory in DIRECTORIES {
        files.push((entry(directory, ModeFileType::Directory, 0o755), Vec::new()));
    }
    // The kernel opens /dev/console for init's stdin, stdout and stderr
    // before /init could mount devtmpfs: without this node init is mute.
    files.push((
        entry("dev/console", ModeFileType::Char, 0o600)
            .rdev_major(5)
            .rdev_minor(1),
        Vec::new(),
    ));
    let busybox_bytes =
        std::fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    files.push((
        entry("bin/busybox", ModeFileType::Regular, 0o755),
        busybox_bytes,
    ));
    files.push((
        entry("init", ModeFileType::Regular, 0o755),
        INIT.as_bytes().to_vec(),
    ));
    for (index, module) in modules.iter().enumerate() {
        let name = format!("lib/modules/{:02}-{}", index + 1, plain_module_name(module));
        let bytes = module_bytes(module, xz, &dir)?;
        files.push((entry(&name, ModeFileType::Regular, 0o644), bytes));
    }
    let archive = cpio::write_cpio(
        files
            .into_iter()
            .map(|(builder, bytes)| (builder, Cursor::new(bytes))),
        Cursor::new(Vec::new()),
    )
    .context("writing the initramfs archive")?
    .into_inner();
    let partial = path.with_extension("partial");
    std::fs::write(&partial, archive).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(path)
}

/// The archives of `release` that an earlier init script or module list
/// made: never used again.
fn remove_older_archives(dir: &Path, release: &str) -> Result<()> {
    let prefix = format!("{release}-");
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".cpio") {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn entry(name: &str, file_type: ModeFileType, permissions: u32) -> Builder {
    Builder::new(name)
        .mode(permissions)
        .set_mode_file_type(file_type)
        .nlink(1)
}

/// `9p.ko.xz` -> `9p.ko`: modules go into the initramfs uncompressed,
/// because busybox's insmod hands the bytes to the kernel as they are.
fn plain_module_name(module: &Path) -> String {
    let name = module.file_name().unwrap_or_default().to_string_lossy();
    match name.find(".ko") {
        Some(end) => format!("{}.ko", &name[..end]),
        None => name.into_owned(),
    }
}

/// The module's ELF bytes, decompressed when the package compressed it.
fn module_bytes(module: &Path, xz: &Program, scratch: &Path) -> Result<Vec<u8>> {
    if module.extension().is_some_and(|ext| ext == "ko") {
        return std::fs::read(module).with_context(|| format!("reading {}", module.display()));
    }
    let plain = scratch.join("module.partial");
    linux::decompress(xz, module, &plain)?;
    let bytes = std::fs::read(&plain).with_context(|| format!("reading {}", plain.display()))?;
    std::fs::remove_file(&plain).with_context(|| format!("removing {}", plain.display()))?;
    Ok(bytes)
}

/// What the archive is made of: a different init script, module list or
/// busybox gives a different file name, so a stale archive is never reused.
fn fingerprint(modules: &[PathBuf], busybox: &Path) -> Result<u64> {
    let mut hasher = DefaultHasher::new();
    INIT.hash(&mut hasher);
    modules.hash(&mut hasher);
    let metadata =
        std::fs::metadata(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    metadata.len().hash(&mut hasher);
    metadata.modified().ok().hash(&mut hasher);
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_stored_uncompressed() {
        assert_eq!(plain_module_name(Path::new("/m/9p.ko.xz")), "9p.ko");
        assert_eq!(plain_module_name(Path::new("/m/veth.ko")), "veth.ko");
    }

    #[test]
    fn the_init_script_mounts_cgroup2_only_and_switches_root() {
        assert!(INIT.contains("-t cgroup2 -o nsdelegate,memory_recursiveprot"));
        assert!(!INIT.contains("-t cgroup "));
        assert!(INIT.contains("exec switch_root /newroot"));
    }
}

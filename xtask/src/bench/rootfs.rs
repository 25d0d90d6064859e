//! The busybox root filesystem every container of the bench runs, and the
//! steps' images of it.
//!
//! The same layout as testkit's (the tests' rootfs), built here rather than
//! borrowed: testkit finds its copy from the path of a test binary and
//! panics on errors, and depending on it would bring the tests' crates
//! (assert_cmd, insta, nix...) into xtask for forty lines of work.

use super::lab::{Env, Lab};
use super::run_quietly;
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian and Ubuntu put busybox (package busybox-static).
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// The top-level directories, with their modes: what a container's
/// runtime mounts on (/proc, /sys, /dev, /tmp) must exist.
const DIRECTORIES: [(&str, u32); 10] = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("var", 0o755),
];

const FILES: [(&str, &str); 3] = [
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
];

/// How many layers the deep image of step 03 has.
pub const DEEP_LAYERS: u32 = 50;

/// The host's busybox, or an error that names the package.
pub fn find_busybox() -> Result<PathBuf> {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .context("busybox is not installed: install the package busybox-static")
}

/// Builds the rootfs in `dir`: the directories, a few files, busybox and a
/// link to it for each of its applets (`/bin/true` among them).
pub fn build(dir: &Path) -> Result<()> {
    let busybox = find_busybox()?;
    for (name, mode) in DIRECTORIES {
        let path = dir.join(name);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    for (name, content) in FILES {
        fs::write(dir.join(name), content).with_context(|| format!("writing {name}"))?;
    }
    fs::copy(&busybox, dir.join("bin/busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    for applet in applets(&busybox)? {
        let link = dir.join("bin").join(&applet);
        if !link.exists() {
            symlink("busybox", &link).with_context(|| format!("symlink {}", link.display()))?;
        }
    }
    // Alone in a rootfs, a dynamically linked busybox finds no libc.
    let status = Command::new("chroot")
        .arg(dir)
        .args(["/bin/busybox", "true"])
        .status()
        .context("running chroot")?;
    if !status.success() {
        bail!(
            "{} is not statically linked: install the package busybox-static",
            busybox.display()
        );
    }
    Ok(())
}

fn applets(busybox: &Path) -> Result<Vec<String>> {
    let output = run_quietly(Command::new(busybox).arg("--list"))?;
    Ok(output
        .lines()
        .map(str::to_string)
        .filter(|applet| !applet.is_empty() && !applet.contains('/'))
        .collect())
}

/// Imports the rootfs as the image `busybox` into the store of `step`
/// (03 and later); for step 03 also `busybox-50`, the same with 49 more
/// layers of one small file each.
pub fn import_images(lab: &Lab, step: &str, binary: &Path) -> Result<()> {
    let store = lab.store(step);
    let import = |args: &[&str]| -> Result<()> {
        let mut argv = vec![
            binary.to_string_lossy().into_owned(),
            "--root".to_string(),
            store.to_string_lossy().into_owned(),
            "image".to_string(),
            "import".to_string(),
        ];
        argv.extend(args.iter().map(|arg| arg.to_string()));
        run_quietly(&mut lab.command(Env::Lab, &argv))
            .with_context(|| format!("importing an image into step {step}'s store"))
            .map(drop)
    };
    import(&["busybox", &lab.rootfs().to_string_lossy()])?;
    if step != "03" {
        return Ok(());
    }
    let layer = lab.work().join("layer");
    let mut parent = "busybox".to_string();
    for n in 2..=DEEP_LAYERS {
        let _ = fs::remove_dir_all(&layer);
        let files = layer.join("layers");
        fs::create_dir_all(&files).with_context(|| format!("creating {}", files.display()))?;
        fs::write(files.join(n.to_string()), "")
            .with_context(|| format!("writing a file in {}", files.display()))?;
        let name = format!("busybox-{n}");
        import(&["--parent", &parent, &name, &layer.to_string_lossy()])?;
        parent = name;
    }
    Ok(())
}

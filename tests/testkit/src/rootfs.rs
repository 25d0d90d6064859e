//! A busybox root filesystem for the containers of the tests.
//!
//! Built once per run from the host's static busybox (Debian and Ubuntu
//! package `busybox-static`) into `target/<profile>/testkit/`, behind a file
//! lock so that tests running in parallel, in one binary or several, share
//! one copy. Tests must treat it as read-only; a test that writes to its root
//! filesystem takes a [`private_busybox_rootfs`] instead.

use crate::Sandbox;
use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the layout changes, so that an old copy is not reused.
const LAYOUT_VERSION: u32 = 1;

/// Where Debian and Ubuntu put busybox.
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// The top-level directories of the rootfs, with their modes.
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

const FILES: [(&str, &str); 4] = [
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ("etc/os-release", "NAME=\"testkit busybox\"\nID=busybox\n"),
];

/// The shared busybox rootfs (read-only by convention), built on first use.
pub fn busybox_rootfs() -> PathBuf {
    let base = testkit_dir();
    let rootfs = base.join(format!("busybox-rootfs-v{LAYOUT_VERSION}"));
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    let lock =
        File::create(base.join("busybox-rootfs.lock")).expect("creating the rootfs lock file");
    lock.lock().expect("locking the rootfs lock file");
    if !rootfs.exists() {
        let staging = base.join(format!("busybox-rootfs-v{LAYOUT_VERSION}.partial"));
        let _ = fs::remove_dir_all(&staging);
        build(&staging);
        fs::rename(&staging, &rootfs).expect("moving the finished rootfs into place");
        give_to_invoking_user(&base);
    }
    rootfs
}

/// A copy of the busybox rootfs inside `sandbox`, for a test that writes to it.
pub fn private_busybox_rootfs(sandbox: &Sandbox) -> PathBuf {
    let copy = sandbox.join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&copy)
        .status()
        .expect("running cp -a");
    assert!(status.success(), "cp -a of the busybox rootfs failed");
    copy
}

/// `target/<profile>/testkit`, found from the test binary's own path
/// (`target/<profile>/deps/acceptance-HASH`).
fn testkit_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(2)
        .expect("the test binary lives in target/<profile>/deps")
        .join("testkit")
}

fn build(root: &Path) {
    let busybox = find_static_busybox();
    for (dir, mode) in DIRECTORIES {
        let path = root.join(dir);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    for (file, content) in FILES {
        fs::write(root.join(file), content).expect("writing a file of the rootfs");
    }
    fs::copy(&busybox, root.join("bin/busybox")).expect("copying busybox");
    for applet in applets(&busybox) {
        let link = root.join("bin").join(&applet);
        if !link.exists() {
            symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
    }
    check_runs_alone(root);
}

fn find_static_busybox() -> PathBuf {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "busybox is not installed: the tests build their container root filesystem \
                 from the host's static busybox. Install it with `sudo apt-get install \
                 busybox-static` (or run `sudo vagrant/provision.sh`)."
            )
        })
}

fn applets(busybox: &Path) -> Vec<String> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("running busybox --list");
    assert!(output.status.success(), "busybox --list failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .filter(|applet| !applet.is_empty() && !applet.contains('/'))
        .collect()
}

/// A dynamically linked busybox cannot run inside a rootfs without the
/// host's libraries: prove this one runs there on its own.
fn check_runs_alone(root: &Path) {
    let status = Command::new("chroot")
        .arg(root)
        .args(["/bin/busybox", "true"])
        .status()
        .expect("running chroot");
    assert!(
        status.success(),
        "the host's busybox does not run inside a bare rootfs: it must be statically linked. \
         Install the package busybox-static (`sudo apt-get install busybox-static`)."
    );
}

/// Tests run as root through sudo: hand the files back to the user, so that
/// `cargo clean` works without root.
fn give_to_invoking_user(root: &Path) {
    let (Ok(uid), Ok(gid)) = (std::env::var("SUDO_UID"), std::env::var("SUDO_GID")) else {
        return;
    };
    let _ = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(root)
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_holds_a_busybox_that_runs_alone() {
        crate::require_root();
        let rootfs = busybox_rootfs();
        assert!(rootfs.join("bin/sh").exists());
        assert!(rootfs.join("etc/passwd").exists());
        let output = Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", "echo $((6 * 7))"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "42\n");
        // A second call reuses the first build.
        assert_eq!(busybox_rootfs(), rootfs);
    }

    #[test]
    fn a_private_copy_lives_in_the_sandbox() {
        let sandbox = Sandbox::new();
        let copy = private_busybox_rootfs(&sandbox);
        assert!(copy.starts_with(sandbox.path()));
        assert!(copy.join("bin/busybox").exists());
    }
}

//! Acceptance tests of step 03-overlayfs.
//!
//! Compiled into both `step-03-overlayfs` (the student's crate) and
//! `solution-03-overlayfs` (the reference). The first tests call one
//! exercise's function each, through the crate's library (`lesson`); the
//! others drive the crate's binary, `[--root DIR] image|run|ps|rm|diff|commit`,
//! with a store of their own in the sandbox and images made from testkit's
//! busybox root filesystem, on the real kernel, as root.

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::{major, minor, mknod, Mode, SFlag};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::{
    busybox_rootfs, call_exercise, cut_from_the_host, in_child, in_fresh_process, run_to_end,
    snapshot_settings, Finished, Sandbox, StoreCli,
};

// `lesson`: the library of the crate this file is compiled into.
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/lesson.rs"));

/// The xattr that marks an opaque directory in an overlay's upper layer.
const OPAQUE: &str = "trusted.overlay.opaque";

// ---------------------------------------------------------------------------
// Helpers: a store in the sandbox, and the binary run against it.
// ---------------------------------------------------------------------------

/// A test's own `--root`, inside its sandbox: testkit's [`StoreCli`], with
/// what this step's tests add.
struct Store<'a>(StoreCli<'a>);

impl<'a> std::ops::Deref for Store<'a> {
    type Target = StoreCli<'a>;

    fn deref(&self) -> &StoreCli<'a> {
        &self.0
    }
}

impl<'a> Store<'a> {
    fn new(sandbox: &'a Sandbox) -> Self {
        Store(StoreCli::new(sandbox, env!("CARGO_PKG_NAME")))
    }

    /// Runs `sh -c SCRIPT` in a new container `name` of `image`, which is
    /// kept (for `diff`, `commit`, `rm`); must succeed; returns its stdout.
    fn sh(&self, name: &str, image: &str, script: &str) -> String {
        self.ok(&["run", "--name", name, image, "--", "sh", "-c", script])
    }

    /// Every path under the store, with its type, mode, and for a file the
    /// SHA-256 of its bytes: a fingerprint to compare before and after a
    /// failed command.
    fn fingerprint(&self) -> Vec<String> {
        use sha2::Digest;
        let mut lines = Vec::new();
        list_tree(self.root(), Path::new(""), &mut lines);
        for line in &mut lines {
            let path = self
                .root()
                .join(line.split(' ').next().unwrap().trim_start_matches('/'));
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                let bytes = std::fs::read(&path).unwrap();
                line.push_str(&format!(" sha256:{:x}", sha2::Sha256::digest(bytes)));
            }
        }
        lines
    }
}

/// Appends one line per entry below `base/relative` to `lines`, sorted.
fn list_tree(base: &Path, relative: &Path, lines: &mut Vec<String>) {
    let dir = base.join(relative);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = relative.join(&name);
        let metadata = std::fs::symlink_metadata(base.join(&path)).unwrap();
        lines.push(describe(&path, &base.join(&path), &metadata));
        if metadata.is_dir() {
            list_tree(base, &path, lines);
        }
    }
}

/// `path TYPE MODE [details]`: what a snapshot of a layer needs to show.
fn describe(path: &Path, full: &Path, metadata: &std::fs::Metadata) -> String {
    let mode = metadata.permissions().mode() & 0o7777;
    let file_type = metadata.file_type();
    let details = if file_type.is_char_device() {
        let rdev = metadata.rdev();
        format!("char {}:{}", major(rdev), minor(rdev))
    } else if file_type.is_symlink() {
        format!("-> {}", std::fs::read_link(full).unwrap().display())
    } else if file_type.is_dir() {
        match xattr::get(full, OPAQUE) {
            Ok(Some(value)) => format!("dir {OPAQUE}={}", String::from_utf8_lossy(&value)),
            _ => "dir".into(),
        }
    } else {
        format!("file {} bytes", metadata.len())
    };
    format!("/{} {mode:o} {details}", path.display())
}

/// A tar archive with `entries` (path, contents); a path ending in `/` is
/// a directory.
fn tar_with(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, path, std::io::empty())
                .unwrap();
        } else {
            header.set_mode(0o644);
            header.set_size(contents.len() as u64);
            builder
                .append_data(&mut header, path, contents.as_bytes())
                .unwrap();
        }
    }
    builder.into_inner().unwrap()
}

// ---------------------------------------------------------------------------
// One exercise at a time: each of these calls one exercise's function.
// ---------------------------------------------------------------------------

#[test]
fn mount_options_list_the_layers_top_most_first() {
    testkit::require_root();
    let lowers = [
        PathBuf::from("l/bottom"),
        PathBuf::from("l/middle"),
        PathBuf::from("l/top"),
    ];
    let options = call_exercise(|| {
        lesson::overlay::mount_options(&lowers, Path::new("c/upper"), Path::new("c/work"))
    });
    assert_eq!(
        options,
        format!(
            "lowerdir=l/top:l/middle:l/bottom,upperdir=c/upper,workdir=c/work,{}",
            lesson::overlay::PLAIN_UPPER_OPTIONS
        )
    );
}

#[test]
fn mount_overlay_merges_the_layers_and_writes_to_upper() {
    in_fresh_process(|| {
        let sandbox = Sandbox::new();
        let base = sandbox.path();
        for (dir, file) in [
            ("lower1", Some("a")),
            ("lower2", Some("b")),
            ("upper", None),
        ] {
            std::fs::create_dir(base.join(dir)).unwrap();
            if let Some(file) = file {
                std::fs::write(base.join(dir).join(file), dir).unwrap();
            }
        }
        std::fs::write(base.join("lower1/b"), "hidden by lower2").unwrap();
        for dir in ["work", "merged"] {
            std::fs::create_dir(base.join(dir)).unwrap();
        }
        let merged = base.join("merged");
        in_child(CloneFlags::CLONE_NEWNS, || {
            cut_from_the_host()?;
            let options = "lowerdir=lower2:lower1,upperdir=upper,workdir=work";
            lesson::overlay::mount_overlay(base, options, &merged).map_err(|e| format!("{e:#}"))?;
            let read = |name: &str| std::fs::read_to_string(merged.join(name)).unwrap_or_default();
            if (read("a").as_str(), read("b").as_str()) != ("lower1", "lower2") {
                return Err(format!(
                    "merged shows a={:?} b={:?}: are the lower dirs stacked?",
                    read("a"),
                    read("b")
                ));
            }
            std::fs::write(merged.join("c"), "new").map_err(|e| format!("writing merged/c: {e}"))
        })
        .unwrap_or_else(|message| panic!("{message}"));
        assert_eq!(
            std::fs::read_to_string(base.join("upper/c")).unwrap(),
            "new"
        );
        assert!(!base.join("lower1/c").exists() && !base.join("lower2/c").exists());
    });
}

#[test]
fn apply_oci_marker_makes_overlay_whiteouts_and_opaque_dirs() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path();
    let apply = |name: &str| {
        call_exercise(|| lesson::whiteout::apply_oci_marker(dir, name.as_ref()))
            .unwrap_or_else(|e| panic!("apply_oci_marker({name}): {e:#}"))
    };
    assert!(!apply("plain-file"), "a plain entry is no marker");
    assert!(apply(".wh.gone"), ".wh.gone is a whiteout");
    let gone = std::fs::symlink_metadata(dir.join("gone")).expect("gone, the whiteout");
    assert!(
        gone.file_type().is_char_device(),
        "a whiteout is a character device"
    );
    assert_eq!(gone.rdev(), 0, "a whiteout's device number is 0/0");
    assert!(
        !dir.join(".wh.gone").exists(),
        "the marker itself is not kept"
    );
    assert!(
        apply(".wh..wh..opq"),
        ".wh..wh..opq marks an opaque directory"
    );
    assert_eq!(xattr::get(dir, OPAQUE).unwrap().as_deref(), Some(&b"y"[..]));
}

#[test]
fn oci_form_reads_whiteouts_and_opaque_dirs() {
    use lesson::whiteout::OciForm;
    let sandbox = Sandbox::new();
    let dir = sandbox.path();
    std::fs::write(dir.join("file"), "x").unwrap();
    mknod(&dir.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).expect("mknod a whiteout");
    mknod(
        &dir.join("tty"),
        SFlag::S_IFCHR,
        Mode::empty(),
        nix::sys::stat::makedev(5, 0),
    )
    .expect("mknod a real device");
    std::fs::create_dir(dir.join("opaque")).unwrap();
    xattr::set(dir.join("opaque"), OPAQUE, b"y").unwrap();
    std::fs::create_dir(dir.join("plain")).unwrap();
    let form = |name: &str| {
        let path = dir.join(name);
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        call_exercise(|| lesson::whiteout::oci_form(&path, &metadata))
            .unwrap_or_else(|e| panic!("oci_form({name}): {e:#}"))
    };
    assert!(matches!(form("file"), OciForm::Plain));
    assert!(matches!(form("gone"), OciForm::Whiteout));
    assert!(
        matches!(form("tty"), OciForm::Plain),
        "only 0/0 is a whiteout"
    );
    assert!(matches!(form("opaque"), OciForm::OpaqueDirectory));
    assert!(matches!(form("plain"), OciForm::Plain));
}

#[test]
fn change_of_tells_added_changed_and_deleted() {
    use lesson::container::Change;
    let sandbox = Sandbox::new();
    let lower = sandbox.join("lower");
    let upper = sandbox.join("upper");
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/hosts"), "old").unwrap();
    std::fs::write(lower.join("gone"), "old").unwrap();
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/hosts"), "new").unwrap();
    std::fs::write(upper.join("added"), "new").unwrap();
    mknod(&upper.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).expect("mknod a whiteout");
    let change = |relative: &str| {
        let metadata = std::fs::symlink_metadata(upper.join(relative)).unwrap();
        call_exercise(|| {
            lesson::container::change_of(
                &metadata,
                Path::new(relative),
                std::slice::from_ref(&lower),
            )
        })
    };
    assert_eq!(change("added"), Change::Added);
    assert_eq!(change("etc"), Change::Changed);
    assert_eq!(change("etc/hosts"), Change::Changed);
    assert_eq!(change("gone"), Change::Deleted);
}

// ---------------------------------------------------------------------------
// The whole runtime: these run the crate's binary.
// ---------------------------------------------------------------------------

#[test]
fn a_file_created_inside_lands_in_the_upper_dir_only() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", "echo hi > /new");
    let upper = store.container_dir("c1").join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "hi\n");
    assert!(
        !store.top_layer("busybox").join("new").exists(),
        "the layer was written"
    );
    // The image itself is unchanged for the next container.
    store
        .run(&["run", "--rm", "busybox", "--", "test", "-e", "/new"])
        .code(1);
}

#[test]
fn modifying_a_lower_file_copies_it_up_and_keeps_the_layer() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let layer_hosts = store.top_layer("busybox").join("etc/hosts");
    let before = std::fs::read(&layer_hosts).unwrap();
    let script = "echo '10.0.0.1 db' >> /etc/hosts && cat /etc/hosts";
    let inside = store.sh("c1", "busybox", script);
    assert!(inside.ends_with("10.0.0.1 db\n"), "{inside}");
    let copied = store.container_dir("c1").join("upper/etc/hosts");
    assert_eq!(
        std::fs::read_to_string(copied).unwrap(),
        inside,
        "the copy-up in upper/"
    );
    assert_eq!(
        std::fs::read(&layer_hosts).unwrap(),
        before,
        "the layer's file changed"
    );
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout_and_hides_it() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let script = "rm /etc/os-release && ls /etc";
    let listed = store.sh("c1", "busybox", script);
    assert!(!listed.contains("os-release"), "{listed}");
    let whiteout =
        std::fs::symlink_metadata(store.container_dir("c1").join("upper/etc/os-release"))
            .expect("a whiteout in upper/etc");
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(store.top_layer("busybox").join("etc/os-release").exists());
}

#[test]
fn a_directory_removed_and_made_again_is_opaque() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let script = "rm -rf /etc && mkdir /etc && echo fresh > /etc/new && ls /etc";
    let listed = store.sh("c1", "busybox", script);
    assert_eq!(listed, "new\n", "the image's /etc must be hidden");
    let etc = store.container_dir("c1").join("upper/etc");
    assert_eq!(
        xattr::get(&etc, OPAQUE).unwrap().as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn two_containers_of_one_image_do_not_see_each_others_changes() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("a", "busybox", "echo a > /mine");
    let seen = store.sh("b", "busybox", "cat /mine; echo b > /mine; cat /mine");
    assert_eq!(seen, "b\n", "container b saw a's file");
    let upper = |name: &str| store.container_dir(name).join("upper/mine");
    assert_eq!(std::fs::read_to_string(upper("a")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(upper("b")).unwrap(), "b\n");
}

/// A session that creates, changes, deletes and replaces files.
const SESSION: &str = "echo new > /new.txt && mkdir -p /srv/data && echo x > /srv/data/x \
    && chmod 600 /srv/data/x && echo more >> /etc/hosts && rm /etc/os-release \
    && rm -rf /home && mkdir /home && ln -s /srv/data /data";

#[test]
fn the_upper_dir_after_a_session_shows_copy_ups_whiteouts_and_opaque_dirs() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", SESSION);
    let mut lines = Vec::new();
    list_tree(
        &store.container_dir("c1").join("upper"),
        Path::new(""),
        &mut lines,
    );
    snapshot_settings("03-overlayfs").bind(|| insta::assert_snapshot!("upper", lines.join("\n")));
}

#[test]
fn diff_lists_what_changed_like_docker_diff() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", SESSION);
    let diff = store.ok(&["diff", "c1"]);
    snapshot_settings("03-overlayfs").bind(|| insta::assert_snapshot!("diff", diff));
}

#[test]
fn commit_then_run_sees_the_changes_deletions_included() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", SESSION);
    store.ok(&["commit", "c1", "busybox-changed"]);
    let script = "cat /new.txt /srv/data/x; tail -1 /etc/hosts; ls /home | wc -l; \
                  test -e /etc/os-release || echo os-release gone; readlink /data";
    let seen = store.ok(&["run", "--rm", "busybox-changed", "--", "sh", "-c", script]);
    assert_eq!(seen, "new\nx\nmore\n0\nos-release gone\n/srv/data\n");
    let history = |image: &str| store.ok(&["image", "history", image]).lines().count();
    assert_eq!(
        history("busybox-changed"),
        history("busybox") + 1,
        "one more layer"
    );
    assert!(store
        .ok(&["image", "history", "busybox-changed"])
        .contains("tara commit c1"));
}

#[test]
fn a_layer_tarball_with_whiteouts_imports_and_hides_files() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let tarball = sandbox.join("layer.tar");
    let entries = [
        ("etc/", ""),
        ("etc/.wh.os-release", ""),
        ("home/", ""),
        ("home/.wh..wh..opq", ""),
        ("home/only", "me\n"),
        ("added", "yes\n"),
    ];
    std::fs::write(&tarball, tar_with(&entries)).unwrap();
    let tarball = tarball.to_str().unwrap();
    store.ok(&["image", "import", "--parent", "busybox", "patched", tarball]);
    let script = "test -e /etc/os-release || echo gone; ls /home; cat /added";
    let seen = store.ok(&["run", "--rm", "patched", "--", "sh", "-c", script]);
    assert_eq!(seen, "gone\nonly\nyes\n");
}

#[test]
fn a_gzipped_layer_is_recognized_by_its_content() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar_with(&[("hello", "from gzip\n")]))
        .unwrap();
    // No .gz in the name: the content decides.
    let layer = sandbox.join("layer");
    std::fs::write(&layer, gzip.finish().unwrap()).unwrap();
    store.ok(&[
        "image",
        "import",
        "--parent",
        "busybox",
        "zipped",
        layer.to_str().unwrap(),
    ]);
    let seen = store.ok(&["run", "--rm", "zipped", "--", "cat", "/hello"]);
    assert_eq!(seen, "from gzip\n");
}

/// Runs `sh -c SCRIPT` on the host with `$0` set to `dir`; must succeed.
/// umoci and skopeo compress and hash whole images: under emulation (the
/// second-kernel test VM) that takes minutes, so they get a longer deadline.
fn host_sh(sandbox: &Sandbox, script: &str, dir: &Path) -> String {
    let mut command = Command::new("sh");
    command.args(["-c", script]).arg(dir);
    sandbox.mark(&mut command);
    let ended = testkit::run_with_deadline(command, std::time::Duration::from_secs(600));
    Finished::new(ended).success().stdout_text()
}

#[test]
fn an_oci_layout_made_by_umoci_imports_and_runs_with_its_config() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    let work = sandbox.join("umoci");
    std::fs::create_dir(&work).unwrap();
    let rootfs = busybox_rootfs();
    // umoci: a new image, the busybox tree as its layer, and a config with
    // an entrypoint, an environment variable and a working directory.
    let script = format!(
        r#"cd "$0" && umoci init --layout layout && umoci new --image layout:latest &&
umoci unpack --image layout:latest bundle >/dev/null &&
cp -a {rootfs}/. bundle/rootfs/ && umoci repack --image layout:latest bundle >/dev/null &&
umoci config --image layout:latest --config.entrypoint sh --config.cmd -c \
  --config.cmd 'echo "$GREETING from $(pwd)"' --config.env GREETING=hello \
  --config.workingdir /srv >/dev/null"#,
        rootfs = rootfs.display()
    );
    host_sh(&sandbox, &script, &work);
    store.import("from-umoci", &work.join("layout"));
    let seen = store.ok(&["run", "--rm", "from-umoci"]);
    assert_eq!(seen, "hello from /srv\n");
    // The same image as `docker save` writes it, converted by skopeo.
    let script = r#"cd "$0" && skopeo copy -q oci:layout:latest docker-archive:docker.tar:img:1"#;
    host_sh(&sandbox, script, &work);
    store.import("from-docker", &work.join("docker.tar"));
    assert_eq!(
        store.ok(&["run", "--rm", "from-docker"]),
        "hello from /srv\n"
    );
    let layers = std::fs::read_dir(store.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 1, "the two imports of one image share its layer");
}

#[test]
fn image_save_is_read_back_by_skopeo_and_umoci() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", SESSION);
    store.ok(&["commit", "c1", "changed"]);
    let archive = sandbox.join("changed.tar");
    store.ok(&["image", "save", "changed", archive.to_str().unwrap()]);
    let work = sandbox.path();
    let inspected = host_sh(
        &sandbox,
        r#"skopeo inspect --raw "oci-archive:$0/changed.tar" && echo &&
skopeo inspect --config "oci-archive:$0/changed.tar""#,
        work,
    );
    assert!(
        inspected.contains("application/vnd.oci.image.manifest.v1+json"),
        "{inspected}"
    );
    assert!(inspected.contains("tara commit c1"), "{inspected}");
    // umoci reads the layout that skopeo copies out of the archive, and
    // unpacks the same tree as the container saw.
    host_sh(
        &sandbox,
        r#"cd "$0" && skopeo copy -q oci-archive:changed.tar oci:layout:changed &&
umoci unpack --image layout:changed bundle >/dev/null"#,
        work,
    );
    let unpacked = sandbox.join("bundle/rootfs");
    assert_eq!(
        std::fs::read_to_string(unpacked.join("new.txt")).unwrap(),
        "new\n"
    );
    assert!(
        !unpacked.join("etc/os-release").exists(),
        "the deletion was lost"
    );
    assert_eq!(std::fs::read_dir(unpacked.join("home")).unwrap().count(), 0);
    assert!(unpacked.join("bin/busybox").exists());
}

#[test]
fn a_128_layer_image_runs_and_a_129th_layer_is_refused() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let layer = sandbox.join("layer");
    let mut parent = "busybox".to_string();
    for n in 2..=128 {
        std::fs::create_dir_all(layer.join("layers")).unwrap();
        let _ = std::fs::remove_dir_all(layer.join("layers"));
        std::fs::create_dir_all(layer.join("layers")).unwrap();
        std::fs::write(layer.join("layers").join(n.to_string()), "").unwrap();
        let name = format!("deep{n}");
        let source = layer.to_str().unwrap();
        store.ok(&["image", "import", "--parent", &parent, &name, source]);
        parent = name;
    }
    let seen = store.ok(&[
        "run",
        "--rm",
        "deep128",
        "--",
        "sh",
        "-c",
        "ls /layers | wc -l",
    ]);
    assert_eq!(seen.trim(), "127", "a file from every layer above busybox");
    let refused = store
        .run(&[
            "image",
            "import",
            "--parent",
            "deep128",
            "deep129",
            layer.to_str().unwrap(),
        ])
        .code(125)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&refused).contains("128"),
        "{refused:?}"
    );
    store.ok(&["run", "--name", "c1", "deep128", "--", "true"]);
    store.run(&["commit", "c1", "deep129"]).code(125);
}

/// A raw tar entry: name, type, link target, contents.
type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a str);

/// A tar archive whose raw entries are written as they are: the tar crate's
/// own checks would refuse to write the malicious names.
fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (name, kind, link, contents) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_mode(0o644);
        header.set_size(contents.len() as u64);
        header.set_cksum();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(contents.as_bytes());
        bytes.resize(bytes.len().next_multiple_of(512), 0);
    }
    bytes.resize(bytes.len() + 1024, 0);
    bytes
}

#[test]
fn malicious_layers_are_refused_and_write_nothing_outside() {
    use tar::EntryType::{Block, Directory, Link, Regular, Symlink};
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let outside = sandbox.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "secret").unwrap();
    let outside_text = outside.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        ("dot-dot", vec![("../../../escaped", Regular, "", "x")]),
        (
            "absolute",
            vec![("/tmp/escaped-absolute", Regular, "", "x")],
        ),
        (
            "through-a-symlink",
            vec![
                ("link", Symlink, &outside_text, ""),
                ("link/escaped", Regular, "", "x"),
            ],
        ),
        (
            "hard-link-out",
            vec![("stolen", Link, "../../../../../etc/passwd", "")],
        ),
        (
            "hard-link-absolute",
            vec![("stolen", Link, "/etc/passwd", "")],
        ),
        (
            "hard-link-to-nothing",
            vec![("stolen", Link, "not-in-the-layer", "")],
        ),
        ("a-disk", vec![("disk", Block, "", "")]),
        (
            "hard-link-through-a-symlink",
            vec![
                ("link", Symlink, &outside_text, ""),
                ("stolen", Link, "link/secret", ""),
            ],
        ),
        (
            "dir-then-dot-dot",
            vec![
                ("a/", Directory, "", ""),
                ("a/../../escaped", Regular, "", "x"),
            ],
        ),
    ];
    for (name, entries) in cases {
        let tarball = sandbox.join(&format!("{name}.tar"));
        std::fs::write(&tarball, raw_tar(&entries)).unwrap();
        let before = store.fingerprint();
        let failed = store
            .run(&[
                "image",
                "import",
                "--parent",
                "busybox",
                name,
                tarball.to_str().unwrap(),
            ])
            .code(125);
        let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        let culprit = entries.last().unwrap().0;
        assert!(
            stderr.contains(culprit.trim_start_matches('/')),
            "{name}: names {culprit}: {stderr}"
        );
        assert_eq!(store.fingerprint(), before, "{name}: the store changed");
    }
    let secret = std::fs::metadata(outside.join("secret")).unwrap();
    assert_eq!(secret.nlink(), 1, "a hard link to a file outside was made");
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["secret"], "something was written outside the layer");
    assert!(!Path::new("/tmp/escaped-absolute").exists());
    assert!(!sandbox.path().parent().unwrap().join("escaped").exists());
}

#[test]
fn importing_the_same_image_twice_stores_its_layer_once() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let layers = || {
        std::fs::read_dir(store.root().join("layers/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(layers(), 1);
    store.import("busybox-again", &busybox_rootfs());
    assert_eq!(
        layers(),
        1,
        "the same layer was stored twice: {}",
        store.ok(&["image", "history", "busybox-again"])
            + &store.ok(&["image", "history", "busybox"])
    );
    let listed = store.ok(&["image", "ls"]);
    assert!(
        listed.contains("busybox-again") && listed.contains("busybox "),
        "{listed}"
    );
}

#[test]
fn containers_are_listed_and_removed_and_leave_nothing() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store
        .run(&["run", "--name", "c1", "busybox", "--", "sh", "-c", "exit 3"])
        .code(3);
    let listed = store.ok(&["ps", "-a"]);
    let line = listed
        .lines()
        .find(|line| line.contains("c1"))
        .expect("c1 in ps -a");
    assert!(
        line.contains("Exited (3)") && line.contains("busybox"),
        "{line}"
    );
    assert!(
        !store.ok(&["ps"]).contains("c1"),
        "ps lists only running containers"
    );
    let refused = store
        .run(&["run", "--name", "c1", "busybox", "--", "true"])
        .code(125);
    assert!(String::from_utf8_lossy(&refused.get_output().stderr).contains("in use"));
    store.ok(&["rm", "c1"]);
    store.ok(&["run", "--rm", "--name", "c2", "busybox", "--", "true"]);
    let containers = std::fs::read_dir(store.root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(containers, 0, "a container's directory was left");
    assert!(
        sandbox.mounts_inside().is_empty(),
        "{:?}",
        sandbox.mounts_inside()
    );
}

#[test]
fn a_container_is_removed_by_a_unique_id_prefix() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.ok(&["run", "--name", "c1", "busybox", "--", "true"]);
    let id = store
        .container_dir("c1")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let short = &id[..12];
    assert!(store.ok(&["ps", "-a"]).contains(short));
    store.ok(&["rm", short]);
    assert!(!store.ok(&["ps", "-a"]).contains(short));
}

#[test]
fn image_rm_is_refused_while_used_and_keeps_shared_layers() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", "echo x > /x");
    store.ok(&["commit", "c1", "child"]);
    store.run(&["image", "rm", "busybox"]).code(125);
    store.ok(&["rm", "c1"]);
    store.ok(&["image", "rm", "busybox"]);
    let layers = || {
        std::fs::read_dir(store.root().join("layers/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(layers(), 2, "child still needs busybox's layer");
    assert_eq!(
        store.ok(&["run", "--rm", "child", "--", "cat", "/x"]),
        "x\n"
    );
    store.ok(&["image", "rm", "child"]);
    assert_eq!(layers(), 0, "unused layers were left");
    assert_eq!(
        std::fs::read_dir(store.root().join("l")).unwrap().count(),
        0
    );
}

#[test]
fn the_overlay_lives_in_the_container_only_and_dies_with_it() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let script = "echo ready; while :; do sleep 0.1; done";
    let mut runtime =
        sandbox.spawn(store.command(&["run", "--name", "c1", "busybox", "--", "sh", "-c", script]));
    runtime.wait_for_line("ready");
    let pid_1 = runtime.only_child();
    let id = store
        .container_dir("c1")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let overlays = |mountinfo: &str| {
        mountinfo
            .lines()
            .filter(|line| line.contains(" - overlay ") && line.contains(&id))
            .count()
    };
    let inside = std::fs::read_to_string(format!("/proc/{pid_1}/mountinfo")).unwrap();
    assert_eq!(
        overlays(&inside),
        1,
        "the container's / is the overlay:\n{inside}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        overlays(&host),
        0,
        "the overlay reached the host's mount table"
    );
    // kill -9 of the runtime: the container goes with it (PR_SET_PDEATHSIG),
    // and its mount namespace, overlay included.
    runtime.signal(Signal::SIGKILL);
    let _ = runtime.wait();
    testkit::wait_for("the container to die", testkit::DEFAULT_DEADLINE, || {
        (!Path::new(&format!("/proc/{pid_1}")).exists()).then_some(())
    });
    let listed = store.ok(&["ps", "-a"]);
    assert!(
        listed
            .lines()
            .any(|line| line.contains("c1") && line.contains("Dead")),
        "{listed}"
    );
    store.ok(&["rm", "c1"]);
}

#[test]
fn bad_images_sources_and_containers_give_one_line_and_125() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let one_line = |finished: Finished, words: &str| {
        let stderr = String::from_utf8_lossy(&finished.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(words), "{words:?} in {stderr}");
    };
    one_line(
        store.run(&["run", "no-such-image", "--", "true"]).code(125),
        "no-such-image",
    );
    one_line(
        store.run(&["rm", "no-such-container"]).code(125),
        "no-such-container",
    );
    one_line(
        store.run(&["diff", "no-such-container"]).code(125),
        "no-such-container",
    );
    // A corrupt gzip stream: the store is byte for byte as it was.
    let corrupt = sandbox.join("corrupt.tar.gz");
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef].repeat(64));
    std::fs::write(&corrupt, bytes).unwrap();
    let before = store.fingerprint();
    let failed = store
        .run(&["image", "import", "broken", corrupt.to_str().unwrap()])
        .code(125);
    one_line(failed, "corrupt.tar.gz");
    assert_eq!(
        store.fingerprint(),
        before,
        "a failed import changed the store"
    );
    one_line(
        store
            .run(&["run", "busybox", "--", "no-such-command"])
            .code(127),
        "no-such-command",
    );
}

#[test]
fn a_running_container_is_listed_and_is_neither_removed_nor_committed() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let script = "echo ready; while :; do sleep 0.1; done";
    let args = ["run", "--name", "busy", "busybox", "--", "sh", "-c", script];
    let mut runtime = sandbox.spawn(store.command(&args));
    runtime.wait_for_line("ready");
    let listed = store.ok(&["ps"]);
    assert!(
        listed
            .lines()
            .any(|line| line.contains("busy") && line.contains("Running")),
        "{listed}"
    );
    store.run(&["rm", "busy"]).code(125);
    store.run(&["commit", "busy", "snapshot"]).code(125);
    runtime.signal(Signal::SIGKILL);
    let _ = runtime.wait();
}

#[test]
fn failed_imports_leave_the_store_byte_for_byte_as_it_was() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let layer = sandbox.join("layer");
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::write(layer.join("etc/extra"), "x").unwrap();
    let layer = layer.to_str().unwrap();
    let before = store.fingerprint();
    store
        .run(&["image", "import", "--parent", "no-such", "img", layer])
        .code(125);
    assert_eq!(
        store.fingerprint(),
        before,
        "a missing --parent changed the store"
    );
    // An OCI layout whose second layer blob was damaged: its first layer
    // was already unpacked when the damage is found.
    let work = sandbox.join("umoci");
    std::fs::create_dir_all(work.join("one/a")).unwrap();
    std::fs::write(work.join("one/a/file"), "first layer").unwrap();
    let script = r#"cd "$0" && umoci init --layout layout && umoci new --image layout:x &&
umoci insert --image layout:x one/a /a && echo second > two && umoci insert --image layout:x two /two &&
ls -S layout/blobs/sha256 | head -1"#;
    let largest = host_sh(&sandbox, script, &work);
    let blob = work.join("layout/blobs/sha256").join(largest.trim());
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let failed = store.run(&[
        "image",
        "import",
        "damaged",
        work.join("layout").to_str().unwrap(),
    ]);
    failed.code(125);
    assert_eq!(
        store.fingerprint(),
        before,
        "a damaged image changed the store"
    );
}

#[test]
fn a_container_keeps_its_layers_when_its_image_name_is_reused() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    store.sh("c1", "busybox", "echo kept > /kept");
    // The name busybox now means another image, with no shell at all.
    let other = sandbox.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("only-file"), "").unwrap();
    store.import("busybox", &other);
    assert_eq!(store.ok(&["diff", "c1"]), "A /kept\n");
    store.ok(&["commit", "c1", "kept"]);
    assert_eq!(
        store.ok(&["run", "--rm", "kept", "--", "cat", "/kept"]),
        "kept\n"
    );
    // Removing the container frees busybox's old layer: nothing lists it.
    store.ok(&["rm", "c1"]);
    store.ok(&["image", "rm", "kept"]);
    let layers = std::fs::read_dir(store.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 1, "only the new busybox's layer is left");
}

#[test]
fn the_command_gets_the_images_environment_not_the_hosts() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let mut command = store.command(&["run", "--rm", "--hostname", "box", "busybox", "--", "env"]);
    command.env("ONLY_ON_THE_HOST", "1");
    let env = run_to_end(command).success().stdout_text();
    let mut names: Vec<&str> = env
        .lines()
        .filter_map(|line| line.split('=').next())
        .collect();
    names.sort();
    // PWD and SHLVL are the shell's own; busybox env prints what it got.
    assert_eq!(names, ["HOME", "HOSTNAME", "PATH"], "{env}");
    assert!(env.contains("HOSTNAME=box\n"), "{env}");
}

#[test]
fn names_ids_and_exit_codes_are_dockers() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let layer = sandbox.join("layer");
    std::fs::create_dir(&layer).unwrap();
    std::fs::write(layer.join("not-executable"), "#!/bin/sh\necho no\n").unwrap();
    store.ok(&[
        "image",
        "import",
        "--parent",
        "busybox",
        "img",
        layer.to_str().unwrap(),
    ]);
    store
        .run(&["run", "--name", "c1", "img", "--", "/not-executable"])
        .code(126);
    store
        .run(&["run", "--name", "c2", "img", "--", "/no-such-command"])
        .code(127);
    // A name that is also the start of another container's ID is free.
    // (Three hex digits: never "c1" or "c2", the names taken above.)
    let id = store
        .container_dir("c1")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    store.ok(&["run", "--name", &id[..3], "img", "--", "true"]);
    assert!(store.ok(&["ps", "-a"]).contains(&format!(" {} ", &id[..3])));
}

#[test]
fn aufs_metadata_is_skipped_and_long_header_bombs_are_refused() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let aufs = sandbox.join("aufs.tar");
    let entries = [
        (".wh..wh.plnk/", ""),
        (".wh..wh.plnk/1234.5678", "x"),
        (".wh..wh.aufs", ""),
        ("etc/", ""),
        ("etc/.wh..wh.orph", ""),
        ("etc/kept", "kept"),
    ];
    std::fs::write(&aufs, tar_with(&entries)).unwrap();
    store.ok(&[
        "image",
        "import",
        "--parent",
        "busybox",
        "aufs",
        aufs.to_str().unwrap(),
    ]);
    let listed = store.ok(&["run", "--rm", "aufs", "--", "ls", "-a", "/", "/etc"]);
    assert!(listed.contains("kept"), "{listed}");
    // Whiteouts are hidden from ls: look in the layer itself.
    let mut layer = Vec::new();
    list_tree(&store.top_layer("aufs"), Path::new(""), &mut layer);
    assert_eq!(
        layer,
        ["/etc 755 dir", "/etc/kept 644 file 4 bytes"],
        "AUFS names were kept"
    );
    // A GNU long-name header that announces 600 MiB: a few kB compressed.
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(600 << 20);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(header.as_bytes()).unwrap();
    gzip.write_all(&vec![b'a'; 2 << 20]).unwrap();
    let bomb = sandbox.join("bomb.tar.gz");
    std::fs::write(&bomb, gzip.finish().unwrap()).unwrap();
    let before = store.fingerprint();
    let refused = store
        .run(&[
            "image",
            "import",
            "--parent",
            "busybox",
            "bomb",
            bomb.to_str().unwrap(),
        ])
        .code(125);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("more than 1 MiB"), "{stderr}");
    assert_eq!(
        store.fingerprint(),
        before,
        "a refused bomb changed the store"
    );
}

#[test]
fn concurrent_commands_on_one_store_are_serialized() {
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    // Four imports of four layers and four containers at once: the lock
    // makes them take turns where they change the store.
    let mut running = Vec::new();
    for n in 0..4 {
        let layer = sandbox.join(&format!("layer{n}"));
        std::fs::create_dir(&layer).unwrap();
        std::fs::write(layer.join(format!("file{n}")), n.to_string()).unwrap();
        let name = format!("img{n}");
        let import = [
            "image",
            "import",
            "--parent",
            "busybox",
            &name,
            layer.to_str().unwrap(),
        ];
        running.push(sandbox.spawn(store.command(&import)));
        let script = format!("echo {n} > /mine");
        let run = [
            "run",
            "--name",
            &format!("c{n}"),
            "busybox",
            "--",
            "sh",
            "-c",
            &script,
        ];
        running.push(sandbox.spawn(store.command(&run)));
    }
    for mut process in running {
        let (status, _) = process.wait();
        if !status.success() {
            process.fail("a concurrent command failed");
        }
    }
    let images = store.ok(&["image", "ls"]);
    assert_eq!(
        images.lines().count(),
        6,
        "a header, busybox and four images:\n{images}"
    );
    let containers = store.ok(&["ps", "-a"]);
    assert_eq!(containers.lines().count(), 5, "{containers}");
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    for n in 0..4 {
        let seen = store.ok(&[
            "run",
            "--rm",
            &format!("img{n}"),
            "--",
            "cat",
            &format!("/file{n}"),
        ]);
        assert_eq!(seen, n.to_string());
    }
}

#[test]
fn a_directory_of_the_image_can_be_moved() {
    // With redirect_dir=off, rename(2) of a lower directory fails with
    // EXDEV, and mv falls back to copying and deleting: it still works,
    // and the upper dir keeps the plain form diff and commit read.
    let sandbox = Sandbox::new();
    let store = Store::new(&sandbox);
    store.import_busybox();
    let script = "mv /etc /etc2 && ls /etc2 && test ! -e /etc && echo moved";
    let seen = store.sh("c1", "busybox", script);
    assert!(
        seen.ends_with("moved\n") && seen.contains("passwd"),
        "{seen}"
    );
    let diff = store.ok(&["diff", "c1"]);
    assert!(
        diff.contains("D /etc\n") && diff.contains("A /etc2/passwd\n"),
        "{diff}"
    );
}

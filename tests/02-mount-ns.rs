//! Acceptance tests of step 02-mount-ns.
//!
//! Compiled into both `step-02-mount-ns` (the student's crate) and
//! `solution-02-mount-ns` (the reference). The first tests call one
//! exercise's function each, through the crate's library (`lesson`), so that
//! every exercise solved turns a test green; the others drive the crate's
//! binary, `run --rootfs DIR [--read-only] [--init] [--hostname NAME] -- CMD`,
//! with testkit's busybox root filesystem, on the real kernel, as root.

use assert_cmd::cargo::CommandCargoExt;
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::{major, minor, stat, umask, Mode, SFlag};
use predicates::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use testkit::{
    busybox_rootfs, cut_from_the_host, in_child, in_fresh_process, private_busybox_rootfs,
    run_on_throwaway_host, run_to_end, share_every_mount_here, shared_mount_points,
    snapshot_settings, still_shared_message, Finished, Propagation, Sandbox,
};

// `lesson`: the library of the crate this file is compiled into.
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/lesson.rs"));

/// `run --rootfs ROOTFS ARGS...` of this crate's binary, marked as started by
/// `sandbox`.
fn run(sandbox: &Sandbox, rootfs: &Path, args: &[&str]) -> Command {
    let mut command = Command::cargo_bin(env!("CARGO_PKG_NAME")).expect("the step's binary");
    command.arg("run").arg("--rootfs").arg(rootfs).args(args);
    sandbox.mark(&mut command);
    command
}

/// Like [`run`] with the shared busybox rootfs, run to its end, ready for
/// assertions.
fn assert_run(sandbox: &Sandbox, args: &[&str]) -> Finished {
    run_to_end(run(sandbox, &busybox_rootfs(), args))
}

fn stdout_of(assert: &Finished) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// One line on stderr, nothing more: what a user reads when it goes wrong.
fn one_line_containing(text: &str) -> impl Predicate<[u8]> {
    predicate::str::contains(text.to_string())
        .and(predicate::str::is_match(r"^[^\n]+\n$").unwrap())
        .from_utf8()
}

/// The names in the top directory of `dir`.
fn entries(dir: &Path) -> Result<BTreeSet<String>, String> {
    let listing = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    Ok(listing
        .filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
        .collect())
}

/// The names in the top directory of the busybox rootfs.
fn rootfs_entries() -> BTreeSet<String> {
    entries(&busybox_rootfs()).unwrap()
}

/// An error of the crate's library, as one message.
fn message(error: anyhow::Error) -> String {
    format!("{error:#}")
}

// ---------------------------------------------------------------------------
// One exercise at a time: each of these calls one exercise's function, in a
// child process of its own mount namespace, which takes its mounts along
// when it exits.
// ---------------------------------------------------------------------------

#[test]
fn make_mounts_private_leaves_no_mount_shared() {
    in_fresh_process(|| {
        in_child(CloneFlags::CLONE_NEWNS, || {
            share_every_mount_here()?;
            lesson::root::make_mounts_private().map_err(message)?;
            match shared_mount_points() {
                shared if shared.is_empty() => Ok(()),
                shared => Err(still_shared_message(&shared)),
            }
        })
        .unwrap_or_else(|message| panic!("{message}"));
    });
}

#[test]
fn bind_onto_itself_makes_the_rootfs_a_mount_point() {
    in_fresh_process(|| {
        let sandbox = Sandbox::new();
        let rootfs = sandbox.join("rootfs");
        let below = rootfs.join("mnt");
        std::fs::create_dir_all(&below).unwrap();
        in_child(CloneFlags::CLONE_NEWNS, || {
            cut_from_the_host()?;
            // Something already mounted below the rootfs must come along.
            mount(
                Some("below"),
                &below,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| format!("mounting a tmpfs on {}: {e}", below.display()))?;
            lesson::root::bind_onto_itself(&rootfs).map_err(message)?;
            let points = mount_points();
            let count = |path: &Path| points.iter().filter(|p| Path::new(p) == path).count();
            match (count(&rootfs), count(&below)) {
                (1, 2) => Ok(()),
                (0, _) => Err(format!("{} is not a mount point", rootfs.display())),
                (_, 1) => Err("the tmpfs below the rootfs did not come along: MS_REC".into()),
                (r, b) => Err(format!("unexpected mounts: rootfs {r}, below it {b}")),
            }
        })
        .unwrap_or_else(|message| panic!("{message}"));
    });
}

#[test]
fn switch_root_makes_the_rootfs_the_root_and_drops_the_old_one() {
    in_fresh_process(|| {
        let sandbox = Sandbox::new();
        // A copy: an answer that makes a put_old directory writes into it.
        let rootfs = private_busybox_rootfs(&sandbox);
        let expected = rootfs_entries();
        in_child(CloneFlags::CLONE_NEWNS, || {
            cut_from_the_host()?;
            mount(
                Some(&rootfs),
                &rootfs,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting the rootfs onto itself: {e}"))?;
            let namespace = std::fs::File::open("/proc/self/ns/mnt")
                .map_err(|e| format!("opening /proc/self/ns/mnt: {e}"))?;
            lesson::root::switch_root(&rootfs).map_err(message)?;
            let cwd = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
            if cwd != Path::new("/") {
                return Err(format!(
                    "the working directory is {cwd:?}, not / of the rootfs"
                ));
            }
            expect_root_entries(&expected, "")?;
            // Joining a mount namespace lands in its root: the rootfs after
            // pivot_root, but the host's / after a mere chroot.
            nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("setns into our own mount namespace: {e}"))?;
            expect_root_entries(&expected, " of the mount namespace (is it a chroot?)")
        })
        .unwrap_or_else(|message| panic!("{message}"));
    });
}

/// Fails unless `/` and `/..` list `expected`.
fn expect_root_entries(expected: &BTreeSet<String>, which: &str) -> Result<(), String> {
    for dir in ["/", "/.."] {
        let found = entries(Path::new(dir))?;
        if &found != expected {
            return Err(format!(
                "{dir}{which} lists {found:?}, not the rootfs's {expected:?}: is the old root \
                 still mounted on top?"
            ));
        }
    }
    Ok(())
}

#[test]
fn create_device_nodes_makes_the_six_character_devices() {
    in_fresh_process(|| {
        let sandbox = Sandbox::new();
        let dev = sandbox.join("dev");
        std::fs::create_dir(&dev).unwrap();
        in_child(CloneFlags::CLONE_NEWNS, || {
            // A tmpfs over the target and over the real /dev: an answer that
            // writes elsewhere than it is told cannot change the host's /dev.
            cut_from_the_host()?;
            for target in [dev.as_path(), Path::new("/dev")] {
                mount(
                    Some("tmpfs"),
                    target,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|e| format!("mounting a tmpfs on {}: {e}", target.display()))?;
            }
            // The usual umask: it takes the write bits of group and others
            // off every mode mknod asks for.
            umask(Mode::from_bits_truncate(0o022));
            lesson::devices::create_device_nodes(&dev).map_err(message)?;
            EXPECTED_DEVICES
                .iter()
                .try_for_each(|device| check_device(&dev, *device))
        })
        .unwrap_or_else(|message| panic!("{message}"));
    });
}

/// The character devices of a container's /dev: (name, major, minor).
const EXPECTED_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Fails unless `dev/NAME` is the character device MAJOR:MINOR, mode 0666.
fn check_device(
    dev: &Path,
    (name, want_major, want_minor): (&str, u64, u64),
) -> Result<(), String> {
    let path = dev.join(name);
    let found = stat(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let kind = SFlag::from_bits_truncate(found.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFCHR {
        return Err(format!("{name} is not a character device ({kind:?})"));
    }
    let numbers = (major(found.st_rdev), minor(found.st_rdev));
    if numbers != (want_major, want_minor) {
        return Err(format!(
            "{name} is {numbers:?}, not ({want_major}, {want_minor})"
        ));
    }
    match found.st_mode & 0o7777 {
        0o666 => Ok(()),
        mode => Err(format!(
            "{name} has mode {mode:o}, not 666 (the umask took bits off)"
        )),
    }
}

/// The mount points of this mount namespace.
fn mount_points() -> Vec<String> {
    testkit::mount_table()
        .iter()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------
// The whole runtime: these run the crate's binary.
// ---------------------------------------------------------------------------

#[test]
fn ls_shows_exactly_the_rootfs_entries() {
    let sandbox = Sandbox::new();
    let listed = assert_run(&sandbox, &["--", "ls", "-1", "/"]).success();
    let inside: BTreeSet<String> = stdout_of(&listed).lines().map(str::to_string).collect();
    assert_eq!(inside, rootfs_entries());
}

#[test]
fn the_command_is_pid_1_with_its_own_hostname() {
    let sandbox = Sandbox::new();
    assert_run(
        &sandbox,
        &[
            "--hostname",
            "tara-box",
            "--",
            "sh",
            "-c",
            "echo $$ $(hostname)",
        ],
    )
    .success()
    .stdout("1 tara-box\n");
    assert_run(&sandbox, &["--init", "--", "sh", "-c", "echo $$"])
        .success()
        .stdout("2\n");
}

#[test]
fn the_host_files_are_out_of_reach() {
    let sandbox = Sandbox::new();
    let marker = sandbox.join("marker");
    std::fs::write(&marker, "host only").unwrap();
    let script = format!(
        "[ -e '{}' ] && echo marker visible; cd /.. && pwd; ls /.. | wc -l; ls / | wc -l",
        marker.display()
    );
    let output = assert_run(&sandbox, &["--", "sh", "-c", &script]).success();
    let lines: Vec<String> = stdout_of(&output).lines().map(str::to_string).collect();
    assert_eq!(
        lines[0], "/",
        "the container saw the host's /tmp or left its root: {lines:?}"
    );
    assert_eq!(lines[1], lines[2], "/.. must be / itself: {lines:?}");
}

#[test]
fn the_mount_table_inside_is_the_containers_own() {
    let sandbox = Sandbox::new();
    let output = assert_run(&sandbox, &["--", "mount"]).success();
    let mut settings = snapshot_settings("02-mount-ns");
    // The root line names the host's disk and filesystem: they vary by machine.
    settings.add_filter(
        r"(?m)^\S+ on / type \S+ \(.*\)$",
        "[HOST DEVICE] on / type [FS] ([OPTIONS])",
    );
    // Some kernels (Ubuntu's) show tmpfs's default inode64 option.
    settings.add_filter(r",inode64", "");
    settings.bind(|| insta::assert_snapshot!("mount", stdout_of(&output)));
}

#[test]
fn a_tmpfs_mounted_inside_never_reaches_the_host() {
    let sandbox = Sandbox::new();
    let source = format!("tara-tmpfs-{}", std::process::id());
    let rootfs = busybox_rootfs().to_string_lossy().into_owned();
    // The host's mounts that could come from this container: its tmpfs, or
    // anything on the rootfs. (The whole table may change meanwhile for
    // reasons of its own: a login, an automount.)
    let ours = || -> Vec<String> {
        testkit::mount_table()
            .into_iter()
            .filter(|line| line.contains(&source) || line.contains(&rootfs))
            .collect()
    };
    let before = ours();
    let script = format!(
        "mount -t tmpfs {source} /tmp || exit 1; trap 'exit 0' TERM; echo mounted; \
         while :; do sleep 0.1; done"
    );
    let mut container = sandbox.spawn(run(
        &sandbox,
        &busybox_rootfs(),
        &["--", "sh", "-c", &script],
    ));
    container.wait_for_line("mounted");
    assert_eq!(
        ours(),
        before,
        "the container's mounts show in the host's mount table"
    );
    container.signal(Signal::SIGTERM);
    let (status, _) = container.wait();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        ours(),
        before,
        "the container's mounts outlived it on the host"
    );
}

#[test]
fn it_works_when_the_hosts_root_is_a_shared_mount() {
    // systemd makes `/` shared; pivot_root then fails with EINVAL unless the
    // runtime makes its mounts private first, and every mount would leak.
    let sandbox = Sandbox::new();
    let script = "mount -t tmpfs scratch /tmp && echo inside";
    let container = run(&sandbox, &busybox_rootfs(), &["--", "sh", "-c", script]);
    let output = run_on_throwaway_host(&sandbox, Propagation::Shared, &container);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "inside\n");
}

#[test]
fn the_mount_namespace_itself_is_rooted_in_the_rootfs() {
    // chroot(2) would pass the tests above: it changes how "/" resolves for
    // one process, not the root of its mount namespace, and a root process
    // can climb out. Joining the container's mount namespace from outside
    // (setns lands in the namespace's root) shows which one the runtime did.
    let sandbox = Sandbox::new();
    let script = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done";
    let mut container = sandbox.spawn(run(
        &sandbox,
        &busybox_rootfs(),
        &["--", "sh", "-c", script],
    ));
    container.wait_for_line("ready");
    let pid_1 = container.only_child().to_string();
    let mut nsenter = Command::new("nsenter");
    nsenter.args(["--mount", "--target", &pid_1, "--", "/bin/ls", "-1", "/"]);
    let listed = run_to_end(nsenter).success();
    container.signal(Signal::SIGTERM);
    assert_eq!(container.wait().0.code(), Some(0));
    let inside: BTreeSet<String> = stdout_of(&listed).lines().map(str::to_string).collect();
    assert_eq!(
        inside,
        rootfs_entries(),
        "the namespace's root is not the rootfs"
    );
}

#[test]
fn dev_holds_working_devices_and_no_host_disk() {
    let sandbox = Sandbox::new();
    let script = "echo discarded > /dev/null && head -c 3 /dev/zero | od -An -tx1 | tr -d ' ' \
                  && head -c 16 /dev/urandom | wc -c";
    assert_run(&sandbox, &["--", "sh", "-c", script])
        .success()
        .stdout(predicate::str::is_match(r"^000000\n\s*16\n$").unwrap());
    // Name, type, major:minor and mode of everything in /dev: exactly the
    // standard devices, and so no disk of the host.
    let listing = "stat -c '%N %F %t:%T %a' /dev/* /dev/pts/ptmx";
    let output = assert_run(&sandbox, &["--", "sh", "-c", listing]).success();
    snapshot_settings("02-mount-ns").bind(|| insta::assert_snapshot!("dev", stdout_of(&output)));
}

#[test]
fn read_only_makes_writes_to_root_fail_with_erofs() {
    let sandbox = Sandbox::new();
    // A copy: a wrong implementation must not write into the shared rootfs.
    let rootfs = private_busybox_rootfs(&sandbox);
    let script = "touch /written; echo $?; touch /tmp/written && echo tmp writable";
    run_to_end(run(
        &sandbox,
        &rootfs,
        &["--read-only", "--", "sh", "-c", script],
    ))
    .success()
    .stdout("1\ntmp writable\n")
    .stderr(predicate::str::contains("Read-only file system"));
    assert!(!rootfs.join("written").exists());
    assert!(!rootfs.join("tmp/written").exists(), "/tmp must be a tmpfs");
}

#[test]
fn read_only_keeps_the_rootfs_mount_options() {
    // A remount sets *every* per-mount flag to the ones it is given: a
    // runtime that passes only MS_RDONLY turns a nosuid, nodev image into
    // one where setuid programs and device files work.
    let sandbox = Sandbox::new();
    let image = sandbox.join("image");
    std::fs::create_dir(&image).unwrap();
    let script = r#"mount -t tmpfs -o nosuid,nodev image "$0" && cp -a "$1" "$0/rootfs" &&
exec "$2" run --rootfs "$0/rootfs" --read-only -- grep -E '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo"#;
    let mut command = testkit::sh_in_throwaway_mount_namespace(script);
    command
        .arg(&image)
        .arg(busybox_rootfs())
        .arg(assert_cmd::cargo::cargo_bin(env!("CARGO_PKG_NAME")));
    sandbox.mark(&mut command);
    let output = run_to_end(command).success();
    let root = stdout_of(&output);
    let options: BTreeSet<&str> = root
        .split(' ')
        .nth(5)
        .unwrap_or_default()
        .split(',')
        .collect();
    for wanted in ["ro", "nosuid", "nodev"] {
        assert!(
            options.contains(wanted),
            "/ inside should be {wanted}: {root}"
        );
    }
}

#[test]
fn the_command_gets_the_containers_path() {
    // The host's PATH names the host's directories; the image has its own.
    let sandbox = Sandbox::new();
    let mut command = run(
        &sandbox,
        &busybox_rootfs(),
        &["--", "sh", "-c", "echo $PATH"],
    );
    command.env("PATH", "/usr/local/bin:/usr/bin");
    run_to_end(command)
        .success()
        .stdout("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
}

#[test]
fn bad_rootfs_and_missing_commands_give_one_line_errors() {
    let sandbox = Sandbox::new();
    let missing = sandbox.join("no-such-rootfs");
    run_to_end(run(&sandbox, &missing, &["--", "true"]))
        .code(125)
        .stderr(one_line_containing("no-such-rootfs"));
    let file = sandbox.join("a-file");
    std::fs::write(&file, "").unwrap();
    run_to_end(run(&sandbox, &file, &["--", "true"]))
        .code(125)
        .stderr(one_line_containing("not a directory"));
    // bash exists on the host, never in the busybox rootfs.
    assert_run(&sandbox, &["--", "bash", "-c", "true"])
        .code(127)
        .stderr(one_line_containing("bash"));
}

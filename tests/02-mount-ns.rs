//! Acceptance tests of step 02-mount-ns.
//!
//! Compiled into both `step-02-mount-ns` (the student's crate) and
//! `solution-02-mount-ns` (the reference). Each test drives the crate's own
//! binary, `run --rootfs DIR [--read-only] [--init] [--hostname NAME] -- CMD`,
//! with testkit's busybox root filesystem, on the real kernel, as root.

use assert_cmd::cargo::CommandCargoExt;
use nix::sys::signal::Signal;
use predicates::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use testkit::{busybox_rootfs, snapshot_settings, Sandbox, DEFAULT_DEADLINE};

/// `run --rootfs ROOTFS ARGS...` of this crate's binary, marked as started by
/// `sandbox`.
fn run(sandbox: &Sandbox, rootfs: &Path, args: &[&str]) -> Command {
    let mut command = Command::cargo_bin(env!("CARGO_PKG_NAME")).expect("the step's binary");
    command.arg("run").arg("--rootfs").arg(rootfs).args(args);
    sandbox.mark(&mut command);
    command
}

/// Like [`run`] with the shared busybox rootfs, ready for assertions.
fn assert_run(sandbox: &Sandbox, args: &[&str]) -> assert_cmd::assert::Assert {
    assert_cmd::Command::from_std(run(sandbox, &busybox_rootfs(), args))
        .timeout(DEFAULT_DEADLINE)
        .assert()
}

fn stdout_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// One line on stderr, nothing more: what a user reads when it goes wrong.
fn one_line_containing(text: &str) -> impl Predicate<[u8]> {
    predicate::str::contains(text.to_string())
        .and(predicate::str::is_match(r"^[^\n]+\n$").unwrap())
        .from_utf8()
}

#[test]
fn ls_shows_exactly_the_rootfs_entries() {
    let sandbox = Sandbox::new();
    let listed = assert_run(&sandbox, &["--", "ls", "-1", "/"]).success();
    let inside: BTreeSet<String> = stdout_of(&listed).lines().map(str::to_string).collect();
    let expected: BTreeSet<String> = std::fs::read_dir(busybox_rootfs())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, expected);
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
    let before = testkit::mount_table();
    let source = format!("tara-tmpfs-{}", std::process::id());
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
    let during = testkit::mount_table();
    assert!(
        !during.iter().any(|line| line.contains(&source)),
        "the container's tmpfs shows in the host's mount table"
    );
    container.signal(Signal::SIGTERM);
    let (status, _) = container.wait();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        testkit::mount_table(),
        before,
        "the host's mount table changed"
    );
}

#[test]
fn it_works_when_the_hosts_root_is_a_shared_mount() {
    // systemd makes `/` shared; pivot_root then fails with EINVAL unless the
    // runtime makes its mounts private first, and every mount would leak.
    let sandbox = Sandbox::new();
    let script = "mount -t tmpfs scratch /tmp && echo inside";
    let container = run(&sandbox, &busybox_rootfs(), &["--", "sh", "-c", script]);
    let output = testkit::run_with_shared_root(&sandbox, &container);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "inside\n");
}

#[test]
fn dev_holds_working_devices_and_no_host_disk() {
    let sandbox = Sandbox::new();
    let script = "echo discarded > /dev/null && head -c 3 /dev/zero | od -An -tx1 | tr -d ' ' \
                  && head -c 16 /dev/urandom | wc -c && ls /dev";
    let output = assert_run(&sandbox, &["--", "sh", "-c", script]).success();
    let stdout = stdout_of(&output);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("000000"), "/dev/zero: {stdout}");
    assert_eq!(
        lines.next().map(str::trim),
        Some("16"),
        "/dev/urandom: {stdout}"
    );
    let dev: BTreeSet<&str> = lines.collect();
    let expected: BTreeSet<&str> = [
        "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
        "urandom", "zero",
    ]
    .into();
    assert_eq!(dev, expected, "/dev must hold exactly the standard devices");
    // The device the host's root filesystem lives on, e.g. /dev/vda.
    let host_root_device = testkit::mount_table()
        .iter()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .and_then(|line| {
            line.split(" - ")
                .nth(1)?
                .split(' ')
                .nth(1)
                .map(str::to_string)
        })
        .expect("the host's root mount");
    if let Some(name) = host_root_device.strip_prefix("/dev/") {
        assert!(
            !dev.contains(name),
            "the host's disk {host_root_device} is visible"
        );
    }
}

#[test]
fn read_only_makes_writes_to_root_fail_with_erofs() {
    let sandbox = Sandbox::new();
    let name = format!("tara-written-{}", std::process::id());
    let script = format!("touch /{name}; echo $?; touch /tmp/{name} && echo tmp writable");
    assert_run(&sandbox, &["--read-only", "--", "sh", "-c", &script])
        .success()
        .stdout("1\ntmp writable\n")
        .stderr(predicate::str::contains("Read-only file system"));
    assert!(!busybox_rootfs().join(&name).exists());
    assert!(
        !busybox_rootfs().join("tmp").join(&name).exists(),
        "/tmp must be a tmpfs"
    );
}

#[test]
fn bad_rootfs_and_missing_commands_give_one_line_errors() {
    let sandbox = Sandbox::new();
    let missing = sandbox.join("no-such-rootfs");
    assert_cmd::Command::from_std(run(&sandbox, &missing, &["--", "true"]))
        .timeout(DEFAULT_DEADLINE)
        .assert()
        .code(125)
        .stderr(one_line_containing("no-such-rootfs"));
    let file = sandbox.join("a-file");
    std::fs::write(&file, "").unwrap();
    assert_cmd::Command::from_std(run(&sandbox, &file, &["--", "true"]))
        .timeout(DEFAULT_DEADLINE)
        .assert()
        .code(125)
        .stderr(one_line_containing("not a directory"));
    // bash exists on the host, never in the busybox rootfs.
    assert_run(&sandbox, &["--", "bash", "-c", "true"])
        .code(127)
        .stderr(one_line_containing("bash"));
}

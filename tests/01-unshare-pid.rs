//! Acceptance tests of step 01-unshare-pid.
//!
//! Compiled into both `step-01-unshare-pid` (the student's crate) and
//! `solution-01-unshare-pid` (the reference). The first tests call one
//! exercise's function each, through the crate's library (`lesson`), so that
//! every exercise solved turns a test green; the others drive the crate's
//! binary, `run [--init] [--hostname NAME] -- CMD [ARGS...]`, on the real
//! kernel, as root. `cargo xtask verify` checks that every test passes on the
//! solution, fails on the unsolved starter, and that solving the exercises in
//! order turns more tests green at each one.

use assert_cmd::cargo::CommandCargoExt;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use predicates::prelude::*;
use std::process::Command;
use testkit::process::{process_state, signal_pending};
use testkit::{
    call_exercise, in_child, in_fresh_process, run_on_throwaway_host, run_to_end,
    share_every_mount_here, shared_mount_points, snapshot_settings, still_shared_message, wait_for,
    Finished, Propagation, Sandbox, DEFAULT_DEADLINE,
};

// `lesson`: the library of the crate this file is compiled into.
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/lesson.rs"));

/// `run ARGS...` of this crate's binary, marked as started by `sandbox`.
fn run(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut command = Command::cargo_bin(env!("CARGO_PKG_NAME")).expect("the step's binary");
    command.arg("run").args(args);
    sandbox.mark(&mut command);
    command
}

/// Like [`run`], run to its end, ready for assert_cmd's assertions.
fn assert_run(sandbox: &Sandbox, args: &[&str]) -> Finished {
    run_to_end(run(sandbox, args))
}

/// The target of `/proc/self/ns/NAME` for the test process itself.
fn host_namespace(name: &str) -> String {
    let link = std::fs::read_link(format!("/proc/self/ns/{name}")).expect("readlink");
    link.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// One exercise at a time: each of these calls one exercise's function.
// ---------------------------------------------------------------------------

#[test]
fn container_namespaces_are_pid_mount_and_uts() {
    testkit::require_root();
    let flags = call_exercise(lesson::namespaces::container_namespaces);
    let expected = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS;
    assert_eq!(
        flags, expected,
        "a container of this step gets new PID, mount and UTS namespaces, and only those"
    );
}

#[test]
fn spawn_in_namespaces_starts_the_child_as_pid_1() {
    in_fresh_process(|| {
        let flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS;
        let host_uts = host_namespace("uts");
        // Runs in the child: its exit code says what it found.
        let child = move || {
            let own_uts = std::fs::read_link("/proc/self/ns/uts").map(|l| l.into_os_string());
            match (nix::unistd::getpid().as_raw(), own_uts) {
                (1, Ok(uts)) if uts != *host_uts => 0,
                (1, _) => 3,
                _ => 2,
            }
        };
        let pid = lesson::namespaces::spawn_in_namespaces(flags, child)
            .expect("spawn_in_namespaces returned an error");
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(WaitStatus::Exited(_, 2)) => {
                panic!("the child is not PID 1: was it cloned with the flags given?")
            }
            Ok(WaitStatus::Exited(_, 3)) => {
                panic!("the child still shares the test's UTS namespace: pass the flags to clone")
            }
            Err(nix::errno::Errno::ECHILD) => panic!(
                "waitpid({pid}) found no such child: clone must be told to send SIGCHLD when the \
                 child exits (its last argument, Some(Signal::SIGCHLD as i32))"
            ),
            other => panic!("the child ended with {other:?}"),
        }
    });
}

#[test]
fn mount_private_proc_shows_the_new_pid_namespace_and_propagates_nothing() {
    in_fresh_process(|| {
        let flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
        in_child(flags, || {
            share_every_mount_here()?;
            lesson::mounts::mount_private_proc().map_err(|e| format!("{e:#}"))?;
            let shared = shared_mount_points();
            if !shared.is_empty() {
                return Err(format!(
                    "{} (on a systemd host the new /proc would reach the host)",
                    still_shared_message(&shared)
                ));
            }
            let mountinfo = testkit::mount_table();
            let me = std::fs::read_link("/proc/self").map_err(|e| e.to_string())?;
            if me.as_os_str() != "1" {
                return Err(format!(
                    "/proc shows the host's PID namespace (/proc/self -> {me:?}, not 1)"
                ));
            }
            let proc_mount = mountinfo
                .iter()
                .rfind(|line| line.split(' ').nth(4) == Some("/proc"))
                .cloned()
                .unwrap_or_default();
            if !["nosuid", "nodev", "noexec"]
                .iter()
                .all(|flag| proc_mount.split(' ').nth(5).unwrap_or("").contains(flag))
            {
                return Err(format!("/proc lacks nosuid,nodev,noexec: {proc_mount}"));
            }
            Ok(())
        })
        .unwrap_or_else(|message| panic!("{message}"));
    });
}

#[test]
fn supervise_reaps_every_child_and_returns_the_mains_status() {
    in_fresh_process(|| {
        // In a child of its own: a signal mask is per thread, and a
        // SIGCHLD would go to another thread of the test binary that
        // does not block it. A forked child has one thread, as a runtime.
        in_child(CloneFlags::empty(), reap_three_zombies_and_main)
            .unwrap_or_else(|message| panic!("{message}"));
    });
}

/// Three children exit first and stay zombies, a fourth is still running
/// (blocked on a pipe), then `main` exits with 7. The SIGCHLDs merge into one
/// pending signal: supervise must reap every child that has exited, return
/// main's status, and not wait for the one still running.
fn reap_three_zombies_and_main() -> Result<(), String> {
    let previous_mask =
        lesson::signals::block_supervised_signals().map_err(|e| format!("{e:#}"))?;
    let others: Vec<Pid> = (0..3).map(|_| fork_exiting_with(0)).collect();
    for other in &others {
        wait_for("a child to become a zombie", DEFAULT_DEADLINE, || {
            (process_state(*other) == Some('Z')).then_some(())
        });
    }
    let (blocked, release) = fork_blocked_on_a_pipe();
    let main = fork_exiting_with(7);
    let status = lesson::signals::supervise(main).map_err(|e| format!("{e:#}"))?;
    if status != WaitStatus::Exited(main, 7) {
        return Err(format!(
            "supervise returned {status:?}, not main's Exited({main}, 7)"
        ));
    }
    if !matches!(process_state(blocked), Some('S' | 'R')) {
        return Err(
            "supervise returned only once every child had exited: waitpid blocked \
                    (WNOHANG returns at once when no child has exited)"
                .into(),
        );
    }
    let left: Vec<Pid> = others
        .into_iter()
        .filter(|pid| process_state(*pid) == Some('Z'))
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "children left as zombies: {left:?} (one SIGCHLD can stand for several exits)"
        ));
    }
    drop(release);
    let _ = waitpid(blocked, None);
    lesson::signals::finish_supervision(&previous_mask).map_err(|e| format!("{e:#}"))
}

/// Forks a child that waits until the returned pipe end is dropped, or
/// for at most 5 seconds (SIGALRM ends it), whichever comes first.
fn fork_blocked_on_a_pipe() -> (Pid, std::os::fd::OwnedFd) {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the check runs in a single-threaded child; the fork only
    // blocks in read(2) and exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(write_end);
            nix::unistd::alarm::set(5);
            let _ = nix::unistd::read(&read_end, &mut [0u8; 1]);
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => (child, write_end),
    }
}

/// Forks a child that exits at once with `code`.
fn fork_exiting_with(code: i32) -> Pid {
    // SAFETY: the fresh process runs this test alone; the child only exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => unsafe { nix::libc::_exit(code) },
        ForkResult::Parent { child } => child,
    }
}

// ---------------------------------------------------------------------------
// The whole runtime: these run the crate's binary.
// ---------------------------------------------------------------------------

#[test]
fn the_command_is_pid_1() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--", "sh", "-c", "echo $$"])
        .success()
        .stdout("1\n");
}

#[test]
fn under_init_the_command_is_pid_2() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--init", "--", "sh", "-c", "echo $$"])
        .success()
        .stdout("2\n");
}

#[test]
fn ps_lists_only_the_containers_processes() {
    let sandbox = Sandbox::new();
    // Fixed column widths: before Linux 6.14, ps sizes its PID columns from the
    // global kernel.pid_max (4194304 under systemd, 32768 by default), which
    // would make the snapshot depend on the host.
    let ps = ["ps", "-eo", "pid:7,ppid:7,comm"];
    let alone = assert_run(&sandbox, &[&["--"][..], &ps].concat()).success();
    let with_init = assert_run(&sandbox, &[&["--init", "--"][..], &ps].concat()).success();
    snapshot_settings("01-unshare-pid").bind(|| {
        insta::assert_snapshot!(
            "ps_as_pid_1",
            String::from_utf8_lossy(&alone.get_output().stdout)
        );
        insta::assert_snapshot!(
            "ps_under_init",
            String::from_utf8_lossy(&with_init.get_output().stdout)
        );
    });
}

#[test]
fn the_pid_mount_and_uts_namespaces_differ_from_the_hosts() {
    let sandbox = Sandbox::new();
    let output = assert_run(
        &sandbox,
        &[
            "--",
            "readlink",
            "/proc/self/ns/pid",
            "/proc/self/ns/mnt",
            "/proc/self/ns/uts",
        ],
    )
    .success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    let inside: Vec<&str> = stdout.lines().collect();
    let host = [
        host_namespace("pid"),
        host_namespace("mnt"),
        host_namespace("uts"),
    ];
    assert_eq!(inside.len(), 3, "readlink printed {stdout:?}");
    for (inside, host) in inside.iter().zip(&host) {
        assert!(inside.ends_with(']'), "not a namespace: {inside:?}");
        assert_ne!(
            inside, host,
            "the container shares the host's namespace {host}"
        );
    }
}

#[test]
fn the_hostname_changes_inside_only() {
    let sandbox = Sandbox::new();
    let before = nix::unistd::gethostname().expect("gethostname");
    assert_run(&sandbox, &["--hostname", "tara-box", "--", "hostname"])
        .success()
        .stdout("tara-box\n");
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), before);
}

#[test]
fn exit_codes_propagate() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--", "true"]).code(0);
    assert_run(&sandbox, &["--", "sh", "-c", "exit 42"]).code(42);
    assert_run(&sandbox, &["--init", "--", "sh", "-c", "exit 42"]).code(42);
}

#[test]
fn a_command_that_is_not_executable_exits_126_with_one_line() {
    let sandbox = Sandbox::new();
    let script = sandbox.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho should not run\n").unwrap();
    assert_run(&sandbox, &["--", script.to_str().unwrap()])
        .code(126)
        .stdout("")
        .stderr(
            predicate::str::contains("permission denied")
                .and(predicate::str::is_match(r"^[^\n]+\n$").unwrap()),
        );
}

#[test]
fn a_command_that_does_not_exist_exits_127_with_one_line() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--", "no-such-command-tara"])
        .code(127)
        .stdout("")
        .stderr(
            predicate::str::contains("no-such-command-tara")
                .and(predicate::str::contains("not found"))
                .and(predicate::str::is_match(r"^[^\n]+\n$").unwrap()),
        );
    assert_run(&sandbox, &["--init", "--", "no-such-command-tara"]).code(127);
}

#[test]
fn sigkill_from_the_host_gives_137() {
    let sandbox = Sandbox::new();
    let mut runtime = sandbox.spawn(run(
        &sandbox,
        &["--", "sh", "-c", "echo ready; exec sleep 60"],
    ));
    runtime.wait_for_line("ready");
    let pid_1 = runtime.only_child();
    nix::sys::signal::kill(pid_1, Signal::SIGKILL).expect("kill -9 the container's PID 1");
    let (status, _) = runtime.wait();
    assert_eq!(status.code(), Some(137));
}

#[test]
fn kill_9_from_inside_does_not_kill_pid_1() {
    // The kernel ignores SIGKILL sent to a namespace's init from inside the
    // namespace: only signals it has a handler for reach it.
    let sandbox = Sandbox::new();
    assert_run(
        &sandbox,
        &["--", "sh", "-c", "kill -9 $$; echo still alive"],
    )
    .success()
    .stdout("still alive\n");
}

#[test]
fn background_processes_die_with_pid_1() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--", "sh", "-c", "sleep 300 & echo started"])
        .success()
        .stdout("started\n");
    // When PID 1 of a namespace exits, the kernel kills everything left in
    // it before the runtime's wait returns: no deadline is needed.
    let left = sandbox.marked_processes();
    assert!(
        left.is_empty(),
        "processes outlived the container: {left:?}"
    );
}

/// A shell script that makes an orphan, waits for it to exit, and says
/// whether somebody reaped it (its /proc entry disappears) or it stayed a
/// zombie (state Z).
const ORPHAN_SCRIPT: &str = r#"
orphan=$(sh -c 'sleep 0.2 >/dev/null 2>&1 & echo $!')
for i in $(seq 200); do
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/$orphan/status 2>/dev/null)
    [ -z "$state" ] && { echo reaped; exit 0; }
    sleep 0.05
done
echo "left as state $state"
exit 1
"#;

#[test]
fn init_reaps_orphans() {
    let sandbox = Sandbox::new();
    assert_run(&sandbox, &["--init", "--", "sh", "-c", ORPHAN_SCRIPT])
        .success()
        .stdout("reaped\n");
}

/// Traps SIGUSR1 and SIGTERM, says which arrived, and exits 42 on SIGTERM.
const TRAP_SCRIPT: &str = r#"trap 'echo got USR1' USR1
trap 'echo got TERM; exit 42' TERM
echo ready
while :; do sleep 0.1; done"#;

fn assert_signals_reach_the_command(options: &[&str]) {
    let sandbox = Sandbox::new();
    let args = [options, &["--", "sh", "-c", TRAP_SCRIPT]].concat();
    let mut runtime = sandbox.spawn(run(&sandbox, &args));
    runtime.wait_for_line("ready");
    runtime.signal(Signal::SIGUSR1);
    runtime.wait_for_line("got USR1");
    runtime.signal(Signal::SIGTERM);
    let (status, lines) = runtime.wait();
    assert_eq!(lines.last().map(String::as_str), Some("got TERM"));
    assert_eq!(status.code(), Some(42), "the command's own exit code");
}

#[test]
fn signals_to_the_runtime_reach_the_command_under_init() {
    assert_signals_reach_the_command(&["--init"]);
}

#[test]
fn signals_to_the_runtime_reach_the_command_as_pid_1() {
    assert_signals_reach_the_command(&[]);
}

#[test]
fn a_stopped_container_gets_its_signals_once_it_continues() {
    // A stopped child also raises SIGCHLD. A supervisor that then blocks in
    // waitpid (instead of WNOHANG) stops forwarding signals until the child
    // exits, which a stopped child never does.
    let sandbox = Sandbox::new();
    let mut runtime = sandbox.spawn(run(&sandbox, &["--", "sh", "-c", TRAP_SCRIPT]));
    runtime.wait_for_line("ready");
    let pid_1 = runtime.only_child();
    nix::sys::signal::kill(pid_1, Signal::SIGSTOP).expect("kill -STOP the container's PID 1");
    wait_for("the container to stop", DEFAULT_DEADLINE, || {
        (process_state(pid_1) == Some('T')).then_some(())
    });
    runtime.signal(Signal::SIGTERM);
    let forwarded = wait_for(
        "SIGTERM to reach the stopped container",
        DEFAULT_DEADLINE,
        || match (signal_pending(pid_1, Signal::SIGTERM), process_state(pid_1)) {
            (true, _) => Some(true),
            (false, None) => Some(false),
            (false, Some(_)) => None,
        },
    );
    if !forwarded {
        runtime.fail("the container died before SIGTERM reached it");
    }
    nix::sys::signal::kill(pid_1, Signal::SIGCONT).expect("kill -CONT the container's PID 1");
    let (status, lines) = runtime.wait();
    assert_eq!(lines.last().map(String::as_str), Some("got TERM"));
    assert_eq!(status.code(), Some(42));
}

/// Runs this crate's binary through `sh -c PREPARE; exec runtime run ARGS`,
/// so that the runtime inherits what PREPARE sets up (ignored signals, an
/// open descriptor).
fn run_after(sandbox: &Sandbox, prepare: &str, args: &[&str]) -> Finished {
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!(r#"{prepare}; exec "$@""#), "sh"])
        .arg(assert_cmd::cargo::cargo_bin(env!("CARGO_PKG_NAME")))
        .arg("run")
        .args(args);
    sandbox.mark(&mut command);
    run_to_end(command)
}

#[test]
fn the_command_starts_with_default_signals_and_no_stray_descriptors() {
    let sandbox = Sandbox::new();
    // Rust ignores SIGPIPE, and an ignored signal survives exec: `yes` would
    // then complain about a broken pipe instead of dying quietly.
    assert_run(&sandbox, &["--", "sh", "-c", "yes | head -1"])
        .success()
        .stdout("y\n")
        .stderr("");
    // A runtime started with signals ignored (as shells start background
    // jobs) must neither pass that on nor hang (an ignored SIGCHLD means no
    // SIGCHLD at all). Only the standard signals 1-31 count: glibc's
    // posix_spawn leaves its two internal real-time signals ignored.
    let status = r#"grep -E "^Sig(Blk|Ign)" /proc/self/status"#;
    for options in [&["--"][..], &["--init", "--"]] {
        let output = run_after(
            &sandbox,
            r#"trap "" INT QUIT CHLD"#,
            &[options, &["sh", "-c", status]].concat(),
        )
        .success();
        let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        for line in stdout.lines() {
            let (name, mask) = line.split_once(":\t").expect("a SigBlk or SigIgn line");
            let mask = u64::from_str_radix(mask, 16).expect("a hex signal mask");
            assert_eq!(
                mask & 0x7fff_ffff,
                0,
                "{name} of the command with {options:?}: {line}"
            );
        }
    }
    // A descriptor the runtime inherited (fd 7, the host's /) is a way back
    // to the host's files: neither the command nor the tiny init may keep it.
    run_after(
        &sandbox,
        "exec 7< /",
        &["--", "sh", "-c", "ls /proc/$$/fd; :"],
    )
    .success()
    .stdout("0\n1\n2\n");
    let check = "[ -e /proc/1/fd/7 ] || [ -e /proc/$$/fd/7 ] && echo leaked || echo clean";
    run_after(&sandbox, "exec 7< /", &["--init", "--", "sh", "-c", check])
        .success()
        .stdout("clean\n");
}

/// The procfs mounts of the host's mount table: a /proc of a container that
/// reached the host would show up here. (Comparing the whole table would
/// also catch whatever else the machine mounts meanwhile.)
fn host_proc_mounts() -> Vec<String> {
    testkit::mount_table()
        .into_iter()
        .filter(|line| line.contains(" - proc "))
        .collect()
}

#[test]
fn the_host_mount_table_is_unchanged() {
    let sandbox = Sandbox::new();
    let before = host_proc_mounts();
    assert_run(&sandbox, &["--", "true"]).success();
    assert_run(&sandbox, &["--init", "--", "true"]).success();
    assert_eq!(host_proc_mounts(), before);
}

#[test]
fn the_proc_mount_does_not_leak_when_the_hosts_root_is_shared() {
    // On systemd hosts `/` is a shared mount: without MS_PRIVATE the new
    // /proc would propagate back. This machine's `/` may be private, which
    // would hide the bug: recreate a shared one in a throwaway namespace.
    let sandbox = Sandbox::new();
    let output = run_on_throwaway_host(
        &sandbox,
        Propagation::Shared,
        &run(&sandbox, &["--", "true"]),
    );
    assert!(output.status.success(), "{output:?}");
}

//! Acceptance tests of step 05-cgroups.
//!
//! Compiled into both `step-05-cgroups` (the student's crate) and
//! `solution-05-cgroups` (the reference). The first tests call one
//! exercise's function each, through the crate's library (`lesson`); the
//! others drive the crate's binary, `[--root DIR] run --memory --pids-limit
//! --cpus ...|stats|inspect` and the commands of steps 03 and 04, with a
//! store of their own and testkit's busybox imported as an image, on the
//! real kernel, as root: cgroup v1 on the CI machine, cgroup v2 in the
//! kernel-test guests and the students' VM.
//!
//! Every container's cgroup goes below a parent of the test's own
//! ([`TestCgroup`]), which must be empty when the test ends. The binary
//! runs in a network namespace of the test's ([`HostNetns`]): containers
//! get a network by default, and nothing may touch the machine's.

use lesson::cgroup::v2::limit_files;
use lesson::hierarchy::{parse_mount, CgroupMount, Layout, Version};
use lesson::limits::{Limits, Swap};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::{
    call_exercise, snapshot_settings, wait_for, Finished, HostNetns, Running, Sandbox, StoreCli,
    TestCgroup, DEFAULT_DEADLINE,
};

// `lesson`: the library of the crate this file is compiled into.
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/lesson.rs"));

const STEP: &str = "05-cgroups";

/// What a container kept running runs: says it is up, then waits. With
/// `--init`, SIGTERM to the runtime reaches the sleep, which dies of it.
const READY_THEN_WAIT: &str = "echo ready; exec sleep 300";

// ---------------------------------------------------------------------------
// Helpers: a store, a cgroup parent and a network namespace of the test's.
// ---------------------------------------------------------------------------

/// A test's own `--root`, cgroup parent and host network namespace:
/// testkit's [`StoreCli`], with what this step's tests add.
struct Lab<'a> {
    cli: StoreCli<'a>,
    cgroup: &'a TestCgroup,
}

impl<'a> std::ops::Deref for Lab<'a> {
    type Target = StoreCli<'a>;

    fn deref(&self) -> &StoreCli<'a> {
        &self.cli
    }
}

impl<'a> Lab<'a> {
    /// The lab, with testkit's busybox imported as `busybox`.
    fn new(sandbox: &'a Sandbox, host: &'a HostNetns, cgroup: &'a TestCgroup) -> Self {
        let lab = Lab {
            cli: StoreCli::in_host(sandbox, env!("CARGO_PKG_NAME"), host),
            cgroup,
        };
        lab.import_busybox();
        lab
    }

    /// `run --cgroup-parent PARENT [--network none] OPTIONS... busybox --
    /// COMMAND...`: with no network unless OPTIONS name one.
    fn run_args(&self, options: &[&str], command: &[&str]) -> Vec<String> {
        let mut args = vec!["run".to_string(), "--cgroup-parent".into()];
        args.push(self.cgroup.parent_arg());
        if !options.contains(&"--network") {
            args.extend(["--network".into(), "none".into()]);
        }
        args.extend(options.iter().map(|option| option.to_string()));
        args.extend(["busybox".into(), "--".into()]);
        args.extend(command.iter().map(|word| word.to_string()));
        args
    }

    /// Runs a container to its end (`--rm`).
    fn contained(&self, options: &[&str], command: &[&str]) -> Finished {
        let options = [&["--rm"], options].concat();
        let args = self.run_args(&options, command);
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Starts `run --init --name NAME OPTIONS... busybox -- sh -c SCRIPT`
    /// in the background; returns once SCRIPT has printed `ready`.
    fn start(&self, name: &str, options: &[&str], script: &str) -> Running {
        let options = [&["--init", "--name", name], options].concat();
        let args = self.run_args(&options, &["sh", "-c", script]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut runtime = self.sandbox().spawn(self.command(&args));
        runtime.wait_for_line("ready");
        runtime
    }

    /// `inspect NAME`, parsed.
    fn inspect(&self, name: &str) -> serde_json::Value {
        let json = self.ok(&["inspect", name]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("inspect: {e}:\n{json}"))
    }

    /// The directories of the container's cgroup, from `inspect`.
    fn cgroup_dirs(&self, name: &str) -> Vec<PathBuf> {
        let paths = self.inspect(name)["cgroup"]["paths"].clone();
        let paths = paths.as_array().expect("inspect shows the cgroup's paths");
        paths
            .iter()
            .map(|path| PathBuf::from(path.as_str().unwrap()))
            .collect()
    }

    /// The file `name` of the container's cgroup (in the directory of its
    /// hierarchy on v1).
    fn cgroup_file(&self, container: &str, name: &str) -> PathBuf {
        let dirs = self.cgroup_dirs(container);
        dirs.iter()
            .map(|dir| dir.join(name))
            .find(|file| file.exists())
            .unwrap_or_else(|| panic!("no {name} in the container's cgroup {dirs:?}"))
    }

    /// `ps -a`'s lines below its header.
    fn containers(&self) -> Vec<String> {
        self.ok(&["ps", "-a"])
            .lines()
            .skip(1)
            .map(String::from)
            .collect()
    }
}

/// Sends SIGTERM to a runtime started by [`Lab::start`] and waits for it
/// to exit with 143; returns what it said on stderr.
fn stop(mut runtime: Running) -> String {
    runtime.signal(Signal::SIGTERM);
    let (status, _) = runtime.wait();
    if status.code() != Some(143) {
        runtime.fail(&format!(
            "after SIGTERM the runtime exited with {status}, not 143"
        ));
    }
    runtime.stderr()
}

/// Fails unless the command failed with 125 and said why in one line that
/// contains `words`.
#[track_caller]
fn one_line_125(finished: Finished, words: &str) {
    let finished = finished.code(125);
    let stderr = String::from_utf8_lossy(&finished.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains(words), "{words:?} in {stderr:?}");
}

/// A file of one number.
fn number_in(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds {text:?}: {e}", path.display()))
}

/// The value of `key` in a file of `key value` lines.
fn keyed(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}: {text:?}", path.display()))
}

/// `stats --no-stream NAME`'s line for the container, split at blanks:
/// ID, NAME, CPU %, USAGE, "/", LIMIT, MEM %, PIDS, OOM KILLS.
fn stats_fields(lab: &Lab, name: &str) -> Vec<String> {
    let table = lab.ok(&["stats", "--no-stream", name]);
    let line = table
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{table}"));
    line.split_whitespace().map(String::from).collect()
}

/// The file inside the container where its cgroup shows `name`:
/// `/sys/fs/cgroup/pids.max` on v2, `/sys/fs/cgroup/pids/pids.max` on v1.
fn inside(cgroup: &TestCgroup, controller: &str, name: &str) -> String {
    if cgroup.is_v2() {
        format!("/sys/fs/cgroup/{name}")
    } else {
        format!("/sys/fs/cgroup/{controller}/{name}")
    }
}

// ---------------------------------------------------------------------------
// The exercises, one at a time.
// ---------------------------------------------------------------------------

#[test]
fn parse_mount_finds_the_cgroup_filesystems_in_mountinfo() {
    let lines = [
        "35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,relatime shared:15 - cgroup cgroup rw,memory",
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd",
        "25 21 0:22 /tara/abc /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate",
        r"50 21 0:22 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw",
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    ];
    let parsed = call_exercise(|| lines.map(parse_mount));
    let mount = |version, point: &str, root: &str, controllers: &[&str]| CgroupMount {
        version,
        mount_point: PathBuf::from(point),
        root: root.to_string(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
    };
    assert_eq!(
        parsed,
        [
            Some(mount(
                Version::V1,
                "/sys/fs/cgroup/memory",
                "/",
                &["memory"]
            )),
            Some(mount(
                Version::V1,
                "/sys/fs/cgroup/cpu,cpuacct",
                "/",
                &["cpu", "cpuacct"]
            )),
            Some(mount(Version::V1, "/sys/fs/cgroup/systemd", "/", &[])),
            Some(mount(Version::V2, "/sys/fs/cgroup", "/tara/abc", &[])),
            Some(mount(Version::V2, "/mnt/my cgroups", "/", &[])),
            None,
        ]
    );
    // And on this machine's own mount table: each hierarchy found holds
    // this very process in its own cgroup.
    let layout = call_exercise(Layout::detect).expect("the cgroup layout of this machine");
    let me = std::process::id().to_string();
    for hierarchy in &layout.hierarchies {
        let own = hierarchy.dir_of(&hierarchy.own).unwrap();
        let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|pid| pid == me),
            "this process is not in {}: the path is wrong",
            own.display()
        );
    }
}

#[test]
fn limit_files_name_the_cgroup_v2_files_and_values() {
    let all = Limits {
        memory: Some(64 << 20),
        memory_swap: Some(Swap::Total(96 << 20)),
        pids: Some(100),
        cpus: Some(0.5),
        cpu_shares: Some(512),
    };
    let memory_alone = Limits {
        memory: Some(64 << 20),
        ..Limits::default()
    };
    let unlimited_swap = Limits {
        memory: Some(64 << 20),
        memory_swap: Some(Swap::Unlimited),
        ..Limits::default()
    };
    let files = |limits: &Limits| {
        let mut files: Vec<(String, String, String)> = call_exercise(|| limit_files(limits))
            .into_iter()
            .map(|file| (file.controller.into(), file.name.into(), file.value))
            .collect();
        files.sort();
        files
    };
    let expected = |files: &[(&str, &str, &str)]| {
        let mut files: Vec<(String, String, String)> = files
            .iter()
            .map(|(c, n, v)| (c.to_string(), n.to_string(), v.to_string()))
            .collect();
        files.sort();
        files
    };
    assert_eq!(
        files(&all),
        expected(&[
            ("memory", "memory.max", "67108864"),
            ("memory", "memory.swap.max", "33554432"),
            ("pids", "pids.max", "100"),
            ("cpu", "cpu.max", "50000 100000"),
            ("cpu", "cpu.weight", "59"),
        ])
    );
    assert_eq!(
        files(&memory_alone),
        expected(&[
            ("memory", "memory.max", "67108864"),
            ("memory", "memory.swap.max", "67108864"),
        ]),
        "--memory alone allows as much swap again, as docker"
    );
    assert_eq!(
        files(&unlimited_swap),
        expected(&[
            ("memory", "memory.max", "67108864"),
            ("memory", "memory.swap.max", "max"),
        ])
    );
    assert_eq!(files(&Limits::default()), expected(&[]));
}

// ---------------------------------------------------------------------------
// The binary: starting and failing to start.
// ---------------------------------------------------------------------------

#[test]
fn a_start_that_fails_before_the_cgroup_is_made_leaves_nothing() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    let args = lab.run_args(&["--rm", "--memory", "16m"], &["true"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let image = args.iter().position(|arg| *arg == "busybox").unwrap();
    args[image] = "no-such-image";
    one_line_125(lab.run(&args), "no-such-image");
    assert_eq!(lab.containers(), Vec::<String>::new());
    cgroup.assert_nothing_left();
}

#[test]
fn a_start_that_fails_after_the_cgroup_is_made_removes_it() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // The cgroup is made first; then the network is not found.
    let failed = lab.contained(
        &["--network", "no-such-network", "--pids-limit", "5"],
        &["true"],
    );
    one_line_125(failed, "no-such-network");
    assert_eq!(lab.containers(), Vec::<String>::new());
    cgroup.assert_nothing_left();
}

#[test]
fn proc_self_cgroup_inside_shows_the_root_of_a_cgroup_namespace() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // And the root is the container's cgroup, the one with its limit.
    let max = inside(&cgroup, "pids", "pids.max");
    let script = format!("cat {max} /proc/self/cgroup");
    let shown = lab
        .contained(&["--pids-limit", "10"], &["sh", "-c", &script])
        .success()
        .stdout_text();
    let (limit, shown) = shown.split_once('\n').unwrap_or_default();
    assert_eq!(limit, "10", "pids.max of the cgroup the container is in");
    assert!(!shown.trim().is_empty(), "an empty /proc/self/cgroup");
    for line in shown.lines() {
        let path = line.splitn(3, ':').nth(2);
        assert_eq!(path, Some("/"), "in {shown:?}: the line {line:?}");
    }
    cgroup.assert_nothing_left();
}

#[test]
fn the_container_reads_its_own_cgroup_read_only_at_sys_fs_cgroup() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    let current = inside(&cgroup, "pids", "pids.current");
    let max = inside(&cgroup, "pids", "pids.max");
    // Two processes: sh and the cat it forks.
    let script = format!("cat {current} {max}; echo 1000 > {max} || echo refused");
    let finished = lab
        .contained(&["--pids-limit", "7"], &["sh", "-c", &script])
        .success();
    assert_eq!(finished.stdout_text(), "2\n7\nrefused\n");
    let stderr = String::from_utf8_lossy(&finished.get_output().stderr).into_owned();
    assert!(stderr.contains("Read-only file system"), "{stderr:?}");
    cgroup.assert_nothing_left();
}

// ---------------------------------------------------------------------------
// The limits.
// ---------------------------------------------------------------------------

#[test]
fn a_fork_bomb_stops_at_the_pids_limit_and_the_host_is_unaffected() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // Every b forks two more b's, for ever; the shell that started them
    // becomes a sleep. With --init, the exited ones are reaped at once.
    // First, the limit must be there: a fork bomb without it would reach
    // the machine's own limits.
    let max = inside(&cgroup, "pids", "pids.max");
    let bomb = format!(
        "[ $(cat {max}) = 20 ] || {{ echo pids.max is $(cat {max}) >&2; exit 1; }}; \
         echo ready; (b() {{ b & b & }}; b) 2>/dev/null & exec sleep 300"
    );
    let runtime = lab.start("bomb", &["--pids-limit", "20"], &bomb);
    let events = lab.cgroup_file("bomb", "pids.events");
    let current = lab.cgroup_file("bomb", "pids.current");
    wait_for("a fork refused at the limit", DEFAULT_DEADLINE, || {
        (keyed(&events, "max") > 0).then_some(())
    });
    for _ in 0..20 {
        let now = number_in(&current);
        assert!(now <= 20, "pids.current is {now}, above the limit of 20");
    }
    let host_fork = Command::new("true").status().expect("the host can fork");
    assert!(host_fork.success());
    stop(runtime);
    cgroup.assert_nothing_left();
}

#[test]
fn a_memory_hog_is_killed_by_the_oom_killer_with_137_and_counted() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // dd's 64 MiB buffer cannot fit in 32 MiB of memory and no swap: where
    // the kernel counts no swap (v1 booted with swapaccount=0), dd would
    // swap instead of dying.
    let memory = cgroup.dir_of("memory").expect("a memory hierarchy");
    let swap_file = if cgroup.is_v2() {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    };
    assert!(
        memory.join(swap_file).exists(),
        "this kernel counts no swap ({swap_file} is missing): boot it with swapaccount=1"
    );
    let limits = ["--memory", "32m", "--memory-swap", "32m"];
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    let killed = lab.contained(&limits, &hog).code(137);
    let stderr = String::from_utf8_lossy(&killed.get_output().stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("out-of-memory") && last.contains("32MiB"),
        "the last line names the OOM kill and the limit: {stderr:?}"
    );
    // A container whose PID 1 survives: its dd is killed, and counted.
    let script = format!("{} 2>/dev/null; echo ready; exec sleep 300", hog.join(" "));
    let survivor = lab.start("survivor", &limits, &script);
    let fields = stats_fields(&lab, "survivor");
    assert_eq!(
        fields.last().map(String::as_str),
        Some("1"),
        "OOM KILLS in {fields:?}"
    );
    let stderr = stop(survivor);
    assert!(
        stderr.contains("warning") && stderr.contains("ended 1 process"),
        "the runtime tells of the OOM kill its container survived: {stderr:?}"
    );
    cgroup.assert_nothing_left();
}

#[test]
fn cpus_holds_a_busy_loop_near_its_share_of_one_cpu() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    let runtime = lab.start(
        "spin",
        &["--cpus", "0.2"],
        "echo ready; while :; do :; done",
    );
    let dirs = lab.cgroup_dirs("spin");
    // CPU time the cgroup has used, in nanoseconds.
    let used = || {
        let v2 = dirs[0].join("cpu.stat");
        if cgroup.is_v2() {
            keyed(&v2, "usage_usec") * 1000
        } else {
            let file = dirs
                .iter()
                .map(|dir| dir.join("cpuacct.usage"))
                .find(|f| f.exists());
            number_in(&file.expect("a cpuacct hierarchy"))
        }
    };
    let (start, before) = (Instant::now(), used());
    // The measuring window itself, not a wait for a condition.
    std::thread::sleep(Duration::from_secs(3));
    let share = (used() - before) as f64 / start.elapsed().as_nanos() as f64;
    // 0.2 CPU is the most the quota allows (a busy machine may give less),
    // and the kernel says it held the loop back.
    assert!(
        share <= 0.3,
        "the busy loop used {share:.3} of a CPU under --cpus 0.2"
    );
    let throttled = keyed(&lab.cgroup_file("spin", "cpu.stat"), "nr_throttled");
    assert!(
        throttled > 0,
        "cpu.stat says the quota never throttled the loop"
    );
    stop(runtime);
    cgroup.assert_nothing_left();
}

// ---------------------------------------------------------------------------
// What a user sees: stats and inspect.
// ---------------------------------------------------------------------------

#[test]
fn stats_no_stream_shows_the_pids_and_memory_of_a_running_container() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // On the default network, in the test's host namespace: limits and a
    // network together.
    let runtime = lab.start(
        "web",
        &["--network", "tara", "--memory", "64m"],
        READY_THEN_WAIT,
    );
    let table = lab.ok(&["stats", "--no-stream"]);
    let header = table.lines().next().unwrap_or_default().to_string();
    snapshot_settings(STEP).bind(|| insta::assert_snapshot!("stats-header", header));
    let fields = stats_fields(&lab, "web");
    let id = lab.inspect("web")["id"].as_str().unwrap().to_string();
    assert_eq!(fields[0], id[..12], "{fields:?}");
    assert!(fields[2].ends_with('%'), "CPU % in {fields:?}");
    assert_ne!(fields[3], "0B", "memory in use in {fields:?}");
    assert_eq!(fields[5], "64MiB", "the memory limit in {fields:?}");
    // PID 1 (tara's init) and the sleep.
    assert_eq!(fields[7], "2", "PIDS in {fields:?}");
    assert_eq!(fields[8], "0", "OOM KILLS in {fields:?}");
    stop(runtime);
    cgroup.assert_nothing_left();
    host.assert_nothing_left(&[]);
}

#[test]
fn inspect_shows_the_cgroup_and_its_limits() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    let limits = [
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
    ];
    let runtime = lab.start("limited", &limits, READY_THEN_WAIT);
    let json = lab.inspect("limited");
    let id = json["id"].as_str().unwrap().to_string();
    let version = if cgroup.is_v2() { 2 } else { 1 };
    assert_eq!(json["cgroup"]["version"], version);
    let paths = lab.cgroup_dirs("limited");
    for path in &paths {
        assert!(
            path.ends_with(&id),
            "{} is not the container's",
            path.display()
        );
        assert!(
            cgroup.dirs().iter().any(|parent| path.starts_with(parent)),
            "{} is not below the test's parent {:?}",
            path.display(),
            cgroup.dirs()
        );
        assert!(path.is_dir(), "{} does not exist", path.display());
    }
    assert_eq!(json["running"], true);
    let limits = serde_json::to_string_pretty(&json["cgroup"]["limits"]).unwrap();
    snapshot_settings(STEP).bind(|| insta::assert_snapshot!("inspect-limits", limits));
    stop(runtime);
    let json = lab.inspect("limited");
    assert_eq!(json["running"], false);
    assert_eq!(json["exit_code"], 143);
    for path in &paths {
        assert!(!path.exists(), "{} outlived the container", path.display());
    }
    cgroup.assert_nothing_left();
}

// ---------------------------------------------------------------------------
// Nothing left, bad values, and the default place.
// ---------------------------------------------------------------------------

#[test]
fn no_cgroup_is_left_after_an_exit_a_failed_exec_or_a_killed_runtime() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    lab.contained(&["--memory", "16m"], &["true"]).success();
    cgroup.assert_nothing_left();
    lab.contained(&["--memory", "16m"], &["no-such-command"])
        .code(127);
    cgroup.assert_nothing_left();
    // A container that made a cgroup of its own inside its cgroup, with a
    // process in it, when its PID 1 exits.
    let mount = if cgroup.is_v2() {
        "mount -t cgroup2 cgroup2 /tmp/c"
    } else {
        "mount -t cgroup -o pids cgroup /tmp/c"
    };
    let nested = format!(
        "mkdir /tmp/c && {mount} && mkdir /tmp/c/sub && \
         (echo $$ > /tmp/c/sub/cgroup.procs; exec sleep 300) & \
         until grep -q . /tmp/c/sub/cgroup.procs; do :; done; echo made"
    );
    let made = lab.contained(&["--pids-limit", "10"], &["sh", "-c", &nested]);
    assert_eq!(made.success().stdout_text(), "made\n");
    cgroup.assert_nothing_left();
    // SIGKILL: the runtime cannot clean up; its container dies with it
    // (PR_SET_PDEATHSIG), and the next command removes the cgroup.
    let mut runtime = lab.start("victim", &["--pids-limit", "10"], READY_THEN_WAIT);
    let dirs = lab.cgroup_dirs("victim");
    runtime.signal(Signal::SIGKILL);
    runtime.wait();
    assert!(
        dirs.iter().all(|dir| dir.exists()),
        "the cgroup went before any command ran: {dirs:?}"
    );
    let listed = lab.containers();
    assert!(listed[0].contains("victim"), "{listed:?}");
    for dir in &dirs {
        assert!(
            !dir.exists(),
            "`ps` left the dead container's cgroup {}",
            dir.display()
        );
    }
    cgroup.assert_nothing_left();
}

#[test]
fn bad_values_give_one_line_and_125_and_change_nothing() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    // More than any machine the tests run on has.
    let too_many = "1000";
    let bad: [(&str, &str); 12] = [
        ("--memory", "12XB"),
        ("--memory", "0"),
        ("--memory", "-1"),
        ("--memory", "1k"),
        ("--memory-swap", "64m"),
        ("--pids-limit", "0"),
        ("--pids-limit", "-5"),
        ("--cpus", "0"),
        ("--cpus", "-1"),
        ("--cpus", too_many),
        ("--cpu-shares", "1"),
        ("--cgroup-parent", "../escape"),
    ];
    for (flag, value) in bad {
        let mut command = vec!["run", "--rm", "--network", "none", flag, value];
        command.extend(["busybox", "--", "true"]);
        one_line_125(lab.run(&command), flag);
    }
    assert_eq!(lab.containers(), Vec::<String>::new());
    cgroup.assert_nothing_left();
    // Good values are taken, and are what the container's cgroup says.
    let pids_max = inside(&cgroup, "pids", "pids.max");
    let memory_max = if cgroup.is_v2() {
        inside(&cgroup, "memory", "memory.max")
    } else {
        inside(&cgroup, "memory", "memory.limit_in_bytes")
    };
    let limits = ["--memory", "16m", "--pids-limit", "7"];
    let shown = lab
        .contained(&limits, &["cat", &pids_max, &memory_max])
        .success()
        .stdout_text();
    assert_eq!(shown, "7\n16777216\n");
    cgroup.assert_nothing_left();
}

#[test]
fn the_default_parent_is_tara_at_the_top_of_the_hierarchy() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let cgroup = TestCgroup::new();
    let lab = Lab::new(&sandbox, &host, &cgroup);
    let args = [
        "run",
        "--init",
        "--name",
        "default",
        "--network",
        "none",
        "busybox",
    ];
    let args = [&args[..], &["--", "sh", "-c", READY_THEN_WAIT]].concat();
    let (command, tops) = if cgroup.is_v2() {
        // A test VM or the students' VM: /tara itself.
        let top = PathBuf::from("/sys/fs/cgroup");
        (lab.command(&args), vec![top])
    } else {
        // This test may make cgroups only below its own: in a cgroup
        // namespace rooted there, the runtime's "/tara" is <parent>/tara.
        (
            cgroup.wrap_in_cgroup_namespace(&lab.command(&args)),
            cgroup.dirs(),
        )
    };
    let mut runtime = sandbox.spawn(command);
    runtime.wait_for_line("ready");
    let id = lab.inspect("default")["id"].as_str().unwrap().to_string();
    for path in lab.cgroup_dirs("default") {
        assert!(
            path.ends_with(Path::new("tara").join(&id)),
            "{} is not /tara/<id>",
            path.display()
        );
    }
    let made: Vec<PathBuf> = tops.iter().map(|top| top.join("tara").join(&id)).collect();
    for dir in &made {
        assert!(dir.is_dir(), "{} was not made", dir.display());
    }
    stop(runtime);
    for dir in &made {
        assert!(!dir.exists(), "{} outlived the container", dir.display());
    }
    cgroup.assert_nothing_left();
}

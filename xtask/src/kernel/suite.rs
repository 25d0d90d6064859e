//! The tests: built on the host, run in the guest by a script this module
//! writes, and read back from the files the script leaves.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A test binary cargo built: the unit tests of a library or a binary, or
/// an integration test such as `acceptance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBinary {
    pub package: String,
    /// lib, bin or test.
    pub kind: String,
    /// The target's name (the crate, the binary, or the test file).
    pub target: String,
    pub executable: PathBuf,
    /// The package's directory: cargo runs tests there, with
    /// CARGO_MANIFEST_DIR set to it.
    pub package_dir: PathBuf,
}

impl TestBinary {
    /// How the report names it: `solution-01-unshare-pid test acceptance`.
    pub fn label(&self) -> String {
        if self.kind == "lib" {
            format!("{} lib", self.package)
        } else {
            format!("{} {} {}", self.package, self.kind, self.target)
        }
    }

    /// A file name for its output.
    fn file_stem(&self) -> String {
        format!("{}.{}.{}", self.package, self.kind, self.target)
    }

    pub fn output_file(&self, results: &Path) -> PathBuf {
        results.join(format!("{}.out", self.file_stem()))
    }

    pub fn status_file(&self, results: &Path) -> PathBuf {
        results.join(format!("{}.status", self.file_stem()))
    }
}

/// Builds the test binaries of `packages` with `cargo test --no-run` and
/// returns them, as cargo reports them in its JSON messages.
pub fn build(root: &Path, packages: &[String]) -> Result<Vec<TestBinary>> {
    let mut command = crate::cargo_command(root);
    command.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for package in packages {
        command.args(["--package", package]);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the tests failed ({})", output.status);
    }
    let mut binaries = test_binaries(&String::from_utf8_lossy(&output.stdout))?;
    // cargo reports them in the order they finish building: sort them, so
    // that the tables of two kernels line up.
    binaries.sort_by_key(TestBinary::label);
    if binaries.is_empty() {
        bail!("cargo built no test binary for {packages:?}");
    }
    Ok(binaries)
}

/// The test executables in cargo's JSON messages: one
/// `compiler-artifact` per target, with `profile.test` true for a test
/// binary.
fn test_binaries(messages: &str) -> Result<Vec<TestBinary>> {
    let mut binaries = Vec::new();
    for line in messages.lines().filter(|line| line.starts_with('{')) {
        let message: serde_json::Value =
            serde_json::from_str(line).context("parsing a JSON message of cargo")?;
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let (Some(executable), Some(manifest)) = (
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let package_dir = Path::new(manifest)
            .parent()
            .context("a manifest lives in a directory")?;
        let package = package_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = message["target"]["kind"][0].as_str().unwrap_or("test");
        binaries.push(TestBinary {
            package: package_name(&message).unwrap_or(package),
            kind: kind.to_string(),
            target: message["target"]["name"].as_str().unwrap_or("").to_string(),
            executable: PathBuf::from(executable),
            package_dir: package_dir.to_path_buf(),
        });
    }
    Ok(binaries)
}

/// The package name in a `package_id`: `path+file:///w/solutions/01-unshare-pid#solution-01-unshare-pid@0.1.0`.
fn package_name(message: &serde_json::Value) -> Option<String> {
    let id = message["package_id"].as_str()?;
    // Without `NAME@`, the package is named like its directory.
    let (name, _version) = id.rsplit_once('#')?.1.split_once('@')?;
    Some(name.to_string())
}

/// What the guest needs to run the tests.
#[derive(Debug)]
pub struct GuestRun<'a> {
    pub workspace: &'a Path,
    pub binaries: &'a [TestBinary],
    /// Where the script writes each binary's output and exit status.
    pub results: &'a Path,
    pub marker: &'a str,
    /// Boot with the kernel's defaults, not systemd's.
    pub raw: bool,
    /// The longest one test binary may run.
    pub binary_timeout_secs: u64,
    /// The host's busybox, for `poweroff -f`.
    pub busybox: &'a Path,
}

/// The shell script the guest runs as PID 1 after switch_root.
pub fn guest_script(run: &GuestRun) -> String {
    let mut script = String::from(
        "#!/bin/sh\n\
         # Written by `cargo xtask kernel-test` for one run: PID 1 of the guest.\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root LANG=C.UTF-8\n",
    );
    if run.raw {
        script.push_str("# --raw: the kernel's own defaults, nothing systemd would change.\n");
    } else {
        script.push_str(
            "# What systemd does at boot: apply sysctl.d (kernel.pid_max=4194304 among\n\
             # others), make every mount shared, and enable the cgroup controllers.\n\
             sysctl --quiet --system >/dev/null 2>&1\n\
             mount --make-rshared /\n\
             echo '+cpu +io +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control\n",
        );
    }
    // What the tests will meet, for the record.
    let _ = writeln!(
        script,
        "echo \"{} $(uname -r); pid_max $(cat /proc/sys/kernel/pid_max); \
         / $(findmnt --noheadings --output PROPAGATION /); \
         cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)\"",
        super::qemu::BOOTED
    );
    script.push_str("failed=0\n");
    for binary in run.binaries {
        let label = binary.label();
        let _ = writeln!(script, "echo 'kernel-test: running {label}'");
        // The environment cargo gives a test binary, in the directory cargo
        // runs it in; no terminal on stdin.
        let _ = writeln!(
            script,
            "(cd {dir} && exec env CARGO_MANIFEST_DIR={dir} CARGO_PKG_NAME={package} \
             INSTA_WORKSPACE_ROOT={workspace} INSTA_UPDATE=no RUST_BACKTRACE=1 \
             timeout --kill-after=10 {timeout} {exe}) </dev/null >{out} 2>&1",
            dir = quote(&binary.package_dir),
            package = quote(Path::new(&binary.package)),
            workspace = quote(run.workspace),
            timeout = run.binary_timeout_secs,
            exe = quote(&binary.executable),
            out = quote(&binary.output_file(run.results)),
        );
        let _ = writeln!(
            script,
            "code=$?; echo $code >{status}; [ $code = 0 ] || failed=$((failed + 1))",
            status = quote(&binary.status_file(run.results)),
        );
    }
    let _ = writeln!(script, "sync\necho \"{} $failed\"", run.marker);
    let _ = writeln!(script, "exec {} poweroff -f", quote(run.busybox));
    script
}

/// Quotes a path for the shell: inside single quotes everything is literal
/// except the single quote itself, written '\''.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// What one test binary reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// The failing tests and what each printed.
    pub failures: Vec<(String, String)>,
    /// Whether libtest's `test result:` line was there: without it, the
    /// binary crashed, timed out or never ran.
    pub complete: bool,
}

/// Reads libtest's output: the `test NAME ... ok|FAILED|ignored` lines, the
/// `---- NAME stdout ----` sections of the failures, and the summary.
pub fn parse_libtest(output: &str) -> Report {
    let mut report = Report::default();
    let mut current: Option<(String, String)> = None;
    for line in output.lines() {
        if let Some(summary) = line.strip_prefix("test result: ") {
            report.complete = true;
            report.passed += count(summary, "passed");
            report.failed += count(summary, "failed");
            report.ignored += count(summary, "ignored");
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"))
        {
            report.failures.extend(current.take());
            current = Some((name.to_string(), String::new()));
        } else if line == "failures:" || line.starts_with("test result: ") {
            // The list of names after the sections ends the last one.
            report.failures.extend(current.take());
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    report.failures.extend(current.take());
    for (_, text) in &mut report.failures {
        *text = text.trim_end().to_string();
    }
    report
}

/// `N WORD` in `ok. 3 passed; 1 failed; 0 ignored; ...`.
fn count(summary: &str, word: &str) -> usize {
    summary
        .split([';', '.'])
        .filter_map(|part| part.trim().strip_suffix(word))
        .filter_map(|number| number.trim().parse::<usize>().ok())
        .sum()
}

/// Reads what the guest left for `binary`.
pub fn read_report(binary: &TestBinary, results: &Path) -> Report {
    let output = std::fs::read_to_string(binary.output_file(results)).unwrap_or_default();
    let status = std::fs::read_to_string(binary.status_file(results)).unwrap_or_default();
    let mut report = parse_libtest(&output);
    let status = status.trim();
    if status.is_empty() {
        report.complete = false;
    }
    if !report.complete || (status != "0" && report.failed == 0) {
        // Crashed, killed by the timeout (124), or never ran: one failure,
        // with the end of what it printed.
        let why = match status {
            "" => "did not run".to_string(),
            "124" | "137" => "timed out".to_string(),
            code => format!("exited with {code} without a test summary"),
        };
        report.failed += 1;
        report
            .failures
            .push((format!("({why})"), crate::tail(&output, 30)));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSING: &str = "\nrunning 3 tests\ntest a ... ok\ntest b ... ok\ntest c ... ignored\n\n\
                           test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n";

    const FAILING: &str = "\nrunning 3 tests\ntest ok_one ... ok\ntest bad_one ... FAILED\ntest bad_two ... FAILED\n\n\
failures:\n\n---- bad_one stdout ----\n\nthread 'bad_one' panicked at tests/x.rs:3:5:\nassertion failed\n\n\
---- bad_two stdout ----\nwrong pid\n\n\nfailures:\n    bad_one\n    bad_two\n\n\
test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s\n\n";

    #[test]
    fn a_passing_run_is_counted() {
        let report = parse_libtest(PASSING);
        assert_eq!((report.passed, report.failed, report.ignored), (2, 0, 1));
        assert!(report.complete && report.failures.is_empty());
    }

    #[test]
    fn failures_come_with_their_output() {
        let report = parse_libtest(FAILING);
        assert_eq!((report.passed, report.failed), (1, 2));
        assert_eq!(report.failures.len(), 2);
        assert_eq!(report.failures[0].0, "bad_one");
        assert!(report.failures[0].1.contains("assertion failed"));
        assert!(!report.failures[0].1.contains("wrong pid"));
        assert_eq!(report.failures[1], ("bad_two".into(), "wrong pid".into()));
    }

    #[test]
    fn a_crash_has_no_summary() {
        let report = parse_libtest("running 2 tests\ntest a ... ok\nSegmentation fault\n");
        assert!(!report.complete);
    }

    #[test]
    fn summary_words_are_counted() {
        let summary = "FAILED. 12 passed; 3 failed; 1 ignored; 0 measured; 0 filtered out";
        assert_eq!(count(summary, "passed"), 12);
        assert_eq!(count(summary, "failed"), 3);
        assert_eq!(count(summary, "filtered out"), 0);
    }

    #[test]
    fn cargo_messages_name_the_test_binaries() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/solutions/01-unshare-pid#solution-01-unshare-pid@0.1.0","manifest_path":"/w/solutions/01-unshare-pid/Cargo.toml","target":{"kind":["test"],"name":"acceptance"},"profile":{"test":true},"executable":"/w/target/debug/deps/acceptance-0a1b"}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests/testkit#0.1.0","manifest_path":"/w/tests/testkit/Cargo.toml","target":{"kind":["lib"],"name":"testkit"},"profile":{"test":true},"executable":"/w/target/debug/deps/testkit-9f"}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.1","manifest_path":"/r/libc/Cargo.toml","target":{"kind":["lib"],"name":"libc"},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}"#;
        let binaries = test_binaries(messages).unwrap();
        assert_eq!(binaries.len(), 2);
        assert_eq!(binaries[0].package, "solution-01-unshare-pid");
        assert_eq!(
            binaries[0].label(),
            "solution-01-unshare-pid test acceptance"
        );
        assert_eq!(
            binaries[0].package_dir,
            Path::new("/w/solutions/01-unshare-pid")
        );
        // A package id without a name after '#' names the directory.
        assert_eq!(binaries[1].package, "testkit");
        assert_eq!(binaries[1].label(), "testkit lib");
    }

    fn binary() -> TestBinary {
        TestBinary {
            package: "solution-01-unshare-pid".into(),
            kind: "test".into(),
            target: "acceptance".into(),
            executable: "/w/target/debug/deps/acceptance-0a1b".into(),
            package_dir: "/w/solutions/01-unshare-pid".into(),
        }
    }

    fn guest_run<'a>(binaries: &'a [TestBinary], raw: bool) -> GuestRun<'a> {
        GuestRun {
            workspace: Path::new("/w"),
            binaries,
            results: Path::new("/w/target/kernel-test/runs/6.1"),
            marker: "kernel-test-done-42",
            raw,
            binary_timeout_secs: 600,
            busybox: Path::new("/bin/busybox"),
        }
    }

    #[test]
    fn the_guest_runs_each_binary_as_cargo_would() {
        let binaries = [binary()];
        let script = guest_script(&guest_run(&binaries, false));
        assert!(script.contains(
            "(cd '/w/solutions/01-unshare-pid' && exec env \
             CARGO_MANIFEST_DIR='/w/solutions/01-unshare-pid' \
             CARGO_PKG_NAME='solution-01-unshare-pid' INSTA_WORKSPACE_ROOT='/w' INSTA_UPDATE=no"
        ));
        assert!(
            script.contains("timeout --kill-after=10 600 '/w/target/debug/deps/acceptance-0a1b')")
        );
        assert!(script.contains(
            ">'/w/target/kernel-test/runs/6.1/solution-01-unshare-pid.test.acceptance.out' 2>&1"
        ));
        assert!(script.contains("sysctl --quiet --system"));
        assert!(script.contains("mount --make-rshared /"));
        assert!(script.contains("echo \"kernel-test-done-42 $failed\""));
        assert!(script.ends_with("exec '/bin/busybox' poweroff -f\n"));
    }

    #[test]
    fn raw_keeps_the_kernel_defaults() {
        let binaries = [binary()];
        let script = guest_script(&guest_run(&binaries, true));
        assert!(!script.contains("sysctl"));
        assert!(!script.contains("make-rshared"));
    }

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }

    #[test]
    fn a_binary_without_a_summary_counts_as_a_failure() {
        let results = tempfile_dir();
        let binary = binary();
        std::fs::write(binary.output_file(&results), "running 1 test\nkilled\n").unwrap();
        std::fs::write(binary.status_file(&results), "124\n").unwrap();
        let report = read_report(&binary, &results);
        assert_eq!(report.failed, 1);
        assert_eq!(report.failures[0].0, "(timed out)");
        assert!(report.failures[0].1.contains("killed"));
        std::fs::remove_dir_all(&results).unwrap();
    }

    /// A fresh directory for one test, without a temp-dir crate.
    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-kernel-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

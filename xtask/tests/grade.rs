//! `cargo xtask grade` on a copy of this repository, as an instructor's CI
//! runs it: the generated starters score 0 in every step, the solutions
//! copied over the starters score 100 in every step, and a test file edited
//! to pass is caught by `--against HEAD` (INVALID, exit 2) and changes
//! nothing, since the grade is computed with HEAD's copy put back; a crate
//! that does not compile scores 0 with the compiler's first error; a crate
//! whose Cargo.toml cargo refuses, and a deleted one, score 0 and leave the
//! other steps alone.
//!
//! It runs `cargo xtask grade` in the copy, which builds in
//! `target/xtask-grade-test/` (kept between runs, so only what changed is
//! rebuilt). The acceptance tests need root, as always: the copy's runner
//! (tests/as-root) re-runs them with sudo.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the copy needs to build, grade and be compared with HEAD.
const COPIED: [&str; 9] = [
    ".cargo",
    ".github",
    ".gitlab-ci.yml",
    "Cargo.toml",
    "Cargo.lock",
    "solutions",
    "steps",
    "tests",
    "xtask",
];

#[test]
fn grading_a_copy_of_the_course() {
    let copy = RepositoryCopy::create();
    let steps = copy.steps();
    assert!(
        steps.len() >= 2,
        "no steps found in {}",
        copy.root.display()
    );

    let (code, report) = copy.grade(&[]);
    assert_eq!(code, 0, "grading the starters must produce a report");
    assert_eq!(report["valid"], true);
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["points"], 0.0, "a starter scored: {step:#}");
        assert_eq!(step["max_points"], 100.0);
        assert!(step["total"].as_u64().unwrap() > 0, "no tests: {step:#}");
        assert!(step["compile_error"].is_null(), "{step:#}");
        for test in step["tests"].as_array().unwrap() {
            let message = test["message"].as_str().unwrap_or_default();
            assert!(
                !message.is_empty(),
                "a failing test without a reason: {test:#}"
            );
        }
    }
    assert_eq!(report["steps"].as_array().unwrap().len(), steps.len());
    copy.check_junit(&report);

    for step in &steps {
        copy.solve(step);
    }
    let (code, report) = copy.grade(&[]);
    assert_eq!(code, 0);
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["points"], 100.0, "a solution lost points: {step:#}");
        assert_eq!(step["passed"], step["total"]);
    }
    assert_eq!(report["percent"], 100.0);
    copy.check_junit(&report);

    copy.restore_starters();
    let first = &steps[0];
    let test_file = format!("tests/{first}.rs");
    std::fs::write(
        copy.root.join(&test_file),
        "#[test]\nfn everything_works() {}\n",
    )
    .unwrap();
    let (code, report) = copy.grade(&["--against", "HEAD", first]);
    assert_eq!(code, 2, "an edited test file must make the report INVALID");
    assert_eq!(report["valid"], false);
    assert_eq!(report["tampered"], serde_json::json!([test_file]));
    let graded = &report["steps"][0];
    assert_eq!(
        graded["points"], 0.0,
        "the edited test file was used: {graded:#}"
    );
    assert!(
        graded["total"].as_u64().unwrap() > 1,
        "HEAD's tests were not put back: {graded:#}"
    );

    copy.git(&["checkout", "--quiet", "--", "tests"]);
    let lib = copy.root.join("steps").join(first).join("src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).unwrap();
    source.push_str("\nfn broken() -> u32 {\n    \"not a number\"\n}\n");
    std::fs::write(&lib, source).unwrap();
    let (code, report) = copy.grade(&[first]);
    assert_eq!(code, 0, "a student's crate that does not compile is graded");
    let graded = &report["steps"][0];
    let error = graded["compile_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("error[E0308]"), "{graded:#}");
    assert_eq!(graded["points"], 0.0);
    assert!(graded["total"].as_u64().unwrap() > 1, "{graded:#}");

    // A manifest cargo refuses takes only its own step down, and a deleted
    // step still counts, with 0.
    copy.restore_starters();
    let second = &steps[1];
    let manifest = copy.root.join("steps").join(first).join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[dependencies.no-such-crate-anywhere]\npath = \"../nowhere\"\n");
    std::fs::write(&manifest, text).unwrap();
    std::fs::remove_dir_all(copy.root.join("steps").join(second)).unwrap();
    let (code, report) = copy.grade(&["--against", "HEAD", first, second]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["valid"], true, "{report:#}");
    for graded in report["steps"].as_array().unwrap() {
        assert_eq!(graded["points"], 0.0);
        assert!(!graded["compile_error"].is_null(), "{graded:#}");
        assert!(graded["total"].as_u64().unwrap() > 1, "{graded:#}");
    }
    let missing = report["steps"][1]["compile_error"].as_str().unwrap();
    assert!(missing.contains("is missing"), "{missing}");
}

/// A copy of this repository, committed in a git repository of its own.
struct RepositoryCopy {
    root: PathBuf,
    target: PathBuf,
    /// Held while the test runs: a second run of it waits (they would share
    /// the copy).
    _lock: std::fs::File,
}

impl RepositoryCopy {
    fn create() -> RepositoryCopy {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let base = target_dir(workspace).join("xtask-grade-test");
        std::fs::create_dir_all(&base).unwrap();
        let lock = std::fs::File::create(base.join("lock")).unwrap();
        lock.lock().unwrap();
        let root = base.join("repository");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        for entry in COPIED {
            let from = workspace.join(entry);
            if from.exists() {
                copy_tree(&from, &root.join(entry));
            }
        }
        let copy = RepositoryCopy {
            root,
            target: base.join("target"),
            _lock: lock,
        };
        copy.build_xtask();
        copy.git(&["init", "--quiet"]);
        copy.git(&["add", "--all"]);
        copy.git(&["commit", "--quiet", "--message", "the course as forked"]);
        copy
    }

    fn steps(&self) -> Vec<String> {
        let mut steps: Vec<String> = std::fs::read_dir(self.root.join("steps"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        steps.sort();
        steps
    }

    /// Builds the copy's xtask once: it is run directly, since `cargo run`
    /// stops at a student's Cargo.toml that cargo refuses.
    fn build_xtask(&self) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", "xtask"])
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "the copy's xtask does not build");
    }

    /// `cargo xtask grade ARGS --report-dir DIR`: the exit code and the
    /// JSON report.
    fn grade(&self, args: &[&str]) -> (i32, Value) {
        let reports = self.root.join("grade-report");
        let output = Command::new(self.target.join("debug/xtask"))
            .arg("grade")
            .args(args)
            .arg("--report-dir")
            .arg(&reports)
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("INSTA_WORKSPACE_ROOT")
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .expect("running cargo xtask grade");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code().expect("cargo xtask grade was killed");
        assert!(code != 1, "grading could not run:\n{stdout}\n{stderr}");
        let json = std::fs::read_to_string(reports.join("report.json"))
            .unwrap_or_else(|error| panic!("no report.json ({error}):\n{stdout}\n{stderr}"));
        assert!(
            stdout.starts_with("Grade: ") || stdout.contains("\nGrade: "),
            "the table on stdout has no grade:\n{stdout}"
        );
        (
            code,
            serde_json::from_str(&json).expect("report.json is JSON"),
        )
    }

    /// The JUnit report, read back: one testcase per test, one failure per
    /// failing test.
    fn check_junit(&self, report: &Value) {
        let xml = std::fs::read_to_string(self.root.join("grade-report/report.junit.xml")).unwrap();
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut cases, mut failures) = (0, 0);
        loop {
            match reader.read_event().expect("report.junit.xml is XML") {
                quick_xml::events::Event::Start(element)
                | quick_xml::events::Event::Empty(element) => match element.name().as_ref() {
                    b"testcase" => cases += 1,
                    b"failure" => failures += 1,
                    _ => {}
                },
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        let steps = report["steps"].as_array().unwrap();
        let total: u64 = steps.iter().map(|s| s["total"].as_u64().unwrap()).sum();
        let passed: u64 = steps.iter().map(|s| s["passed"].as_u64().unwrap()).sum();
        assert_eq!(cases, total, "testcases in the JUnit report");
        assert_eq!(failures, total - passed, "failures in the JUnit report");
    }

    /// Writes the solution's sources over the student's, as a student who
    /// solved every exercise would have them: naming the student's crate.
    fn solve(&self, step: &str) {
        let src = self.root.join("steps").join(step).join("src");
        std::fs::remove_dir_all(&src).unwrap();
        let solution = self.root.join("solutions").join(step).join("src");
        let ident = step.replace('-', "_");
        for file in files_below(&solution) {
            let text = std::fs::read_to_string(&file).unwrap();
            let to = src.join(file.strip_prefix(&solution).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let renamed = text
                .replace(&format!("solution-{step}"), &format!("step-{step}"))
                .replace(&format!("solution_{ident}"), &format!("step_{ident}"));
            std::fs::write(to, renamed).unwrap();
        }
    }

    fn restore_starters(&self) {
        self.git(&["checkout", "--quiet", "--", "steps"]);
        self.git(&["clean", "--quiet", "-d", "--force", "--", "steps"]);
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=grader",
                "-c",
                "user.email=grader@example.com",
            ])
            .args(args)
            .current_dir(&self.root)
            .status()
            .expect("running git");
        assert!(status.success(), "git {args:?} failed");
    }
}

fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => std::path::absolute(dir).unwrap(),
        _ => workspace.join("target"),
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if name != "target" {
                copy_tree(&path, &to.join(name));
            }
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

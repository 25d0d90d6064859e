//! Building a student's crate and running its acceptance tests, in the
//! grading workspace. Two kinds of failure must not be confused: the
//! student's crate not compiling scores 0 for that step, with the compiler's
//! first error; anything else failing to build (testkit, the shared test
//! file against an unchanged crate) means grading itself could not run.

use super::report::{StepOutcome, TestOutcome};
use crate::libtest::{self, Outcome, TestRun};
use crate::tail;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output};

/// Where a step is built and run: the grading workspace and its target.
#[derive(Debug)]
pub struct Runner {
    workspace: PathBuf,
    target: PathBuf,
    /// The step crates whose Cargo.toml cargo refused, with its error: they
    /// were taken out of the workspace so that the others build.
    set_aside: BTreeMap<String, String>,
}

impl Runner {
    /// A runner for the grading workspace `workspace`, building in `target`.
    /// A step crate whose manifest cargo refuses (it does not parse, or
    /// names a crate that does not exist) would stop cargo for every step:
    /// such crates are taken out of the workspace first, and score 0.
    pub fn new(workspace: PathBuf, target: PathBuf) -> Result<Runner> {
        let mut runner = Runner {
            workspace,
            target,
            set_aside: BTreeMap::new(),
        };
        while let Some(error) = runner.workspace_error()? {
            let step = runner.step_named_in(&error).ok_or_else(|| {
                anyhow!("cargo refuses the grading workspace (not a student's crate):\n{error}")
            })?;
            let crate_dir = runner.workspace.join("steps").join(&step);
            std::fs::remove_dir_all(&crate_dir)
                .with_context(|| format!("removing {}", crate_dir.display()))?;
            runner.set_aside.insert(step, error);
        }
        Ok(runner)
    }

    /// What cargo says when it cannot load the workspace and resolve its
    /// dependencies; `None` when it can.
    fn workspace_error(&self) -> Result<Option<String>> {
        let output = crate::cargo_command(&self.workspace)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_TERM_COLOR", "never")
            .args(["metadata", "--format-version", "1"])
            .output()
            .context("running cargo metadata in the grading workspace")?;
        Ok((!output.status.success()).then(|| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tail(stderr.trim(), 12)
        }))
    }

    /// The step crate a cargo error is about (`.../steps/NN-topic`).
    fn step_named_in(&self, error: &str) -> Option<String> {
        let present = crate::verify::select_steps(&self.workspace.join("steps"), &[]).ok()?;
        present
            .into_iter()
            .find(|step| mentions_path(error, &format!("steps/{step}")))
    }

    /// Builds `step-STEP`'s acceptance tests and runs them.
    pub fn grade(&self, step: &str) -> Result<StepOutcome> {
        let refused = self.set_aside.get(step).cloned().or_else(|| {
            let missing = !self.workspace.join("steps").join(step).is_dir();
            missing.then(|| format!("the crate steps/{step} is missing"))
        });
        let compile_error = match refused {
            Some(error) => Some(error),
            None => self.build(step)?,
        };
        if let Some(error) = compile_error {
            return Ok(StepOutcome {
                step: step.to_string(),
                tests: self.not_compiled(step, &error)?,
                compile_error: Some(error),
            });
        }
        let package = format!("step-{step}");
        let expected = self.list(&package)?;
        let output = self.cargo_test(&package, &["--no-fail-fast"])?;
        let run = TestRun::parse(&String::from_utf8_lossy(&output.stdout));
        let tests = expected
            .iter()
            .map(|name| outcome_of(name, &run, &output.status))
            .collect();
        Ok(StepOutcome {
            step: step.to_string(),
            compile_error: None,
            tests,
        })
    }

    /// Compiles the acceptance tests of `step-STEP` without running them.
    /// `Ok(None)`: built; `Ok(Some(error))`: the student's crate does not
    /// compile, with the compiler's first error; `Err`: something else broke.
    fn build(&self, step: &str) -> Result<Option<String>> {
        let output = self
            .cargo(&format!("step-{step}"))
            .args(["--no-run", "--message-format=json"])
            .output()
            .with_context(|| format!("building the acceptance tests of step-{step}"))?;
        if output.status.success() {
            return Ok(None);
        }
        let manifest = self.workspace.join("steps").join(step).join("Cargo.toml");
        let errors = compiler_errors(&String::from_utf8_lossy(&output.stdout));
        let stderr = String::from_utf8_lossy(&output.stderr);
        match errors.iter().find(|error| error.manifest_path == manifest) {
            Some(error) => Ok(Some(error.rendered.trim_end().to_string())),
            // cargo refused the student's Cargo.toml before compiling.
            None if errors.is_empty() && stderr.contains(&format!("steps/{step}/")) => {
                Ok(Some(tail(&stderr, 10)))
            }
            None => bail!(
                "the test harness of step-{step} does not build (not the student's crate):\n{}",
                errors
                    .first()
                    .map(|error| error.rendered.clone())
                    .unwrap_or_else(|| tail(&stderr, 20))
            ),
        }
    }

    /// The names of the acceptance tests of `package`, from the test binary
    /// itself: a test the run then reports nothing about still counts.
    fn list(&self, package: &str) -> Result<Vec<String>> {
        let output = self.cargo_test(package, &["--", "--list"])?;
        let names = libtest::parse_list(&String::from_utf8_lossy(&output.stdout));
        if !output.status.success() || names.is_empty() {
            bail!(
                "could not list the acceptance tests of {package}:\n{}",
                tail(&String::from_utf8_lossy(&output.stderr), 20)
            );
        }
        Ok(names)
    }

    /// The tests a crate that does not compile fails: those of the
    /// solution, each with the compile error as its reason.
    fn not_compiled(&self, step: &str, error: &str) -> Result<Vec<TestOutcome>> {
        let first_line = error.lines().next().unwrap_or(error);
        let names = self.list(&format!("solution-{step}"))?;
        Ok(names
            .into_iter()
            .map(|name| TestOutcome {
                name,
                passed: false,
                message: Some(format!("the crate does not compile: {first_line}")),
            })
            .collect())
    }

    /// `cargo test -p PACKAGE --test acceptance ARGS`, its output captured.
    fn cargo_test(&self, package: &str, args: &[&str]) -> Result<Output> {
        self.cargo(package)
            .args(args)
            .output()
            .with_context(|| format!("running the acceptance tests of {package}"))
    }

    fn cargo(&self, package: &str) -> Command {
        let mut command = crate::cargo_command(&self.workspace);
        command
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_TERM_COLOR", "never")
            // The panic message says why; a backtrace would bury it.
            .env("RUST_BACKTRACE", "0")
            // A snapshot that differs is a failure, never a new snapshot.
            .env("INSTA_UPDATE", "no")
            .env("CI", "true")
            // The snapshots are the grading workspace's (REF's with
            // --against), not those of the repository cargo xtask runs in.
            .env_remove("INSTA_WORKSPACE_ROOT")
            .args(["test", "--package", package, "--test", "acceptance"]);
        command
    }
}

/// How the test `name` ended in `run`. A test the run says nothing about
/// failed too: the test binary ended (crashed, was killed) before it
/// reported.
fn outcome_of(name: &str, run: &TestRun, status: &ExitStatus) -> TestOutcome {
    let message = match run.outcomes.get(name) {
        Some(Outcome::Passed) => None,
        Some(Outcome::Ignored) => Some("ignored: an acceptance test must run".to_string()),
        Some(_) => Some(run.why(name)),
        None => Some(format!(
            "no result: the test binary ended before this test reported ({status})"
        )),
    };
    TestOutcome {
        name: name.to_string(),
        passed: message.is_none(),
        message,
    }
}

/// Whether `text` names `path` itself, not a longer name that starts with it
/// (`steps/01-a` in `steps/01-a/Cargo.toml` or `steps/01-a\``, not in
/// `steps/01-ab`).
fn mentions_path(text: &str, path: &str) -> bool {
    text.match_indices(path).any(|(at, _)| {
        let next = text[at + path.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// One error of rustc, from cargo's `--message-format=json`.
#[derive(Debug, Deserialize)]
struct CompilerMessage {
    manifest_path: PathBuf,
    message: Diagnostic,
}

#[derive(Debug, Deserialize)]
struct Diagnostic {
    level: String,
    rendered: Option<String>,
}

#[derive(Debug, PartialEq)]
struct CompilerError {
    manifest_path: PathBuf,
    rendered: String,
}

/// The errors (not warnings) among cargo's JSON messages, in order.
fn compiler_errors(stdout: &str) -> Vec<CompilerError> {
    stdout
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-message""#))
        .filter_map(|line| serde_json::from_str::<CompilerMessage>(line).ok())
        .filter(|message| message.message.level == "error")
        .filter_map(|message| {
            Some(CompilerError {
                manifest_path: message.manifest_path,
                rendered: message.message.rendered?,
            })
        })
        .collect()
}

/// Whether the tests can get root: we are root, or sudo works without a
/// password (the workspace's runner, tests/as-root, re-runs them with it).
pub fn can_become_root() -> bool {
    crate::is_root()
        || Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|output| output.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_are_kept_with_their_crate() {
        let stdout = concat!(
            r#"{"reason":"compiler-artifact","package_id":"x"}"#,
            "\n",
            r#"{"reason":"compiler-message","manifest_path":"/w/steps/01-a/Cargo.toml","message":{"level":"warning","rendered":"warning: unused"}}"#,
            "\n",
            r#"{"reason":"compiler-message","manifest_path":"/w/steps/01-a/Cargo.toml","message":{"level":"error","rendered":"error[E0425]: cannot find value `x`\n --> src/lib.rs:3:5\n"}}"#,
            "\n",
            r#"{"reason":"build-finished","success":false}"#,
        );
        let errors = compiler_errors(stdout);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].manifest_path,
            PathBuf::from("/w/steps/01-a/Cargo.toml")
        );
        assert!(errors[0].rendered.starts_with("error[E0425]"));
    }

    #[test]
    fn a_test_without_a_result_failed() {
        use std::os::unix::process::ExitStatusExt;
        let run = TestRun::parse("test a ... ok\ntest b ... ignored\n");
        let killed = ExitStatus::from_raw(6); // SIGABRT
        let outcomes: Vec<TestOutcome> = ["a", "b", "c"]
            .iter()
            .map(|name| outcome_of(name, &run, &killed))
            .collect();
        assert!(outcomes[0].passed);
        assert!(!outcomes[1].passed && !outcomes[2].passed);
        let why = outcomes[2].message.as_deref().unwrap();
        assert!(
            why.starts_with("no result:") && why.contains("signal: 6"),
            "{why}"
        );
    }

    #[test]
    fn a_crate_is_found_by_its_path_in_an_error() {
        let error = "failed to load manifest for workspace member `/w/steps/01-a`\n";
        assert!(mentions_path(error, "steps/01-a"));
        assert!(mentions_path("at /w/steps/01-a/Cargo.toml", "steps/01-a"));
        assert!(mentions_path("(/w/steps/01-a)", "steps/01-a"));
        assert!(!mentions_path("/w/steps/01-ab/Cargo.toml", "steps/01-a"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}

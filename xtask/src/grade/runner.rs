//! Building a student's crate and running its acceptance tests, in the
//! grading workspace. Two kinds of failure must not be confused: the
//! student's crate not compiling scores 0 for that step, with the compiler's
//! first error; anything else failing to build (testkit, the shared test
//! file against an unchanged crate) means grading itself could not run.

use super::report::{StepOutcome, TestOutcome};
use crate::libtest::{self, Outcome, TestRun};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Where a step is built and run: the grading workspace and its target.
#[derive(Debug)]
pub struct Runner {
    pub workspace: PathBuf,
    pub target: PathBuf,
}

impl Runner {
    /// Builds `step-STEP`'s acceptance tests and runs them.
    pub fn grade(&self, step: &str) -> Result<StepOutcome> {
        if let Some(error) = self.build(step)? {
            return Ok(StepOutcome {
                step: step.to_string(),
                tests: self.not_compiled(step, &error)?,
                compile_error: Some(error),
            });
        }
        let output = self.cargo_test(&format!("step-{step}"), &["--no-fail-fast"])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let run = TestRun::parse(&stdout);
        if run.outcomes.is_empty() {
            bail!(
                "the acceptance tests of step-{step} did not run; cargo said:\n{}",
                tail(&String::from_utf8_lossy(&output.stderr), 20)
            );
        }
        let tests = run
            .outcomes
            .iter()
            .map(|(name, outcome)| {
                let passed = *outcome == Outcome::Passed;
                TestOutcome {
                    name: name.clone(),
                    passed,
                    message: (!passed).then(|| match outcome {
                        Outcome::Ignored => "ignored: an acceptance test must run".to_string(),
                        _ => run.why(name),
                    }),
                }
            })
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

    /// The tests a crate that does not compile fails: those of the
    /// solution, each with the compile error as its reason.
    fn not_compiled(&self, step: &str, error: &str) -> Result<Vec<TestOutcome>> {
        let first_line = error.lines().next().unwrap_or(error);
        let output = self.cargo_test(&format!("solution-{step}"), &["--", "--list"])?;
        let names = libtest::parse_list(&String::from_utf8_lossy(&output.stdout));
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

/// The last `count` lines of `text`.
fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Whether the tests can get root: we are root, or sudo works without a
/// password (the workspace's runner, tests/as-root, re-runs them with it).
pub fn can_become_root() -> bool {
    nix_is_root()
        || Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|output| output.status.success())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
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
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}

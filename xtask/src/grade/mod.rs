//! `cargo xtask grade`: each step's acceptance tests run against the
//! student's crate `step-NN-topic`, in a fresh copy of the repository, and
//! a report: tests passed, points, and why each failing test failed.
//!
//! With `--against REF` the files that decide a grade are first compared
//! with REF (the tamper check), and the grade is computed with REF's copies
//! of them whatever the student changed.
//!
//! Exit codes: 0 when the report was produced (whatever the score), 1 when
//! grading could not run, 2 when the report is INVALID (files differ from
//! REF), 3 when `--min-score` was not reached.

pub mod config;
pub mod render;
pub mod report;
mod runner;
mod workspace;

use anyhow::{bail, Context, Result};
use config::GradingConfig;
use render::Format;
use report::{Report, StepOutcome};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const EXIT_INVALID: i32 = 2;
pub const EXIT_BELOW_MIN_SCORE: i32 = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Only these steps (for example 01 or 01-unshare-pid); all by default
    #[arg(value_name = "STEP")]
    pub only: Vec<String>,
    /// The report's format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the report to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Compare the files that decide the grade (tests, testkit, solutions,
    /// xtask, cargo's configuration, grading.toml, the steps' test sections
    /// and lesson.rs) with REF, a commit or tag of the repository; grade
    /// with REF's copies of them, and mark the report INVALID when any
    /// differ
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
    /// Exit with 3 when the score is below N percent of the points
    #[arg(long, value_name = "N")]
    pub min_score: Option<f64>,
    /// Also write the report in every format to DIR (report.txt, report.md,
    /// report.json, report.junit.xml)
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Grade the clone of a student's repository in DIR with this
    /// checkout's xtask (one the student could not change), instead of this
    /// repository
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

impl Options {
    /// The repository to grade: `--repo`, else `this` one.
    pub fn repository(&self, this: &Path) -> PathBuf {
        match &self.repo {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            None => this.to_path_buf(),
        }
    }
}

/// Grades the repository `repo`; returns the exit code.
pub fn run(repo: &Path, options: &Options) -> Result<i32> {
    if !runner::can_become_root() {
        bail!(
            "grading runs the acceptance tests, which need root: run as root, or as a user with \
             passwordless sudo (the workspace's runner, tests/as-root, uses it)"
        );
    }
    if let Some(min) = options.min_score {
        if !(0.0..=100.0).contains(&min) {
            bail!("--min-score {min}: a percentage of the points, from 0 to 100");
        }
    }
    if !repo.join("steps").is_dir() {
        bail!(
            "{}: not a clone of the workshop (it has no steps/)",
            repo.display()
        );
    }
    let against = options
        .against
        .as_deref()
        .map(|name| workspace::resolve(repo, name))
        .transpose()?;
    // The reference's steps: a step the student deleted still scores 0.
    let all_steps = match &against {
        Some(reference) => workspace::steps_of(repo, &reference.commit)?,
        None => crate::verify::select_steps(&repo.join("steps"), &[])?,
    };
    let steps = crate::verify::filter_steps(&all_steps, &options.only)?;
    let open_output = prepare_outputs(options)?;
    let tampered = match &against {
        Some(reference) => workspace::tampered(repo, &reference.commit)?,
        None => Vec::new(),
    };
    let base = crate::target_dir(repo).join("xtask-grade");
    let _only_grader = lock(&base)?;
    let workspace = workspace::prepare(repo, &base, against.as_ref())?;
    let config = GradingConfig::load(&workspace.root)?;
    // A misspelt step fails now; a misspelt test once the tests have run.
    config.check_names(&all_steps, &[])?;
    let runner = runner::Runner::new(workspace.root.clone(), workspace.target.clone())?;
    let mut outcomes = Vec::new();
    for step in &steps {
        eprintln!("grade: {step}: building and running its acceptance tests");
        outcomes.push(runner.grade(step)?);
    }
    check_config_names(&config, &all_steps, &outcomes)?;
    let report = Report::score(outcomes, &config, against, tampered);
    write_reports(&report, options, open_output)?;
    Ok(exit_code(&report, options.min_score))
}

/// Two gradings of one repository would share the grading workspace: the
/// second waits for the first. The lock goes with the returned file.
fn lock(base: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    let path = base.join("lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!("grade: another grading of this repository is running; waiting for it");
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

fn check_config_names(
    config: &GradingConfig,
    all_steps: &[String],
    outcomes: &[StepOutcome],
) -> Result<()> {
    let graded: Vec<(String, Vec<String>)> = outcomes
        .iter()
        .map(|outcome| {
            let tests = outcome.tests.iter().map(|test| test.name.clone()).collect();
            (outcome.step.clone(), tests)
        })
        .collect();
    config.check_names(all_steps, &graded)
}

/// INVALID wins over a low score: a tampered report's score means nothing.
fn exit_code(report: &Report, min_score: Option<f64>) -> i32 {
    if !report.valid {
        EXIT_INVALID
    } else if min_score.is_some_and(|min| report.percent < min) {
        EXIT_BELOW_MIN_SCORE
    } else {
        0
    }
}

/// Creates `--output` and `--report-dir` before the tests run: a path that
/// cannot be written is better found now than after an hour of grading.
fn prepare_outputs(options: &Options) -> Result<Option<std::fs::File>> {
    if let Some(dir) = &options.report_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    options
        .output
        .as_ref()
        .map(|path| {
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
        })
        .transpose()
}

/// Every format in `--report-dir`, the Markdown in GitHub's job summary
/// when it is set, and last the report in the chosen format (stdout or
/// `--output`).
fn write_reports(report: &Report, options: &Options, output: Option<std::fs::File>) -> Result<()> {
    if let Some(dir) = &options.report_dir {
        for format in [Format::Table, Format::Markdown, Format::Json, Format::Junit] {
            write_file(
                &dir.join(render::file_name(format)),
                &render::render(report, format),
            )?;
        }
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .context("opening $GITHUB_STEP_SUMMARY")?;
        file.write_all(render::render(report, Format::Markdown).as_bytes())
            .context("writing $GITHUB_STEP_SUMMARY")?;
    }
    let text = render::render(report, options.format);
    match output {
        Some(mut file) => file
            .write_all(text.as_bytes())
            .context("writing --output")?,
        None => print!("{text}"),
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::TestOutcome;

    fn report(passed: bool, tampered: Vec<String>) -> Report {
        let outcome = StepOutcome {
            step: "01-a".into(),
            compile_error: None,
            tests: vec![TestOutcome {
                name: "t".into(),
                passed,
                message: None,
            }],
        };
        Report::score(vec![outcome], &GradingConfig::default(), None, tampered)
    }

    #[test]
    fn the_exit_code_says_invalid_then_below_the_minimum() {
        assert_eq!(exit_code(&report(false, vec![]), None), 0);
        assert_eq!(exit_code(&report(false, vec![]), Some(50.0)), 3);
        assert_eq!(exit_code(&report(true, vec![]), Some(100.0)), 0);
        assert_eq!(
            exit_code(&report(true, vec!["tests".into()]), Some(50.0)),
            2
        );
    }
}

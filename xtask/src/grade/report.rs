//! What a grading run found, and the score arithmetic. Every format
//! (render.rs) is drawn from this one [`Report`]; its JSON form is the
//! stable schema `tara-grade/1` documented in the book's "For instructors"
//! chapter.

use super::config::GradingConfig;
use serde::Serialize;

/// The value of the `schema` field: bump it when a field changes meaning or
/// disappears (adding a field keeps it).
pub const SCHEMA: &str = "tara-grade/1";

/// One grading run: the tamper check, then every step.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// False when files that decide the grade differ from the reference.
    pub valid: bool,
    /// The reference (`--against`) as given and the commit it names; null
    /// without `--against`.
    pub against: Option<Reference>,
    /// The files that differ from the reference (empty when valid).
    pub tampered: Vec<String>,
    pub points: f64,
    pub max_points: f64,
    /// `points` as a percentage of `max_points`, 0 to 100.
    pub percent: f64,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub name: String,
    pub commit: String,
}

/// One step: its acceptance tests run against the student's crate.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `01-unshare-pid`
    pub step: String,
    /// `step-01-unshare-pid`
    pub package: String,
    /// The first error of the compiler when the student's crate does not
    /// build (every test then counts as failed); null when it built.
    pub compile_error: Option<String>,
    pub passed: usize,
    pub total: usize,
    pub points: f64,
    pub max_points: f64,
    pub tests: Vec<TestReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub name: String,
    pub passed: bool,
    /// The test's share of the step's points (grading.toml; 1 by default).
    pub weight: f64,
    /// Why it failed: the first lines of its output; null when it passed.
    pub message: Option<String>,
}

/// How one test of a step ended, before scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    pub message: Option<String>,
}

/// How one step's run ended, before scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub step: String,
    pub compile_error: Option<String>,
    pub tests: Vec<TestOutcome>,
}

impl Report {
    /// Scores `outcomes` with the points and weights of `config`.
    pub fn score(
        outcomes: Vec<StepOutcome>,
        config: &GradingConfig,
        against: Option<Reference>,
        tampered: Vec<String>,
    ) -> Report {
        let steps: Vec<StepReport> = outcomes
            .into_iter()
            .map(|outcome| score_step(outcome, config))
            .collect();
        let points = round2(steps.iter().map(|step| step.points).sum());
        let max_points = round2(steps.iter().map(|step| step.max_points).sum());
        let percent = if max_points > 0.0 {
            round2(100.0 * points / max_points)
        } else {
            0.0
        };
        Report {
            schema: SCHEMA,
            valid: tampered.is_empty(),
            against,
            tampered,
            points,
            max_points,
            percent,
            steps,
        }
    }
}

/// A step's points: its maximum times the weight of the tests that passed
/// over the weight of all its tests. A step with no test scores nothing.
fn score_step(outcome: StepOutcome, config: &GradingConfig) -> StepReport {
    let max_points = config.points_of(&outcome.step);
    let tests: Vec<TestReport> = outcome
        .tests
        .into_iter()
        .map(|test| TestReport {
            weight: config.weight_of(&outcome.step, &test.name),
            name: test.name,
            passed: test.passed,
            message: test.message,
        })
        .collect();
    let all: f64 = tests.iter().map(|test| test.weight).sum();
    let earned: f64 = tests
        .iter()
        .filter(|test| test.passed)
        .map(|test| test.weight)
        .sum();
    let points = if all > 0.0 {
        round2(max_points * earned / all)
    } else {
        0.0
    };
    StepReport {
        package: format!("step-{}", outcome.step),
        step: outcome.step,
        compile_error: outcome.compile_error,
        passed: tests.iter().filter(|test| test.passed).count(),
        total: tests.len(),
        points,
        max_points,
        tests,
    }
}

/// Points are shown with at most two decimals; rounding once here keeps
/// every format and the sums in agreement.
fn round2(value: f64) -> f64 {
    // Adding 0.0 turns -0.0 (the sum of no numbers) into 0.
    (value * 100.0).round() / 100.0 + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(step: &str, results: &[(&str, bool)]) -> StepOutcome {
        StepOutcome {
            step: step.to_string(),
            compile_error: None,
            tests: results
                .iter()
                .map(|(name, passed)| TestOutcome {
                    name: name.to_string(),
                    passed: *passed,
                    message: (!passed).then(|| "it failed".to_string()),
                })
                .collect(),
        }
    }

    #[test]
    fn every_test_weighs_the_same_and_a_step_is_worth_100() {
        let report = Report::score(
            vec![outcome("01-a", &[("x", true), ("y", false), ("z", false)])],
            &GradingConfig::default(),
            None,
            vec![],
        );
        let step = &report.steps[0];
        assert_eq!((step.passed, step.total), (1, 3));
        assert_eq!(step.points, 33.33);
        assert_eq!(step.max_points, 100.0);
        assert_eq!(report.percent, 33.33);
        assert!(report.valid);
    }

    #[test]
    fn the_total_is_the_sum_of_the_steps() {
        let report = Report::score(
            vec![
                outcome("01-a", &[("x", true), ("y", true)]),
                outcome("02-b", &[("x", true), ("y", false)]),
            ],
            &GradingConfig::default(),
            None,
            vec![],
        );
        assert_eq!((report.points, report.max_points), (150.0, 200.0));
        assert_eq!(report.percent, 75.0);
    }

    #[test]
    fn weights_and_points_come_from_grading_toml() {
        let config: GradingConfig = GradingConfig::parse(
            "[steps.01-a]\npoints = 30\n[steps.01-a.weights]\nx = 3\ny = 1\n\
             [steps.02-b]\npoints = 0\n",
        )
        .unwrap();
        let report = Report::score(
            vec![
                outcome("01-a", &[("x", true), ("y", false)]),
                outcome("02-b", &[("x", true)]),
            ],
            &config,
            None,
            vec![],
        );
        assert_eq!(report.steps[0].points, 22.5);
        assert_eq!(report.steps[1].points, 0.0);
        assert_eq!((report.points, report.max_points), (22.5, 30.0));
        assert_eq!(report.percent, 75.0);
    }

    #[test]
    fn a_crate_that_does_not_build_and_a_step_without_tests_score_zero() {
        let mut broken = outcome("01-a", &[("x", false)]);
        broken.compile_error = Some("error[E0425]: cannot find value `x`".into());
        let report = Report::score(
            vec![broken, outcome("02-b", &[])],
            &GradingConfig::default(),
            None,
            vec![],
        );
        assert_eq!(report.points, 0.0);
        assert_eq!(report.max_points, 200.0);
    }

    #[test]
    fn tampered_files_make_the_report_invalid() {
        let report = Report::score(
            vec![],
            &GradingConfig::default(),
            None,
            vec!["tests/01-a.rs".into()],
        );
        assert!(!report.valid);
        assert_eq!(report.percent, 0.0);
    }
}

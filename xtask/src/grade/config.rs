//! `grading.toml` at the repository root: how many points each step is
//! worth (100 by default) and how much each test weighs within its step (1
//! by default). Instructors edit it; the tamper check protects it.
//!
//! ```toml
//! [steps.01-unshare-pid]
//! points = 50                        # the step is worth 50 points
//!
//! [steps.01-unshare-pid.weights]
//! the_command_is_pid_1 = 3           # this test counts three times
//! the_hostname_changes_inside_only = 0   # this one not at all
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name, at the repository root.
pub const FILE: &str = "grading.toml";

const DEFAULT_POINTS: f64 = 100.0;
const DEFAULT_WEIGHT: f64 = 1.0;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradingConfig {
    #[serde(default)]
    steps: BTreeMap<String, StepConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepConfig {
    points: Option<f64>,
    #[serde(default)]
    weights: BTreeMap<String, f64>,
}

impl GradingConfig {
    /// Reads `grading.toml` in `root`; the defaults when there is none.
    pub fn load(root: &Path) -> Result<GradingConfig> {
        let path = root.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => GradingConfig::parse(&text).with_context(|| format!("in {FILE}")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<GradingConfig> {
        let config: GradingConfig = toml::from_str(text)?;
        for (step, settings) in &config.steps {
            let numbers = settings.points.iter().map(|points| ("points", points));
            let weights = settings.weights.iter().map(|(test, w)| (test.as_str(), w));
            for (what, value) in numbers.chain(weights) {
                if !value.is_finite() || *value < 0.0 {
                    bail!("steps.{step}: {what} = {value}: points and weights are numbers >= 0");
                }
            }
        }
        Ok(config)
    }

    /// Fails, naming them, on steps and tests the file mentions that do not
    /// exist: a misspelt name would otherwise silently weigh 1. `all_steps`
    /// are the steps of the repository; `graded` the steps of this run, with
    /// their tests.
    pub fn check_names(
        &self,
        all_steps: &[String],
        graded: &[(String, Vec<String>)],
    ) -> Result<()> {
        let mut unknown = Vec::new();
        for (step, settings) in &self.steps {
            if !all_steps.contains(step) {
                unknown.push(format!("step {step}"));
            } else if let Some((_, tests)) = graded.iter().find(|(name, _)| name == step) {
                unknown.extend(
                    settings
                        .weights
                        .keys()
                        .filter(|test| !tests.contains(test))
                        .map(|test| format!("test {test} of step {step}")),
                );
            }
        }
        if !unknown.is_empty() {
            bail!("{FILE} names what does not exist: {}", unknown.join(", "));
        }
        Ok(())
    }

    pub fn points_of(&self, step: &str) -> f64 {
        self.steps
            .get(step)
            .and_then(|settings| settings.points)
            .unwrap_or(DEFAULT_POINTS)
    }

    pub fn weight_of(&self, step: &str, test: &str) -> f64 {
        self.steps
            .get(step)
            .and_then(|settings| settings.weights.get(test).copied())
            .unwrap_or(DEFAULT_WEIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_the_defaults() {
        let config = GradingConfig::parse("").unwrap();
        assert_eq!(config.points_of("01-unshare-pid"), 100.0);
        assert_eq!(config.weight_of("01-unshare-pid", "any"), 1.0);
    }

    #[test]
    fn points_and_weights_are_read() {
        let config = GradingConfig::parse(
            "[steps.01-a]\npoints = 50\n[steps.01-a.weights]\nt = 2.5\n[steps.02-b]\n",
        )
        .unwrap();
        assert_eq!(config.points_of("01-a"), 50.0);
        assert_eq!(config.weight_of("01-a", "t"), 2.5);
        assert_eq!(config.weight_of("01-a", "u"), 1.0);
        assert_eq!(config.points_of("02-b"), 100.0);
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            "[steps.01-a]\npoints = -1\n",
            "[steps.01-a]\npoint = 5\n",
            "[steps.01-a.weights]\nt = \"x\"\n",
            "[step.01-a]\n",
        ] {
            assert!(GradingConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_steps_and_tests_are_named() {
        let config =
            GradingConfig::parse("[steps.01-a.weights]\nt = 2\nmisspelt = 1\n[steps.09-z]\n")
                .unwrap();
        let all = ["01-a".to_string(), "02-b".to_string()];
        let graded = vec![("01-a".to_string(), vec!["t".to_string()])];
        let error = config.check_names(&all, &graded).unwrap_err().to_string();
        assert!(error.contains("test misspelt of step 01-a"), "{error}");
        assert!(error.contains("step 09-z"), "{error}");
        assert!(!error.contains("test t "), "{error}");
    }
}

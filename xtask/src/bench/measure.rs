//! The two measurements: time with hyperfine, memory with GNU time.
//!
//! hyperfine runs each command a few times to warm the caches, then many
//! times more, and reports the median, the fastest and the slowest run. It
//! is started inside the lab's network namespace (and, for crun on cgroup
//! v1, its mount namespace), so every command it times is started there
//! too, without a shell in between (`-N`).
//!
//! The peak memory of a run is the largest resident set of any process of
//! its tree, as the kernel counts it for `getrusage(2)`: GNU time's `%M`.
//! A child's count starts with its parent's pages at fork, so the tool that
//! measures must be small: `/usr/bin/time` adds about 1 MiB, which the row
//! of `/bin/true` alone shows.

use super::lab::{Env, Lab};
use super::rows::Row;
use super::{quote, run_quietly};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// How many times each command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runs {
    /// Untimed runs before each round: page cache, dentries, the
    /// network's bridge.
    pub warmup: u32,
    /// Timed runs of each row per round.
    pub timed: u32,
    /// Rounds, every other one in reverse order: hyperfine runs one row
    /// after the other, and when the machine's load changes meanwhile, the
    /// rows at one end of the list would pay for it alone.
    pub rounds: u32,
    /// Runs under /usr/bin/time; the median is reported.
    pub memory: u32,
}

/// The full run: about a minute of timing on a 2-core machine.
pub const FULL: Runs = Runs {
    warmup: 5,
    timed: 50,
    rounds: 2,
    memory: 5,
};

/// `--quick`: every row still runs, a few times only, so that the bench
/// code is exercised by `cargo xtask test`; its numbers mean little.
pub const QUICK: Runs = Runs {
    warmup: 1,
    timed: 3,
    rounds: 1,
    memory: 1,
};

/// One command's timed runs in one round, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub name: String,
    pub times: Vec<f64>,
}

/// What the table shows of a command's runs, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub name: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The median, fastest and slowest run of each command, all rounds
/// together; the commands in the order they first appear.
pub fn summarize(samples: &[Samples]) -> Vec<Timing> {
    let mut names: Vec<&str> = Vec::new();
    for sample in samples {
        if !names.contains(&sample.name.as_str()) {
            names.push(&sample.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mut times: Vec<f64> = samples
                .iter()
                .filter(|sample| sample.name == name)
                .flat_map(|sample| sample.times.iter().copied())
                .collect();
            times.sort_by(f64::total_cmp);
            Timing {
                name: name.to_string(),
                median: median_of_sorted(&times),
                min: times.first().copied().unwrap_or(f64::NAN),
                max: times.last().copied().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The middle value, or the mean of the middle two.
fn median_of_sorted(times: &[f64]) -> f64 {
    let middle = times.len() / 2;
    match times.len() {
        0 => f64::NAN,
        len if len % 2 == 0 => (times[middle - 1] + times[middle]) / 2.0,
        _ => times[middle],
    }
}

/// Times `rows` (all run in `env`) with hyperfine, for one round, which
/// writes its results as JSON to `json`; returns each row's runs.
pub fn time(lab: &Lab, env: Env, rows: &[&Row], runs: Runs, json: &Path) -> Result<Vec<Samples>> {
    let mut command = lab.command(env, &["hyperfine".to_string()]);
    command
        .arg("-N")
        .args(["--warmup", &runs.warmup.to_string()])
        .args(["--runs", &runs.timed.to_string()])
        .arg("--export-json")
        .arg(json);
    if runs == QUICK {
        command.args(["--style", "none"]);
    }
    for row in rows {
        // Without a shell, hyperfine splits each command as a shell would.
        let line: Vec<String> = row.command.iter().map(|arg| quote(arg)).collect();
        command.arg("-n").arg(&row.label).arg(line.join(" "));
    }
    let status = command.status().context("running hyperfine")?;
    if !status.success() {
        bail!("hyperfine failed ({status})");
    }
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    parse_hyperfine(&text)
        .with_context(|| format!("reading hyperfine's results in {}", json.display()))
}

/// Each command's runs in hyperfine's JSON export.
pub fn parse_hyperfine(text: &str) -> Result<Vec<Samples>> {
    let export: Value = serde_json::from_str(text)?;
    let results = export["results"]
        .as_array()
        .context("no \"results\" array")?;
    results
        .iter()
        .map(|result| {
            let name = result["command"]
                .as_str()
                .context("a result without \"command\"")?;
            let times = result["times"]
                .as_array()
                .with_context(|| format!("{name:?} has no \"times\""))?
                .iter()
                .map(|time| time.as_f64().context("a time that is not a number"))
                .collect::<Result<Vec<f64>>>()?;
            Ok(Samples {
                name: name.to_string(),
                times,
            })
        })
        .collect()
}

/// The median peak RSS of `row` over `runs` runs, in KiB. A run that fails
/// fails with its output: this is also the check that every row works,
/// before hyperfine times it.
pub fn peak_rss(lab: &Lab, row: &Row, runs: u32, scratch: &Path) -> Result<u64> {
    let mut peaks = Vec::new();
    for _ in 0..runs {
        let mut measured = vec![
            "/usr/bin/time".to_string(),
            "-f".into(),
            "%M".into(),
            "-o".into(),
            scratch.to_string_lossy().into_owned(),
            "--".into(),
        ];
        measured.extend(row.command.iter().cloned());
        run_quietly(&mut lab.command(row.env(), &measured))
            .with_context(|| format!("the row {:?} failed", row.label))?;
        let report = std::fs::read_to_string(scratch)
            .with_context(|| format!("reading {}", scratch.display()))?;
        peaks.push(parse_time_report(&report)?);
    }
    Ok(median(&mut peaks))
}

/// The number GNU time wrote on its last line (`%M`: KiB).
fn parse_time_report(report: &str) -> Result<u64> {
    let last = report.lines().rev().find(|line| !line.trim().is_empty());
    last.and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("GNU time wrote {report:?}, not a size in KiB"))
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two results of a real export (hyperfine 1.15), shortened.
    pub const EXPORT: &str = r#"{
  "results": [
    {
      "command": "/bin/true",
      "mean": 0.0018, "stddev": 0.0002, "median": 0.00171,
      "user": 0.0005, "system": 0.0011, "min": 0.00121, "max": 0.00342,
      "times": [0.00171, 0.00121, 0.00342], "exit_codes": [0, 0, 0]
    },
    {
      "command": "floor: unshare (5 namespaces)",
      "mean": 0.0045, "stddev": 0.0004, "median": 0.0043,
      "user": 0.0005, "system": 0.0031, "min": 0.0032, "max": 0.018,
      "times": [0.0043, 0.0032, 0.018], "exit_codes": [0, 0, 0]
    }
  ]
}"#;

    #[test]
    fn hyperfine_runs_are_read_by_name() {
        let samples = parse_hyperfine(EXPORT).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].name, "floor: unshare (5 namespaces)");
        assert_eq!(samples[1].times, [0.0043, 0.0032, 0.018]);
    }

    #[test]
    fn a_broken_export_is_an_error() {
        assert!(parse_hyperfine("{}").is_err());
        assert!(parse_hyperfine(r#"{"results": [{"command": "x"}]}"#).is_err());
        assert!(parse_hyperfine(r#"{"results": [{"command": "x", "times": ["a"]}]}"#).is_err());
    }

    #[test]
    fn the_rounds_of_a_command_are_summarized_together() {
        let mut samples = parse_hyperfine(EXPORT).unwrap();
        samples.push(Samples {
            name: "/bin/true".into(),
            times: vec![0.0015],
        });
        let timings = summarize(&samples);
        assert_eq!(timings.len(), 2, "one per command, in order");
        assert_eq!(timings[0].name, "/bin/true");
        // 0.00121, 0.0015, 0.00171, 0.00342: the mean of the middle two.
        assert!((timings[0].median - 0.001605).abs() < 1e-12);
        assert_eq!(timings[0].min, 0.00121);
        assert_eq!(timings[0].max, 0.00342);
        assert_eq!(timings[1].median, 0.0043);
    }

    #[test]
    fn gnu_time_reports_the_size_on_its_last_line() {
        assert_eq!(parse_time_report("10132\n").unwrap(), 10132);
        assert_eq!(
            parse_time_report("Command exited with non-zero status 1\n2048\n").unwrap(),
            2048
        );
        assert!(parse_time_report("").is_err());
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [7]), 7);
    }
}

//! `cargo xtask progress`: where a student stands. For each step, how many
//! of its acceptance tests the student's crate passes; the current step
//! (the first not done), its first failing test, and the exercise to look
//! at next with its hint.
//!
//! It runs in the student's own workspace and target, so cargo rebuilds
//! only what changed, and it remembers each step's result with a
//! fingerprint of the files that decide it: a step nobody touched since the
//! last run is not run again.

use crate::libtest::{Outcome, TestRun};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The width of the output: an 80-column terminal.
const WIDTH: usize = 80;

/// What one run of a step's acceptance tests showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StepResult {
    fingerprint: u64,
    passed: usize,
    total: usize,
    /// The failing tests and why each failed.
    failures: Vec<(String, String)>,
    /// The compiler's first error when the crate does not build.
    compile_error: Option<String>,
}

impl StepResult {
    fn done(&self) -> bool {
        self.compile_error.is_none() && self.total > 0 && self.passed == self.total
    }
}

/// An exercise still to do, read from the student's crate.
#[derive(Debug, Clone, PartialEq)]
struct Exercise {
    /// `EXERCISE 2: make the rootfs a mount point`
    title: String,
    hint: String,
    /// `steps/02-mount-ns/src/root.rs:37`
    place: String,
}

pub fn run(root: &Path, only: &[String], use_cache: bool) -> Result<()> {
    let steps = crate::verify::select_steps(&root.join("steps"), only)?;
    let cache = crate::target_dir(root).join("xtask-progress");
    let mut results = Vec::new();
    let mut remembered = Vec::new();
    for step in &steps {
        let fingerprint = fingerprint(root, step)?;
        let cached = use_cache
            .then(|| load(&cache, step))
            .flatten()
            .filter(|result| result.fingerprint == fingerprint);
        let result = match cached {
            Some(result) => {
                remembered.push(step.as_str());
                result
            }
            None => {
                eprintln!("progress: running the acceptance tests of step-{step}");
                let result = run_step(root, step, fingerprint)?;
                save(&cache, step, &result);
                result
            }
        };
        results.push((step.clone(), result));
    }
    print!("{}", summary(root, &results)?);
    if !remembered.is_empty() {
        let note = format!(
            "(Unchanged since the last run, so not run again: {}. `cargo xtask progress \
             --no-cache` runs them.)",
            remembered.join(", ")
        );
        print!("{}", wrap(&note, 0));
    }
    Ok(())
}

/// Runs `cargo test -p step-STEP --test acceptance` in the workspace.
fn run_step(root: &Path, step: &str, fingerprint: u64) -> Result<StepResult> {
    let package = format!("step-{step}");
    let output = crate::cargo_command(root)
        .args(["test", "--package", &package, "--test", "acceptance"])
        .arg("--no-fail-fast")
        .env("RUST_BACKTRACE", "0")
        .env("INSTA_UPDATE", "no")
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .with_context(|| format!("running the acceptance tests of {package}"))?;
    let run = TestRun::parse(&String::from_utf8_lossy(&output.stdout));
    let compile_error = run
        .outcomes
        .is_empty()
        .then(|| first_error(&String::from_utf8_lossy(&output.stderr)));
    let failures = run
        .outcomes
        .iter()
        .filter(|(_, outcome)| **outcome != Outcome::Passed)
        .map(|(name, _)| (name.clone(), run.why(name)))
        .collect();
    Ok(StepResult {
        fingerprint,
        passed: run
            .outcomes
            .values()
            .filter(|outcome| **outcome == Outcome::Passed)
            .count(),
        total: run.outcomes.len(),
        failures,
        compile_error,
    })
}

/// The first error cargo printed, with the lines that locate it.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .skip_while(|line| !line.starts_with("error"))
        .take(6)
        .collect();
    if lines.is_empty() {
        "the tests did not run (cargo printed no error)".to_string()
    } else {
        lines.join("\n")
    }
}

/// A hash of what decides a step's result: its crate, its tests and their
/// snapshots, testkit, the solutions and the workspace's manifest and lock
/// file. Not stable across Rust releases, which only costs one fresh run.
fn fingerprint(root: &Path, step: &str) -> Result<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    let sources = [
        root.join("steps").join(step),
        root.join("tests").join(format!("{step}.rs")),
        root.join("tests/snapshots").join(step),
        root.join("tests/testkit"),
        // A step's crate builds on the solutions of the steps before.
        root.join("solutions"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    for source in sources {
        for file in files_below(&source)? {
            file.hash(&mut hasher);
            std::fs::read(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .hash(&mut hasher);
        }
    }
    Ok(hasher.finish())
}

/// The files below `path` (or `path` itself), sorted, without `target/`.
fn files_below(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(if path.exists() {
            vec![path.to_path_buf()]
        } else {
            vec![]
        });
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let entry = entry?.path();
        if entry.file_name().is_some_and(|name| name != "target") {
            files.extend(files_below(&entry)?);
        }
    }
    files.sort();
    Ok(files)
}

fn load(cache: &Path, step: &str) -> Option<StepResult> {
    let text = std::fs::read_to_string(cache.join(format!("{step}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remembers a result; a cache that cannot be written only costs time.
fn save(cache: &Path, step: &str, result: &StepResult) {
    let write = std::fs::create_dir_all(cache).and_then(|()| {
        let json = serde_json::to_string(result).map_err(std::io::Error::other)?;
        std::fs::write(cache.join(format!("{step}.json")), json)
    });
    if let Err(error) = write {
        eprintln!("progress: could not remember the result of {step}: {error}");
    }
}

/// The whole output: a line per step, then what to do next.
fn summary(root: &Path, results: &[(String, StepResult)]) -> Result<String> {
    let current = results.iter().position(|(_, result)| !result.done());
    let mut out = String::from("\n");
    for (index, (step, result)) in results.iter().enumerate() {
        out += &step_line(step, result, Some(index) == current);
        out.push('\n');
    }
    out.push('\n');
    match current {
        None => out += "Every step passes all its acceptance tests. Well done!\n",
        Some(index) => {
            let (step, result) = &results[index];
            let exercise = next_exercise(root, step, result)?;
            out += &what_next(step, result, exercise.as_ref());
        }
    }
    Ok(out)
}

/// `01-unshare-pid       22/22  [####################]  done`
fn step_line(step: &str, result: &StepResult, current: bool) -> String {
    let status = if result.done() {
        "done"
    } else if current {
        "<- you are here"
    } else {
        ""
    };
    let line = if result.compile_error.is_some() {
        format!("  {step:<22} does not compile       {status}")
    } else {
        format!(
            "  {step:<22} {:>2}/{:<2}  {}  {status}",
            result.passed,
            result.total,
            bar(result.passed, result.total, 20)
        )
    };
    line.trim_end().to_string()
}

fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// The current step's first failure and the exercise to look at next.
fn what_next(step: &str, result: &StepResult, exercise: Option<&Exercise>) -> String {
    let mut out = String::new();
    if let Some(error) = &result.compile_error {
        out += &format!("Step {step} does not compile:\n");
        out += &indent(error, 2);
    } else {
        out += &format!(
            "Step {step}: {} of {} tests pass.\n",
            result.passed, result.total
        );
        if let Some((test, why)) = failure_to_show(result, exercise) {
            out += &format!("A failing test: {test}\n");
            let why = first_lines(why, 4);
            out += &why.lines().map(|line| wrap(line, 2)).collect::<String>();
        }
    }
    match exercise {
        Some(exercise) => {
            out += "\n";
            out += &wrap(&format!("Next: {}", exercise.title), 0);
            out += &format!("  in {}\n", exercise.place);
            if !exercise.hint.is_empty() {
                out += &wrap(&format!("Hint: {}", exercise.hint), 2);
            }
        }
        None => {
            out += "\nEvery exercise of this step is filled in: the failing test's message \
                    says what is still wrong.\n"
        }
    }
    out += &format!("\nRun the step's tests: cargo test -p step-{step}\n");
    out
}

/// The failing test to show: one that names the next exercise, else the
/// first.
fn failure_to_show<'a>(
    result: &'a StepResult,
    exercise: Option<&Exercise>,
) -> Option<&'a (String, String)> {
    let id = exercise.map(|exercise| format!("EXERCISE {}:", exercise_number(&exercise.title)));
    result
        .failures
        .iter()
        .find(|(_, why)| id.as_ref().is_some_and(|id| why.contains(id.as_str())))
        .or(result.failures.first())
}

/// The exercise to look at next: the lowest-numbered `todo!("EXERCISE N`
/// left in the student's crate; when none is left, the one the first
/// failing test names.
fn next_exercise(root: &Path, step: &str, result: &StepResult) -> Result<Option<Exercise>> {
    let exercises = exercises_in(root, step)?;
    let blank = exercises
        .iter()
        .filter(|(_, still_blank)| *still_blank)
        .map(|(exercise, _)| exercise)
        .min_by_key(|exercise| exercise_number(&exercise.title));
    if let Some(exercise) = blank {
        return Ok(Some(exercise.clone()));
    }
    let named = result
        .failures
        .first()
        .and_then(|(_, why)| why.split("EXERCISE ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|number| number.parse::<u32>().ok());
    Ok(exercises
        .into_iter()
        .map(|(exercise, _)| exercise)
        .find(|exercise| Some(exercise_number(&exercise.title)) == named))
}

fn exercise_number(title: &str) -> u32 {
    title
        .trim_start_matches("EXERCISE ")
        .split(':')
        .next()
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// Every `// EXERCISE N: title. Hint: ...` comment in the student's crate,
/// and whether its `todo!()` is still there.
fn exercises_in(root: &Path, step: &str) -> Result<Vec<(Exercise, bool)>> {
    let mut found = Vec::new();
    for file in files_below(&root.join("steps").join(step).join("src"))? {
        if file.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        let relative = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        found.extend(parse_exercises(&text, &relative));
    }
    Ok(found)
}

/// The exercise comments of one file: a `// EXERCISE` line and the comment
/// lines after it, which continue the hint.
fn parse_exercises(text: &str, file: &str) -> Vec<(Exercise, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(comment) = line.trim_start().strip_prefix("// EXERCISE ") else {
            continue;
        };
        let mut text = format!("EXERCISE {comment}");
        let mut end = index + 1;
        while let Some(more) = lines
            .get(end)
            .and_then(|l| l.trim_start().strip_prefix("//"))
        {
            if more.trim_start().starts_with("SOLUTION-") {
                break;
            }
            text = format!("{text} {}", more.trim());
            end += 1;
        }
        let (title, hint) = match text.split_once(" Hint: ") {
            Some((title, hint)) => (title.trim_end_matches('.'), hint.trim()),
            None => (text.trim_end_matches('.'), ""),
        };
        let todo = format!("todo!(\"EXERCISE {}:", exercise_number(title));
        let blank_at = lines[end..]
            .iter()
            .take(3)
            .position(|line| line.contains(&todo))
            .map(|offset| end + offset + 1);
        found.push((
            Exercise {
                title: title.to_string(),
                hint: hint.to_string(),
                place: format!("{file}:{}", blank_at.unwrap_or(index + 1)),
            },
            blank_at.is_some(),
        ));
    }
    found
}

fn first_lines(text: &str, count: usize) -> String {
    text.lines().take(count).collect::<Vec<_>>().join("\n")
}

/// Each line of `text` indented by `by` and cut to the width.
fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|line| format!("{}{}\n", " ".repeat(by), cut(line, WIDTH - by)))
        .collect()
}

fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_string()
    } else {
        let kept: String = line.chars().take(width - 1).collect();
        format!("{kept}…")
    }
}

/// `text` wrapped at word boundaries to the width, indented by `by`.
fn wrap(text: &str, by: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && by + line.chars().count() + 1 + word.chars().count() > WIDTH {
            out += &format!("{}{line}\n", " ".repeat(by));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += word;
    }
    if !line.is_empty() {
        out += &format!("{}{line}\n", " ".repeat(by));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTER: &str = "fn a() {\n    // EXERCISE 2: make the rootfs a mount point. Hint: \
        pivot_root requires\n    // a mount point.\n    todo!(\"EXERCISE 2: make the rootfs a \
        mount point\")\n}\n// EXERCISE 1: choose. Hint: all of them.\nfn b() { 1 }\n";

    #[test]
    fn exercises_and_their_hints_are_read() {
        let found = parse_exercises(STARTER, "src/root.rs");
        assert_eq!(found.len(), 2);
        let (two, blank) = &found[0];
        assert!(blank);
        assert_eq!(two.title, "EXERCISE 2: make the rootfs a mount point");
        assert_eq!(two.hint, "pivot_root requires a mount point.");
        assert_eq!(two.place, "src/root.rs:4");
        let (one, blank) = &found[1];
        assert!(!blank, "exercise 1 has no todo!() left");
        assert_eq!(one.title, "EXERCISE 1: choose");
    }

    fn result(passed: usize, total: usize) -> StepResult {
        StepResult {
            fingerprint: 0,
            passed,
            total,
            failures: (passed..total)
                .map(|index| {
                    let exercise = if index == passed { 1 } else { 2 };
                    let why = format!(
                        "this test needs EXERCISE {exercise}: make the rootfs a mount point, \
                         which is still a todo!(): solve it and run the tests again"
                    );
                    (format!("test_{index}"), why)
                })
                .collect(),
            compile_error: None,
        }
    }

    #[test]
    fn the_output_fits_80_columns_and_points_at_the_next_exercise() {
        let exercise = Exercise {
            title: "EXERCISE 2: make the rootfs a mount point".into(),
            hint: "pivot_root requires the new root to be a mount point, and a plain directory \
                   is not one; bind-mounting it onto itself makes it one: mount(Some(rootfs), \
                   rootfs, NONE, MS_BIND | MS_REC, NONE)."
                .into(),
            place: "steps/02-mount-ns/src/root.rs:37".into(),
        };
        let mut out = step_line("01-unshare-pid", &result(22, 22), false);
        out += "\n";
        out += &step_line("02-mount-ns", &result(1, 16), true);
        out += "\n";
        out += &what_next("02-mount-ns", &result(1, 16), Some(&exercise));
        for line in out.lines() {
            assert!(line.chars().count() <= WIDTH, "too wide: {line}");
        }
        assert!(out.contains("done"));
        assert!(out.contains("<- you are here"));
        assert!(
            out.contains("A failing test: test_2\n"),
            "the failure shown is one that needs exercise 2:\n{out}"
        );
        assert!(out.contains("Next: EXERCISE 2: make the rootfs a mount point"));
        assert!(out.contains("Hint: pivot_root requires"));
        assert!(out.contains("cargo test -p step-02-mount-ns"));
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 4, 4), "[....]");
        assert_eq!(bar(2, 4, 4), "[##..]");
        assert_eq!(bar(4, 4, 4), "[####]");
        assert_eq!(bar(0, 0, 4), "[....]");
    }

    #[test]
    fn a_step_is_done_when_every_test_passes() {
        assert!(result(3, 3).done());
        assert!(!result(2, 3).done());
        assert!(!result(0, 0).done());
    }
}

//! `cargo xtask verify`: every acceptance test passes on its solution and
//! fails on the unsolved starter (a test that passes on `todo!()` does not
//! test the student's work); each exercise left blank alone fails at least
//! one test; and solving the exercises in order turns more tests green at
//! every exercise, so that a student sees progress.

use crate::libtest::{Outcome, TestRun};
use crate::steps::{self, Blanks};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `NN-topic` directories below `dir`, in order.
pub fn step_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The names of the steps below `dir` (`steps/` or `solutions/`) that
/// `only` asks for: all when it is empty, else those whose name starts with
/// one of its words (`01` or `01-unshare-pid`).
pub fn select_steps(dir: &Path, only: &[String]) -> Result<Vec<String>> {
    let all: Vec<String> = step_dirs(dir)?
        .iter()
        .filter_map(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    filter_steps(&all, only)
}

pub fn filter_steps(all: &[String], only: &[String]) -> Result<Vec<String>> {
    let selected: Vec<String> = all
        .iter()
        .filter(|step| {
            only.is_empty() || only.iter().any(|wanted| step.starts_with(wanted.as_str()))
        })
        .cloned()
        .collect();
    if selected.is_empty() {
        bail!("no step matched {only:?} (the steps: {})", all.join(", "));
    }
    Ok(selected)
}

/// Verifies the steps named in `only` (all when empty); returns how many
/// acceptance tests were verified.
pub fn run(root: &Path, only: &[String]) -> Result<usize> {
    let mut bad = 0;
    let mut tests = 0;
    for step in select_steps(&root.join("steps"), only)? {
        check_starter_unit_tests(root, &format!("step-{step}"))?;
        let solution = acceptance_outcomes(root, &format!("solution-{step}"), None)?;
        let starter_run = acceptance_run(root, &format!("step-{step}"), None)?;
        let starter = &starter_run.outcomes;
        bad += print_table(&step, &solution, starter);
        bad += check_failures_name_an_exercise(&starter_run);
        let exercises = steps::exercises(root, &step)?;
        let scratch = ScratchWorkspace::create(root)?;
        bad += check_each_exercise_is_tested(&scratch, &step, &exercises, &solution)?;
        bad += check_progress(&scratch, &step, &exercises, &solution)?;
        tests += solution.len();
    }
    // A closing line CI runners understand: each verified test counts once.
    println!(
        "\nverify: {} passed, {bad} failed",
        tests.saturating_sub(bad)
    );
    if bad > 0 {
        bail!(
            "{bad} problem(s): acceptance tests that do not pass on the solution and fail on the \
             starter, exercises no test notices, or exercises that turn no new test green"
        );
    }
    Ok(tests)
}

/// Prints the table of one step; returns how many tests are wrong.
fn print_table(
    step: &str,
    solution: &BTreeMap<String, Outcome>,
    starter: &BTreeMap<String, Outcome>,
) -> usize {
    let mut names: Vec<&String> = solution.keys().chain(starter.keys()).collect();
    names.sort();
    names.dedup();
    let width = names
        .iter()
        .map(|name| name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("\nstep {step}: {} acceptance tests", names.len());
    println!(
        "  {:width$}  {:9}  {:9}  verdict",
        "test", "solution", "starter"
    );
    let mut bad = 0;
    for name in names {
        let on_solution = solution.get(name).copied().unwrap_or(Outcome::Missing);
        let on_starter = starter.get(name).copied().unwrap_or(Outcome::Missing);
        let good = on_solution == Outcome::Passed && on_starter == Outcome::Failed;
        let verdict = match (on_solution, on_starter) {
            _ if good => "ok",
            (_, Outcome::Passed) => "BAD: passes on the unsolved starter",
            (Outcome::Passed, _) => "BAD: not run on the starter",
            _ => "BAD: does not pass on the solution",
        };
        bad += usize::from(!good);
        println!(
            "  {name:width$}  {:9}  {:9}  {verdict}",
            on_solution.label(),
            on_starter.label()
        );
    }
    if solution.is_empty() {
        println!("  (no tests found)");
        bad += 1;
    }
    bad
}

/// A student who runs the tests of a fresh starter must learn which
/// exercise to solve, not only that "the container exited with 125": every
/// acceptance test that fails on the starter must name an exercise
/// (`EXERCISE N: title`) in its output. Returns how many do not.
fn check_failures_name_an_exercise(starter: &TestRun) -> usize {
    let silent: Vec<&String> = starter
        .outcomes
        .iter()
        .filter(|(name, outcome)| {
            **outcome == Outcome::Failed
                && !starter
                    .output
                    .get(*name)
                    .is_some_and(|output| names_an_exercise(output))
        })
        .map(|(name, _)| name)
        .collect();
    for name in &silent {
        println!(
            "  {name}: BAD: its failure on the starter names no exercise; it said:\n    {}",
            starter.why(name).replace('\n', "\n    ")
        );
    }
    silent.len()
}

/// `EXERCISE 3: ...`, as the starter's todo!() and testkit's messages say.
fn names_an_exercise(output: &str) -> bool {
    output.split("EXERCISE ").skip(1).any(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(':')
    })
}

/// "Fails on the starter" proves little on its own: the first blank may
/// make every test fail. So, for each exercise, build the step with only that
/// exercise blank (the others solved) and require at least one acceptance
/// test to fail. Returns how many exercises no test notices.
fn check_each_exercise_is_tested(
    scratch: &ScratchWorkspace,
    step: &str,
    exercises: &[String],
    solution: &BTreeMap<String, Outcome>,
) -> Result<usize> {
    println!(
        "  {:12}  tests that fail when only this exercise is blank",
        "exercise"
    );
    let mut untested = 0;
    for exercise in exercises {
        let outcomes = scratch.outcomes(step, &Blanks::These(vec![exercise.clone()]))?;
        let failing = solution_tests_that(Outcome::Failed, &outcomes, solution);
        let verdict = match failing.len() {
            0 => {
                untested += 1;
                "BAD: no test notices this exercise is missing".to_string()
            }
            all if all == outcomes.len() => format!("all {all} tests fail"),
            few @ ..=5 => format!("{few}: {}", failing.join(", ")),
            many => format!("{many} of {} tests fail", outcomes.len()),
        };
        println!("  {exercise:12}  {verdict}");
    }
    Ok(untested)
}

/// A student solves the exercises in order and runs the tests after each:
/// every exercise must turn at least one more test green, or the student
/// gets no feedback until the last one. Builds the variants with exercises
/// 1..N solved and the rest blank, prints the count of passing tests after
/// each exercise, and returns how many exercises turn no new test green.
fn check_progress(
    scratch: &ScratchWorkspace,
    step: &str,
    exercises: &[String],
    solution: &BTreeMap<String, Outcome>,
) -> Result<usize> {
    let total = passing(solution, solution);
    let mut counts = Vec::with_capacity(exercises.len());
    for solved in 1..exercises.len() {
        let blanks = Blanks::These(exercises[solved..].to_vec());
        counts.push(passing(&scratch.outcomes(step, &blanks)?, solution));
    }
    counts.push(total);
    println!("  passing tests as the exercises are solved in order:");
    let stalls = stalled_exercises(&counts);
    for (index, (exercise, count)) in exercises.iter().zip(&counts).enumerate() {
        let verdict = if stalls.contains(&index) {
            "  BAD: no new test turns green"
        } else {
            ""
        };
        println!("    {exercise} -> {count} of {total}{verdict}");
    }
    Ok(stalls.len())
}

/// How many tests pass in `outcomes` among those that pass on the solution.
fn passing(outcomes: &BTreeMap<String, Outcome>, solution: &BTreeMap<String, Outcome>) -> usize {
    solution_tests_that(Outcome::Passed, outcomes, solution).len()
}

/// The tests that ended with `wanted` in `outcomes`, among those that pass
/// on the solution: only such a test can tell a variant from the solution.
fn solution_tests_that<'a>(
    wanted: Outcome,
    outcomes: &'a BTreeMap<String, Outcome>,
    solution: &BTreeMap<String, Outcome>,
) -> Vec<&'a str> {
    outcomes
        .iter()
        .filter(|(name, outcome)| {
            **outcome == wanted && solution.get(*name) == Some(&Outcome::Passed)
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The indexes of the exercises after which no more tests pass than before
/// (`counts[i]`: passing tests with exercises 0..=i solved; none pass with
/// none solved, since every test fails on the starter).
fn stalled_exercises(counts: &[usize]) -> Vec<usize> {
    let before = std::iter::once(0).chain(counts.iter().copied());
    counts
        .iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (after, before))| after <= &before)
        .map(|(index, _)| index)
        .collect()
}

/// A copy of the workspace's sources with a target directory of its own,
/// where the exercise variants are built: the real steps/ and target/ are
/// never touched (a variant's binary must not replace the starter's).
struct ScratchWorkspace {
    root: PathBuf,
    target: PathBuf,
}

impl ScratchWorkspace {
    /// What a build and the acceptance tests need.
    const ENTRIES: [&'static str; 7] = [
        ".cargo",
        "Cargo.toml",
        "Cargo.lock",
        "solutions",
        "steps",
        "tests",
        "xtask",
    ];

    fn create(root: &Path) -> Result<Self> {
        let base = crate::target_dir(root).join("xtask-verify");
        let copy = base.join("workspace");
        if copy.exists() {
            std::fs::remove_dir_all(&copy)
                .with_context(|| format!("removing {}", copy.display()))?;
        }
        for entry in Self::ENTRIES {
            copy_tree(&root.join(entry), &copy.join(entry))?;
        }
        Ok(ScratchWorkspace {
            root: copy,
            target: base.join("target"),
        })
    }

    /// The acceptance tests' outcomes for `step` with `blanks` left blank.
    fn outcomes(&self, step: &str, blanks: &Blanks) -> Result<BTreeMap<String, Outcome>> {
        steps::write_step(&self.root, step, blanks)?;
        acceptance_outcomes(&self.root, &format!("step-{step}"), Some(&self.target))
    }
}

/// Copies a file, or a directory without its `target/` folders.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|name| name != "target") {
                copy_tree(&path, &to.join(path.file_name().unwrap()))?;
            }
        }
    } else {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// The unit tests that come with a starter must pass on it: they test the
/// given code, not the blanks. Otherwise `cargo test -p step-NN-topic` stops
/// at the first failing unit test and the student never sees the acceptance
/// tests.
fn check_starter_unit_tests(root: &Path, package: &str) -> Result<()> {
    let output = crate::cargo_command(root)
        .args(["test", "--package", package, "--lib", "--bins"])
        .output()
        .with_context(|| format!("running the unit tests of {package}"))?;
    if !output.status.success() {
        bail!(
            "the unit tests of the starter {package} fail, so `cargo test -p {package}` would \
             stop before the acceptance tests; unit tests must not call exercise code:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

/// Runs the acceptance tests of `package`: how each ended.
fn acceptance_outcomes(
    root: &Path,
    package: &str,
    target: Option<&Path>,
) -> Result<BTreeMap<String, Outcome>> {
    Ok(acceptance_run(root, package, target)?.outcomes)
}

/// Runs the acceptance tests of `package`: how each ended, and what the
/// failing ones printed.
fn acceptance_run(root: &Path, package: &str, target: Option<&Path>) -> Result<TestRun> {
    let mut command = crate::cargo_command(root);
    if let Some(target) = target {
        command.env("CARGO_TARGET_DIR", target);
    }
    let output = command
        .args([
            "test",
            "--package",
            package,
            "--test",
            "acceptance",
            "--no-fail-fast",
        ])
        .env("INSTA_UPDATE", "no")
        .output()
        .with_context(|| format!("running the acceptance tests of {package}"))?;
    let run = TestRun::parse(&String::from_utf8_lossy(&output.stdout));
    if run.outcomes.is_empty() {
        bail!(
            "no test ran for {package}; cargo said:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_chosen_by_prefix() {
        let all = ["01-unshare-pid".to_string(), "02-mount-ns".to_string()];
        assert_eq!(filter_steps(&all, &[]).unwrap(), all);
        assert_eq!(filter_steps(&all, &["02".into()]).unwrap(), ["02-mount-ns"]);
        assert_eq!(
            filter_steps(&all, &["01-unshare-pid".into()]).unwrap(),
            ["01-unshare-pid"]
        );
        assert!(filter_steps(&all, &["07".into()]).is_err());
    }

    #[test]
    fn progress_must_grow_at_every_exercise() {
        assert!(stalled_exercises(&[1, 2, 3, 19, 22]).is_empty());
        assert!(stalled_exercises(&[12]).is_empty());
    }

    #[test]
    fn an_exercise_that_turns_nothing_green_is_reported() {
        // A step whose tests all need every exercise: the old step 02.
        assert_eq!(stalled_exercises(&[0, 0, 0, 12]), [0, 1, 2]);
        // Exercise 3 adds nothing; exercise 4 makes one test fail again.
        assert_eq!(stalled_exercises(&[1, 2, 2, 1, 5]), [2, 3]);
    }

    #[test]
    fn a_failure_must_name_an_exercise() {
        assert!(names_an_exercise("needs EXERCISE 2: add, which is"));
        assert!(!names_an_exercise("the container exited with 125"));
        assert!(!names_an_exercise("EXERCISE of patience"));
        let run = TestRun::parse(
            "test a ... FAILED\ntest b ... FAILED\ntest c ... ok\nfailures:\n\
             ---- a stdout ----\nnot yet implemented: EXERCISE 1: x\n\
             ---- b stdout ----\nexited with 125\nfailures:\n",
        );
        assert_eq!(check_failures_name_an_exercise(&run), 1);
    }

    #[test]
    fn a_test_passing_on_the_starter_is_bad() {
        let solution = BTreeMap::from([("t".to_string(), Outcome::Passed)]);
        let starter = BTreeMap::from([("t".to_string(), Outcome::Passed)]);
        assert_eq!(print_table("00", &solution, &starter), 1);
        let starter = BTreeMap::from([("t".to_string(), Outcome::Failed)]);
        assert_eq!(print_table("00", &solution, &starter), 0);
    }
}

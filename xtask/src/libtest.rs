//! Reading the output of Rust's test harness (libtest): which tests passed,
//! and why the others failed. `verify`, `grade` and `progress` run the
//! acceptance tests with plain `cargo test` (stable Rust has no JSON
//! output for tests) and read these lines:
//!
//! ```text
//! test the_command_is_pid_1 ... FAILED
//! ...
//! failures:
//!
//! ---- the_command_is_pid_1 stdout ----
//! thread 'the_command_is_pid_1' (3052) panicked at tests/01-unshare-pid.rs:39:5:
//! this test needs EXERCISE 1: choose the namespaces, which is still a todo!() ...
//! ```

use std::collections::BTreeMap;

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
    /// Not in the output at all (only `verify` compares runs and sees this).
    Missing,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "passes",
            Outcome::Failed => "fails",
            Outcome::Ignored => "ignored",
            Outcome::Missing => "missing",
        }
    }
}

/// One run of a test binary, read from its stdout.
#[derive(Debug, Default)]
pub struct TestRun {
    pub outcomes: BTreeMap<String, Outcome>,
    /// What each failed test printed (its `---- NAME stdout ----` section).
    pub output: BTreeMap<String, String>,
}

impl TestRun {
    pub fn parse(stdout: &str) -> TestRun {
        TestRun {
            outcomes: parse_outcomes(stdout),
            output: failure_sections(stdout),
        }
    }

    /// Why `test` failed, in a few lines: the message of its panic, else
    /// the first lines it printed.
    pub fn why(&self, test: &str) -> String {
        let output = self.output.get(test).map(String::as_str).unwrap_or("");
        let why = panic_message(test, output).unwrap_or_else(|| first_lines(output));
        let why = why.trim();
        match blank_exercise(output) {
            Some(exercise) if !why.contains(exercise) => {
                format!("{why}\nthe runtime stopped at the todo!() of {exercise}")
            }
            _ => why.to_string(),
        }
    }
}

/// The lines `test NAME ... ok|FAILED|ignored`, before the failures'
/// output: what the tests printed comes after, and must not count. A test
/// reported twice (something else printed such a line) counts as failed.
fn parse_outcomes(stdout: &str) -> BTreeMap<String, Outcome> {
    let mut outcomes = BTreeMap::new();
    let results = stdout
        .lines()
        .take_while(|line| *line != "failures:" && !line.starts_with("---- "))
        .filter_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (name, result) = rest.split_once(" ... ")?;
            let outcome = match result.trim() {
                "ok" => Outcome::Passed,
                "FAILED" => Outcome::Failed,
                result if result.starts_with("ignored") => Outcome::Ignored,
                _ => return None,
            };
            Some((name.to_string(), outcome))
        });
    for (name, outcome) in results {
        if outcomes.insert(name.clone(), outcome).is_some() {
            outcomes.insert(name, Outcome::Failed);
        }
    }
    outcomes
}

/// The `---- NAME stdout ----` sections of the failures, by test name.
fn failure_sections(stdout: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in stdout.lines() {
        let header = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"));
        if header.is_some() || line == "failures:" {
            sections.extend(current.take());
        }
        if let Some(name) = header {
            current = Some((name.to_string(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// Lines kept of a message: enough for an assertion's left and right.
const MESSAGE_LINES: usize = 8;

/// The message of the panic that failed `test`: the lines after
/// `thread 'NAME' (ID) panicked at FILE:LINE:COL:` up to the harness's note.
fn panic_message(test: &str, output: &str) -> Option<String> {
    let header = format!("thread '{test}'");
    let mut lines = output
        .lines()
        .skip_while(|line| !(line.starts_with(&header) && line.contains(" panicked at ")));
    lines.next()?;
    let message: Vec<&str> = lines
        .take_while(|line| {
            !line.starts_with("note: run with")
                && *line != "stack backtrace:"
                && !line.starts_with("thread '")
        })
        .take(MESSAGE_LINES)
        .collect();
    Some(message.join("\n"))
}

fn first_lines(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(MESSAGE_LINES)
        .collect();
    lines.join("\n")
}

/// The exercise whose `todo!()` a process reached, from the panic message
/// it printed: `not yet implemented: EXERCISE 3: mount a new procfs`.
fn blank_exercise(output: &str) -> Option<&str> {
    let (_, rest) = output.split_once("not yet implemented: ")?;
    let line = rest.lines().next()?.trim();
    line.starts_with("EXERCISE ").then_some(line)
}

/// The names `--list` prints (`NAME: test`).
pub fn parse_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\n\
        test c ... ignored, slow\n\nfailures:\n\n---- b stdout ----\n\
        --- the runtime's stderr ---\nnot yet implemented: EXERCISE 2: add\n\n\
        thread 'b' (77) panicked at tests/x.rs:3:5:\n\
        this test needs EXERCISE 2: add, which is still a todo!()\nsecond line\n\
        note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\n\
        failures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed\n";

    #[test]
    fn libtest_lines_are_parsed() {
        let run = TestRun::parse(RUN);
        assert_eq!(run.outcomes["a"], Outcome::Passed);
        assert_eq!(run.outcomes["b"], Outcome::Failed);
        assert_eq!(run.outcomes["c"], Outcome::Ignored);
        assert_eq!(run.outcomes.len(), 3);
        assert_eq!(run.output.len(), 1);
        assert!(run.output["b"].contains("runtime's stderr"));
    }

    #[test]
    fn lines_printed_by_the_tests_do_not_count() {
        let run = TestRun::parse(
            "test a ... FAILED\ntest b ... ok\ntest b ... ok\nfailures:\n\n---- a stdout ----\n\
             test a ... ok\ntest c ... ok\n",
        );
        assert_eq!(run.outcomes["a"], Outcome::Failed);
        assert_eq!(run.outcomes["b"], Outcome::Failed, "reported twice");
        assert!(!run.outcomes.contains_key("c"));
    }

    #[test]
    fn why_is_the_panic_message() {
        let run = TestRun::parse(RUN);
        assert_eq!(
            run.why("b"),
            "this test needs EXERCISE 2: add, which is still a todo!()\nsecond line"
        );
    }

    #[test]
    fn why_names_the_blank_exercise_the_runtime_reached() {
        let run = TestRun::parse(
            "test e ... FAILED\nfailures:\n---- e stdout ----\n\
             not yet implemented: EXERCISE 3: pivot\n\
             thread 'e' (1) panicked at t.rs:1:1:\nexited with 125\n",
        );
        assert_eq!(
            run.why("e"),
            "exited with 125\nthe runtime stopped at the todo!() of EXERCISE 3: pivot"
        );
    }

    #[test]
    fn without_a_panic_why_is_the_first_lines() {
        let run = TestRun::parse("test d ... FAILED\nfailures:\n---- d stdout ----\n\nkilled\n");
        assert_eq!(run.why("d"), "killed");
        assert_eq!(run.why("unknown"), "");
    }

    #[test]
    fn listed_tests_are_read() {
        let list = "a_test: test\nother: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(parse_list(list), ["a_test", "other"]);
    }
}

//! Assertions on a command that ran to its end.
//!
//! The same calls as assert_cmd's `Assert` (`success`, `code`, `stdout`,
//! `stderr`), but a failure shows the command's stdout and stderr once each,
//! as they are: a student reads the runtime's own message, not an escaped
//! copy of it printed twice.

use crate::process::Ended;
use crate::DEFAULT_DEADLINE;
use assert_cmd::assert::IntoOutputPredicate;
use predicates::Predicate;
use std::process::Output;

/// The output of a command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    output: Output,
    timed_out: bool,
}

impl Finished {
    /// Wraps how a command ended.
    pub fn new(ended: Ended) -> Self {
        Finished {
            output: ended.output,
            timed_out: ended.timed_out,
        }
    }

    /// What the command printed, and how it ended.
    pub fn get_output(&self) -> &Output {
        &self.output
    }

    /// Its stdout, as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Fails unless the command exited with 0.
    #[track_caller]
    pub fn success(self) -> Self {
        if !self.output.status.success() {
            self.fail(&format!("the command failed ({})", self.status()));
        }
        self
    }

    /// Fails unless the command exited with `expected`.
    #[track_caller]
    pub fn code(self, expected: i32) -> Self {
        if self.output.status.code() != Some(expected) {
            self.fail(&format!(
                "expected exit code {expected}, got {}",
                self.status()
            ));
        }
        self
    }

    /// Fails unless stdout matches `expected` (a string, or a predicate).
    #[track_caller]
    pub fn stdout<I, P>(self, expected: I) -> Self
    where
        I: IntoOutputPredicate<P>,
        P: Predicate<[u8]>,
    {
        self.expect_stream("stdout", &self.output.stdout, expected.into_output());
        self
    }

    /// Fails unless stderr matches `expected` (a string, or a predicate).
    #[track_caller]
    pub fn stderr<I, P>(self, expected: I) -> Self
    where
        I: IntoOutputPredicate<P>,
        P: Predicate<[u8]>,
    {
        self.expect_stream("stderr", &self.output.stderr, expected.into_output());
        self
    }

    #[track_caller]
    fn expect_stream(&self, name: &str, bytes: &[u8], predicate: impl Predicate<[u8]>) {
        if !predicate.eval(bytes) {
            self.fail(&format!("{name} does not match: {predicate}"));
        }
    }

    /// How the command ended, in words.
    fn status(&self) -> String {
        if self.timed_out {
            format!("it did not finish within {DEFAULT_DEADLINE:?} and was killed")
        } else {
            self.output.status.to_string()
        }
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        eprintln!(
            "--- stdout ---\n{}--- stderr ---\n{}--- ({}) ---",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr),
            self.status()
        );
        panic!("{what} (the command's output is above)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn finished(script: &str) -> Finished {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Finished::new(crate::process::run_with_deadline(command, DEFAULT_DEADLINE))
    }

    #[test]
    fn matching_output_passes() {
        finished("echo out; echo err >&2")
            .success()
            .code(0)
            .stdout("out\n")
            .stderr(predicates::str::contains("err"));
    }

    #[test]
    fn a_failure_names_what_was_expected() {
        let panic = std::panic::catch_unwind(|| finished("exit 3").code(4)).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("expected exit code 4, got exit status: 3"),
            "{message}"
        );
        let panic = std::panic::catch_unwind(|| finished("echo no").stdout("yes\n")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.starts_with("stdout does not match"), "{message}");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_what_it_left_behind() {
        let mut command = Command::new("sh");
        // The background sleep keeps stdout open after sh is gone.
        command.args(["-c", "sleep 60 & echo started; sleep 60"]);
        // Long enough for sh to start and echo under qemu's emulation,
        // where 300 ms was not always.
        let ended = crate::process::run_with_deadline(command, std::time::Duration::from_secs(3));
        assert!(ended.timed_out);
        assert_eq!(ended.output.stdout, b"started\n");
    }
}

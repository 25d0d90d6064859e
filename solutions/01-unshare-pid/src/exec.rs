//! Replacing the child with the command.

use crate::exit_status::{NOT_EXECUTABLE, NOT_FOUND, RUNTIME_ERROR};
use nix::errno::Errno;
use nix::unistd::execvp;
use std::ffi::CString;
use std::fmt;

/// Why the command could not be started. `execvp` only ever returns on
/// failure, so this is all it can return.
#[derive(Debug)]
pub struct ExecFailure {
    program: String,
    reason: Reason,
}

#[derive(Debug)]
enum Reason {
    Errno(Errno),
    NulByte,
    Empty,
}

impl ExecFailure {
    /// The exit code a shell uses for this failure: 127 for "not found",
    /// 126 for "found but not executable".
    pub fn exit_code(&self) -> i32 {
        match self.reason {
            Reason::Errno(Errno::ENOENT | Errno::ENOTDIR) => NOT_FOUND,
            Reason::Errno(_) => NOT_EXECUTABLE,
            Reason::NulByte | Reason::Empty => RUNTIME_ERROR,
        }
    }
}

impl fmt::Display for ExecFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = &self.program;
        match self.reason {
            Reason::Errno(Errno::ENOENT | Errno::ENOTDIR) if program.contains('/') => {
                write!(f, "cannot run {program:?}: no such file")
            }
            Reason::Errno(Errno::ENOENT | Errno::ENOTDIR) => {
                write!(f, "cannot run {program:?}: command not found in PATH")
            }
            Reason::Errno(Errno::EACCES) => {
                write!(
                    f,
                    "cannot run {program:?}: permission denied (not executable, or a directory)"
                )
            }
            Reason::Errno(errno) => write!(f, "cannot run {program:?}: {}", errno.desc()),
            Reason::NulByte => write!(f, "cannot run {program:?}: an argument contains a NUL byte"),
            Reason::Empty => write!(f, "no command given"),
        }
    }
}

impl std::error::Error for ExecFailure {}

/// Replaces this process with `command`, searching `PATH` like a shell.
/// Returns only when that fails.
pub fn exec_command(command: &[String]) -> ExecFailure {
    let program = command.first().cloned().unwrap_or_default();
    let failure = |reason| ExecFailure {
        program: program.clone(),
        reason,
    };
    if command.is_empty() {
        return failure(Reason::Empty);
    }
    let Ok(args) = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return failure(Reason::NulByte);
    };
    match execvp(&args[0], &args) {
        Err(errno) => failure(Reason::Errno(errno)),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(program: &str, errno: Errno) -> ExecFailure {
        ExecFailure {
            program: program.into(),
            reason: Reason::Errno(errno),
        }
    }

    #[test]
    fn not_found_is_127_and_says_so() {
        let failure = failure("nope", Errno::ENOENT);
        assert_eq!(failure.exit_code(), 127);
        assert_eq!(
            failure.to_string(),
            r#"cannot run "nope": command not found in PATH"#
        );
    }

    #[test]
    fn not_executable_is_126() {
        let failure = failure("/etc/passwd", Errno::EACCES);
        assert_eq!(failure.exit_code(), 126);
        assert!(failure.to_string().contains("permission denied"));
    }

    #[test]
    fn a_missing_path_names_the_file() {
        let failure = failure("/no/such", Errno::ENOENT);
        assert_eq!(failure.exit_code(), 127);
        assert!(failure.to_string().contains("no such file"));
    }

    #[test]
    fn a_nul_byte_is_a_runtime_error() {
        let failure = exec_command(&["a\0b".to_string()]);
        assert_eq!(failure.exit_code(), 125);
    }

    #[test]
    fn an_empty_command_is_a_runtime_error() {
        assert_eq!(exec_command(&[]).exit_code(), 125);
    }
}

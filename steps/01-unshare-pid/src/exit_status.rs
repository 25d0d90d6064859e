//! From a wait status to the exit code a shell (and docker) would report.

use nix::sys::wait::WaitStatus;

/// The code the runtime exits with for an error of its own, as docker does.
pub const RUNTIME_ERROR: i32 = 125;
/// The command exists but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// The command's own exit code, or 128+N when signal N killed it: the
/// convention of every POSIX shell, which docker follows.
// ANCHOR: exit_code
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _core_dumped) => 128 + signal as i32,
        // waitpid without WUNTRACED/WCONTINUED reports only the two above.
        _ => RUNTIME_ERROR,
    }
}
// ANCHOR_END: exit_code

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    const PID: Pid = Pid::from_raw(7);

    #[test]
    fn an_exit_code_is_kept() {
        assert_eq!(exit_code(WaitStatus::Exited(PID, 0)), 0);
        assert_eq!(exit_code(WaitStatus::Exited(PID, 42)), 42);
    }

    #[test]
    fn a_signal_becomes_128_plus_its_number() {
        assert_eq!(
            exit_code(WaitStatus::Signaled(PID, Signal::SIGKILL, false)),
            137
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(PID, Signal::SIGTERM, true)),
            143
        );
    }

    #[test]
    fn anything_else_is_a_runtime_error() {
        assert_eq!(exit_code(WaitStatus::StillAlive), RUNTIME_ERROR);
    }
}

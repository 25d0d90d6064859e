//! The command line shared by the step binaries: arguments, error messages
//! and exit codes.

use crate::exit_status::RUNTIME_ERROR;
use crate::Spec;
use clap::error::ErrorKind;
use clap::Parser;
use std::fmt::Display;
use std::io::Write;

/// The arguments of `run`, shared by the later steps' binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Run a tiny init as PID 1 that forwards signals and reaps orphans;
    /// CMD becomes PID 2
    #[arg(long)]
    pub init: bool,

    /// Hostname inside the container (its own UTS namespace)
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// The command to run and its arguments (put `--` before it)
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The container these arguments describe.
    pub fn spec(&self) -> Spec {
        Spec {
            hostname: self.hostname.clone(),
            init: self.init,
            ..Spec::new(self.command.clone())
        }
    }
}

/// A hostname the kernel accepts: 1 to 64 bytes (HOST_NAME_MAX).
pub fn parse_hostname(name: &str) -> Result<String, String> {
    match name.len() {
        0 => Err("the hostname must not be empty".into()),
        1..=64 => Ok(name.to_string()),
        n => Err(format!(
            "the hostname is {n} bytes long; the kernel allows at most 64"
        )),
    }
}

/// Parses the command line. Usage errors exit with 125, as docker's do,
/// so that they cannot be mistaken for the exit code of a command.
pub fn parse_or_exit<T: Parser>() -> T {
    T::try_parse().unwrap_or_else(|error| {
        let code = match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
            _ => RUNTIME_ERROR,
        };
        let _ = error.print();
        std::process::exit(code)
    })
}

/// Exits with the container's exit code, or reports the runtime's error on
/// one line and exits with 125.
pub fn exit_with(result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            report(&format!("{error:#}"));
            std::process::exit(RUNTIME_ERROR)
        }
    }
}

/// Prints one line on stderr, prefixed with the name of this program. A
/// closed stderr is no reason to change the exit code, so errors are ignored
/// (eprintln! would panic).
pub fn report(message: &dyn Display) {
    let _ = writeln!(std::io::stderr(), "{}: {message}", program_name());
}

/// The name this program was started as, for messages.
pub fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "runtime".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_must_fit_the_kernel_limit() {
        assert!(parse_hostname("box").is_ok());
        assert!(parse_hostname(&"a".repeat(64)).is_ok());
        assert!(parse_hostname(&"a".repeat(65))
            .unwrap_err()
            .contains("at most 64"));
        assert!(parse_hostname("").is_err());
    }

    #[test]
    fn run_args_take_the_command_after_the_options() {
        #[derive(Parser)]
        struct Test {
            #[command(flatten)]
            run: RunArgs,
        }
        let test = Test::parse_from([
            "x",
            "--init",
            "--hostname",
            "box",
            "--",
            "sh",
            "-c",
            "echo $$",
        ]);
        assert!(test.run.init);
        assert_eq!(test.run.hostname.as_deref(), Some("box"));
        assert_eq!(test.run.command, ["sh", "-c", "echo $$"]);
    }
}

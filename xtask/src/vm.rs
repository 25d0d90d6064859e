//! `cargo xtask vm CARGO-ARGS...`: run a cargo command inside the workshop VM,
//! from the host's terminal, for example `cargo xtask vm test -p step-01-unshare-pid`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Where the Vagrantfile syncs the repository inside the VM.
const WORKSHOP_DIR: &str = "/workshop";

pub fn run(root: &Path, cargo_args: &[String]) -> Result<i32> {
    let state = machine_state(root)?;
    if state != "running" {
        bail!("{}", not_running_help(&state));
    }
    // A login shell (-l) reads /etc/profile.d/workshop.sh and ~/.profile:
    // cargo's PATH and CARGO_TARGET_DIR on the VM's own disk.
    let script = format!("cd {WORKSHOP_DIR} && exec cargo {}", shell_join(cargo_args));
    let remote = format!("bash -lc {}", shell_quote(&script));
    let status = Command::new("vagrant")
        .args(["ssh", "-c", &remote])
        .current_dir(root)
        .status()
        .context("running vagrant ssh")?;
    Ok(status.code().unwrap_or(1))
}

/// The state of the VM as Vagrant reports it: running, poweroff, saved,
/// not_created, ...
fn machine_state(root: &Path) -> Result<String> {
    let output = match Command::new("vagrant")
        .args(["status", "--machine-readable"])
        .current_dir(root)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "vagrant is not installed on this machine. Install Vagrant and a provider as the \
             book's Setup chapter explains (book/src/setup.md), then `vagrant up`."
        ),
        Err(error) => return Err(error).context("running vagrant status"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(error) = parse_error(&stdout) {
        bail!(
            "vagrant cannot tell the state of the workshop VM:\n{error}\n\
             The book's Setup chapter (book/src/setup.md) explains which provider to install."
        );
    }
    parse_state(&stdout).with_context(|| {
        format!(
            "`vagrant status` did not report the VM's state:\n{}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Finds `TIMESTAMP,default,state,STATE` in `vagrant status --machine-readable`.
fn parse_state(machine_readable: &str) -> Option<String> {
    machine_readable.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        (fields.len() >= 4 && fields[2] == "state").then(|| fields[3].to_string())
    })
}

/// The message of an `error-exit` line: Vagrant escapes newlines as `\n`
/// and commas as `%!(VAGRANT_COMMA)` in its machine-readable output.
fn parse_error(machine_readable: &str) -> Option<String> {
    machine_readable.lines().find_map(|line| {
        let fields: Vec<&str> = line.splitn(5, ',').collect();
        (fields.len() == 5 && fields[2] == "error-exit").then(|| {
            fields[4]
                .replace("\\n", "\n")
                .replace("%!(VAGRANT_COMMA)", ",")
                .trim()
                .to_string()
        })
    })
}

fn not_running_help(state: &str) -> String {
    let what = match state {
        "not_created" => "has not been created yet",
        "poweroff" | "shutoff" | "stopped" => "is powered off",
        "saved" | "suspended" | "paused" => "is suspended",
        _ => "is not running",
    };
    format!(
        "the workshop VM {what} (vagrant state: {state}). Start it with `vagrant up` in this \
         directory (the first time, it downloads the box and installs everything: allow 10 to 20 \
         minutes), then run this command again."
    )
}

/// Quotes `word` for a POSIX shell: inside single quotes everything is
/// literal, except the single quote itself, written as '\''.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(shell_quote("step-01-unshare-pid"), "step-01-unshare-pid");
    }

    #[test]
    fn anything_else_is_single_quoted() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_state_comes_from_the_machine_readable_output() {
        let output = "1732800000,default,metadata,provider,virtualbox\n\
                      1732800000,default,provider-name,virtualbox\n\
                      1732800000,default,state,poweroff\n\
                      1732800000,default,state-human-short,poweroff\n";
        assert_eq!(parse_state(output).as_deref(), Some("poweroff"));
        assert_eq!(parse_state("nothing here"), None);
    }

    #[test]
    fn an_error_exit_is_unescaped() {
        let output = "1,,error-exit,Vagrant::Errors::NoDefaultProvider,No usable default \
                      provider.\\n\\nExamples are VirtualBox%!(VAGRANT_COMMA) VMware.\n";
        assert_eq!(
            parse_error(output).as_deref(),
            Some("No usable default provider.\n\nExamples are VirtualBox, VMware.")
        );
    }

    #[test]
    fn a_stopped_vm_gets_told_how_to_start() {
        let help = not_running_help("not_created");
        assert!(help.contains("has not been created") && help.contains("vagrant up"));
    }
}

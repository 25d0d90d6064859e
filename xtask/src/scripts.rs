//! `cargo xtask scripts`: shellcheck every shell script, validate the Vagrantfile.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn check(root: &Path) -> Result<()> {
    let scripts = shell_scripts(root)?;
    let status = Command::new("shellcheck")
        .args(&scripts)
        .current_dir(root)
        .status()
        .context("running shellcheck: install it (`sudo bash vagrant/provision.sh`)")?;
    if !status.success() {
        bail!("shellcheck found problems");
    }
    println!("shellcheck: {} scripts clean", scripts.len());
    validate_vagrantfile(root)
}

/// `vagrant validate` needs no provider with --ignore-provider. CI always
/// runs it (provision.sh installs vagrant there); elsewhere a maintainer
/// without vagrant gets a loud notice instead of an error.
fn validate_vagrantfile(root: &Path) -> Result<()> {
    let run = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(root)
        .status();
    match run {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("vagrant validate failed ({status})"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !in_ci() => {
            println!("NOT CHECKED: vagrant validate (vagrant is not installed here; CI runs it)");
            Ok(())
        }
        Err(error) => Err(error).context("running vagrant validate"),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// The files git tracks that are shell scripts: `*.sh`, or a `#!` line
/// naming sh or bash.
fn shell_scripts(root: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !output.status.success() {
        bail!("git ls-files failed");
    }
    let scripts: Vec<PathBuf> = output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|path| is_shell_script(&root.join(path)))
        .collect();
    if scripts.is_empty() {
        bail!("found no shell script to check: is this a git checkout?");
    }
    Ok(scripts)
}

fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|ext| ext == "sh") {
        return true;
    }
    let Ok(text) = std::fs::read(path) else {
        return false;
    };
    let first_line = text.split(|byte| *byte == b'\n').next().unwrap_or_default();
    is_shell_shebang(&String::from_utf8_lossy(first_line))
}

fn is_shell_shebang(line: &str) -> bool {
    let Some(interpreter) = line.strip_prefix("#!") else {
        return false;
    };
    let mut words = interpreter.split_whitespace();
    let program = match words.next() {
        Some(env) if env.ends_with("/env") => words.next(),
        other => other,
    };
    program.is_some_and(|program| {
        let name = program.rsplit('/').next().unwrap_or(program);
        matches!(name, "sh" | "bash" | "dash")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_shebangs_are_recognised() {
        assert!(is_shell_shebang("#!/bin/sh"));
        assert!(is_shell_shebang("#!/usr/bin/env bash"));
        assert!(is_shell_shebang("#!/bin/bash -e"));
        assert!(!is_shell_shebang("#!/usr/bin/env python3"));
        assert!(!is_shell_shebang("# just a comment"));
    }
}

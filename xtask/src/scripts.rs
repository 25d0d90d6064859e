//! `cargo xtask scripts`: shellcheck every shell script, validate the
//! Vagrantfile, lint the GitHub workflows with actionlint (which also
//! shellchecks their `run:` scripts) and check `.gitlab-ci.yml` against
//! GitLab's schema with check-jsonschema.
//!
//! shellcheck is required everywhere. vagrant, actionlint and
//! check-jsonschema are required in CI, where `vagrant/provision.sh --ci`
//! installs them; elsewhere a missing one is reported as NOT CHECKED.

use anyhow::{bail, Context, Result};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to get the linters that CI requires.
const INSTALL_HINT: &str = "install with sudo bash vagrant/provision.sh --ci";

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
    validate_vagrantfile(root)?;
    lint_workflows(root)?;
    check_gitlab_ci(root)
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
        Err(error) if error.kind() == ErrorKind::NotFound && !in_ci() => {
            println!("NOT CHECKED: vagrant validate (vagrant is not installed here; CI runs it)");
            Ok(())
        }
        Err(error) => Err(error).context("running vagrant validate"),
    }
}

/// actionlint on every workflow in .github/workflows. It runs shellcheck on
/// the `run:` scripts too, since shellcheck is on the PATH (see `check`).
fn lint_workflows(root: &Path) -> Result<()> {
    let workflows = workflow_files(root)?;
    if workflows.is_empty() {
        println!("actionlint: no workflow in .github/workflows");
        return Ok(());
    }
    let mut command = Command::new("actionlint");
    command.arg("-no-color").args(&workflows);
    let names: Vec<String> = workflows
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    if run_linter(root, "actionlint", command)? {
        println!("actionlint: {} clean", names.join(", "));
    }
    Ok(())
}

/// `.gitlab-ci.yml` against the GitLab CI schema that check-jsonschema
/// ships (no download).
fn check_gitlab_ci(root: &Path) -> Result<()> {
    let file = ".gitlab-ci.yml";
    if !root.join(file).is_file() {
        println!("check-jsonschema: no {file}");
        return Ok(());
    }
    let mut command = Command::new("check-jsonschema");
    // Not --quiet: it hides the errors too.
    command.args([
        "--color",
        "never",
        "--builtin-schema",
        "vendor.gitlab-ci",
        file,
    ]);
    if run_linter(root, "check-jsonschema", command)? {
        println!("check-jsonschema: {file} matches the GitLab CI schema");
    }
    Ok(())
}

/// Runs a linter from `root`: true when it passed, false when it is not
/// installed outside CI (after a NOT CHECKED notice), an error when it
/// found problems or, in CI, is missing.
fn run_linter(root: &Path, program: &str, mut command: Command) -> Result<bool> {
    match command.current_dir(root).status() {
        Ok(status) if status.success() => Ok(true),
        Ok(status) => bail!("{program} found problems ({status})"),
        Err(error) if error.kind() == ErrorKind::NotFound && !in_ci() => {
            println!("NOT CHECKED: {program} ({program} is not installed here; {INSTALL_HINT})");
            Ok(false)
        }
        Err(error) => Err(error).with_context(|| format!("running {program} ({INSTALL_HINT})")),
    }
}

/// The workflow files in .github/workflows, relative to `root`, sorted.
fn workflow_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = Path::new(".github").join("workflows");
    let entries = match std::fs::read_dir(root.join(&dir)) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = PathBuf::from(entry.file_name());
        if is_workflow_file(&name) && entry.path().is_file() {
            files.push(dir.join(name));
        }
    }
    files.sort();
    Ok(files)
}

/// GitHub reads workflows from `*.yml` and `*.yaml` files.
fn is_workflow_file(name: &Path) -> bool {
    name.extension()
        .is_some_and(|ext| ext == "yml" || ext == "yaml")
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

    #[test]
    fn workflow_files_are_yaml_files() {
        assert!(is_workflow_file(Path::new("grade.yml")));
        assert!(is_workflow_file(Path::new("release.yaml")));
        assert!(!is_workflow_file(Path::new("README.md")));
        assert!(!is_workflow_file(Path::new("yml")));
    }

    #[test]
    fn this_repository_has_its_grading_workflow() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask/ is in the workspace");
        let workflows = workflow_files(root).expect("listing .github/workflows");
        assert!(workflows.contains(&Path::new(".github/workflows").join("grade.yml")));
    }
}

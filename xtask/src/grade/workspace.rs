//! The grading workspace: a copy of the student's repository, built with a
//! target directory of its own, in which (with `--against REF`) every file
//! that decides a grade is REF's. The tamper check names the student's files
//! that differ from REF; putting REF's copies back means such an edit cannot
//! change the result.

use super::report::Reference;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use toml::Table;

/// What decides a grade: the tests and their kit (snapshots and the test
/// runner included), the solutions (linked into the later steps' crates and
/// tests), the tooling that runs them, cargo's configuration, the points,
/// and the CI files that call the grading.
pub const PROTECTED: [&str; 8] = [
    "tests",
    "solutions",
    "xtask",
    ".cargo",
    "Cargo.toml",
    "grading.toml",
    ".github/workflows/grade.yml",
    ".gitlab-ci.yml",
];

/// In each step crate, the file that tells the shared test file which
/// library to test (`use step_01_unshare_pid as lesson;`): it is compiled
/// into the tests.
const LESSON: &str = "lesson.rs";

/// The tables of a step crate's Cargo.toml that decide how its tests are
/// built: the acceptance test target and the crates it uses. The student
/// may change the rest ([dependencies], say).
const TEST_SECTIONS: [&str; 2] = ["test", "dev-dependencies"];

/// What a build and the acceptance tests need from the repository.
const COPIED: [&str; 8] = [
    ".cargo",
    "Cargo.toml",
    "Cargo.lock",
    "grading.toml",
    "solutions",
    "steps",
    "tests",
    "xtask",
];

#[derive(Debug)]
pub struct GradingWorkspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

/// Copies the repository `repo` to `base/workspace`, builds in
/// `base/target`, and with a reference puts REF's protected files back.
pub fn prepare(repo: &Path, base: &Path, against: Option<&Reference>) -> Result<GradingWorkspace> {
    let root = base.join("workspace");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    for entry in COPIED {
        let from = repo.join(entry);
        if from.exists() {
            crate::verify::copy_tree(&from, &root.join(entry))?;
        }
    }
    if let Some(reference) = against {
        put_back(repo, &root, &reference.commit)?;
    }
    Ok(GradingWorkspace {
        root,
        target: base.join("target"),
    })
}

/// The commit `name` (a tag, branch or hash) stands for in `repo`.
pub fn resolve(repo: &Path, name: &str) -> Result<Reference> {
    let commit = git(
        repo,
        &["rev-parse", "--verify", &format!("{name}^{{commit}}")],
    )
    .with_context(|| format!("--against {name}: no such commit in this repository"))?;
    Ok(Reference {
        name: name.to_string(),
        commit: commit.trim().to_string(),
    })
}

/// The protected files of `repo`'s working tree (committed or not) that
/// differ from `commit`, and the step crates whose test sections do.
pub fn tampered(repo: &Path, commit: &str) -> Result<Vec<String>> {
    let mut changed: Vec<String> = Vec::new();
    let mut diff = vec!["diff", "--name-only", "--no-renames", commit, "--"];
    diff.extend(PROTECTED);
    changed.extend(lines(&git(repo, &diff)?));
    let mut untracked = vec!["ls-files", "--others", "--exclude-standard", "--"];
    untracked.extend(PROTECTED);
    changed.extend(lines(&git(repo, &untracked)?));
    for step in steps_of(repo, commit)? {
        let manifest = format!("steps/{step}/Cargo.toml");
        let Ok(reference) = git(repo, &["show", &format!("{commit}:{manifest}")]) else {
            continue;
        };
        // A missing crate is not tampering: the step scores 0.
        let Ok(ours) = std::fs::read_to_string(repo.join(&manifest)) else {
            continue;
        };
        // Its [[test]] or [dev-dependencies] differ; the rest is the
        // student's to change. A manifest that does not parse is graded 0
        // for its step, not reported here.
        if let (Ok(ours), Ok(reference)) = (test_sections(&ours), test_sections(&reference)) {
            if ours != reference {
                changed.push(manifest);
            }
        }
        let lesson = format!("steps/{step}/{LESSON}");
        let reference = git(repo, &["show", &format!("{commit}:{lesson}")]).ok();
        let ours = std::fs::read_to_string(repo.join(&lesson)).ok();
        if reference.is_some() && ours.is_some() && reference != ours {
            changed.push(lesson);
        }
    }
    changed.sort();
    changed.dedup();
    Ok(changed)
}

/// Replaces the protected files of the copy `root` with `commit`'s, and
/// the test sections of its step crates' Cargo.toml with `commit`'s.
fn put_back(repo: &Path, root: &Path, commit: &str) -> Result<()> {
    let mut present = vec!["ls-tree", "--name-only", commit, "--"];
    present.extend(PROTECTED);
    let in_reference = lines(&git(repo, &present)?);
    for path in PROTECTED {
        remove(&root.join(path))?;
    }
    extract(repo, commit, &in_reference, root)?;
    for step in steps_of(repo, commit)? {
        let crate_dir = root.join("steps").join(&step);
        if !crate_dir.is_dir() {
            continue;
        }
        let lesson = format!("steps/{step}/{LESSON}");
        if let Ok(reference) = git(repo, &["show", &format!("{commit}:{lesson}")]) {
            write(&root.join(&lesson), &reference)?;
        }
        let manifest = format!("steps/{step}/Cargo.toml");
        if let Ok(reference) = git(repo, &["show", &format!("{commit}:{manifest}")]) {
            let path = root.join(&manifest);
            let ours = std::fs::read_to_string(&path).unwrap_or_default();
            // A manifest that does not parse stays as it is: its step
            // scores 0 for it.
            if let Ok(mended) = with_test_sections_of(&ours, &reference) {
                write(&path, &mended)?;
            }
        }
    }
    Ok(())
}

/// The steps `commit` has (the names of its `steps/NN-topic` directories).
pub fn steps_of(repo: &Path, commit: &str) -> Result<Vec<String>> {
    let listing = git(repo, &["ls-tree", "-d", "--name-only", commit, "steps/"])?;
    Ok(lines(&listing)
        .iter()
        .filter_map(|path| path.strip_prefix("steps/"))
        .map(str::to_string)
        .collect())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `git archive COMMIT PATHS | tar -x -C ROOT`.
fn extract(repo: &Path, commit: &str, paths: &[String], root: &Path) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar", commit, "--"])
        .args(paths)
        .current_dir(repo)
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(root)
        .stdin(archive.stdout.take().expect("piped"))
        .status()
        .context("running tar")?;
    let archived = archive.wait().context("waiting for git archive")?;
    if !archived.success() || !tar.success() {
        bail!("could not extract {} from {commit}", paths.join(", "));
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The test sections of a Cargo.toml, for comparison.
fn test_sections(manifest: &str) -> Result<Vec<Option<toml::Value>>> {
    let table: Table = toml::from_str(manifest).context("parsing a step's Cargo.toml")?;
    Ok(TEST_SECTIONS
        .iter()
        .map(|key| table.get(*key).cloned())
        .collect())
}

/// `ours` with its test sections replaced by those of `reference`.
fn with_test_sections_of(ours: &str, reference: &str) -> Result<String> {
    let mut table: Table = toml::from_str(ours).context("parsing a step's Cargo.toml")?;
    let reference: Table = toml::from_str(reference).context("parsing REF's Cargo.toml")?;
    for key in TEST_SECTIONS {
        match reference.get(key) {
            Some(value) => table.insert(key.to_string(), value.clone()),
            None => table.remove(key),
        };
    }
    Ok(toml::to_string(&table)?)
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = "[package]\nname = \"step-01-a\"\n\n[dependencies]\nanyhow = \"1\"\n\n\
        [dev-dependencies]\ntestkit = { path = \"../../tests/testkit\" }\n\n\
        [[test]]\nname = \"acceptance\"\npath = \"../../tests/01-a.rs\"\n";

    #[test]
    fn new_dependencies_are_the_students_business() {
        let ours = REFERENCE.replace("anyhow = \"1\"", "anyhow = \"1\"\nlibc = \"0.2\"");
        assert_eq!(
            test_sections(&ours).unwrap(),
            test_sections(REFERENCE).unwrap()
        );
    }

    #[test]
    fn another_test_file_is_tampering_and_is_put_back() {
        let ours = REFERENCE.replace("tests/01-a.rs", "steps/01-a/easy.rs");
        assert_ne!(
            test_sections(&ours).unwrap(),
            test_sections(REFERENCE).unwrap()
        );
        let mended = with_test_sections_of(&ours, REFERENCE).unwrap();
        assert_eq!(
            test_sections(&mended).unwrap(),
            test_sections(REFERENCE).unwrap()
        );
        assert!(mended.contains("anyhow"));
    }

    #[test]
    fn a_dev_dependency_added_by_the_student_is_removed() {
        let ours = REFERENCE.replace("[dev-dependencies]\n", "[dev-dependencies]\nfake = \"1\"\n");
        let mended = with_test_sections_of(&ours, REFERENCE).unwrap();
        assert!(!mended.contains("fake"), "{mended}");
    }
}

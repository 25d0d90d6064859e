//! `cargo xtask book`: build the book and check that it stands on its own.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Builds book/ with mdbook, then checks that every include was resolved and
/// that no page loads anything from the network (the book must work offline).
pub fn build(root: &Path) -> Result<()> {
    let book = root.join("book");
    let status = Command::new("mdbook")
        .arg("build")
        .arg(&book)
        .status()
        .context("running mdbook: is it installed? `vagrant/provision.sh` installs it")?;
    if !status.success() {
        bail!("mdbook build failed ({status})");
    }
    let mut problems = Vec::new();
    check_pages(&book.join("build"), &mut problems)?;
    if !problems.is_empty() {
        bail!("the built book has problems:\n  {}", problems.join("\n  "));
    }
    println!("book: built in {}", book.join("build").display());
    Ok(())
}

fn check_pages(dir: &Path, problems: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            check_pages(&path, problems)?;
        } else if path.extension().is_some_and(|ext| ext == "html") {
            let html = std::fs::read_to_string(&path)?;
            for problem in page_problems(&html) {
                problems.push(format!("{}: {problem}", path.display()));
            }
        }
    }
    Ok(())
}

/// What is wrong with one built page.
fn page_problems(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if html.contains("{{#include") || html.contains("{{#rustdoc_include") {
        problems.push("an {{#include}} was not resolved".into());
    }
    for remote in ["src=\"http", "src=\"//", "href=\"//"] {
        if html.contains(remote) {
            problems.push(format!("loads a remote resource ({remote}...)"));
        }
    }
    for line in html
        .lines()
        .filter(|line| line.contains("<link") && line.contains("href=\"http"))
    {
        problems.push(format!(
            "links a remote stylesheet or font: {}",
            line.trim()
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_scripts_and_fonts_are_problems() {
        assert!(page_problems(r#"<script src="https://cdn.example/x.js">"#).len() == 1);
        assert!(
            page_problems(r#"<link rel="stylesheet" href="https://fonts.example/a.css">"#).len()
                == 1
        );
        assert!(page_problems(r#"<script src="book.js"><a href="https://man7.org">"#).is_empty());
    }

    #[test]
    fn unresolved_includes_are_problems() {
        assert_eq!(page_problems("{{#include ../x.rs:anchor}}").len(), 1);
    }
}

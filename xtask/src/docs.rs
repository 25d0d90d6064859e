//! `cargo xtask docs`: the API docs of the crates the exercises call, nix
//! above all, built by rustdoc and served over HTTP, so that a browser can
//! read them without a network.
//!
//! What is documented: the crates.io dependencies of the student crates
//! (steps/*), and everything those depend on in turn (libc, bitflags, ...).
//! The workspace's own crates are left out on purpose. rustdoc publishes a
//! crate's source code next to its API, and step N's crate depends on the
//! solutions of the steps before it: documenting it would put the reference
//! code of those steps one click away. Students read their own crate in
//! their editor anyway.
//!
//! The docs are built on Linux only: nix hides its Linux API (clone, mount,
//! pivot_root, ...) on other systems, so docs built on macOS or Windows
//! would lack the very functions the workshop uses.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The student crates: their dependencies are what the docs cover.
const STUDENT_CRATES: &str = "step-*";

/// Builds the docs and, with `serve`, serves them on `address` until Ctrl-C.
/// Without `serve`, prints the path of the index page.
pub fn run(root: &Path, serve: bool, address: &str) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(
            "the API docs must be built on Linux: on {} nix leaves out its Linux API \
             (clone, mount, pivot_root, ...). Build and serve them in the workshop VM: \
             `vagrant ssh`, then `cargo xtask docs --address 0.0.0.0:3001`, and open \
             http://localhost:3001/ on this computer.",
            std::env::consts::OS
        );
    }
    let target_dir = crate::target_dir(root);
    let crates = crates_the_steps_use(root)?;
    build(root, &target_dir, &crates)?;
    let doc_dir = target_dir.join("doc");
    let index = write_index(&doc_dir, &crates)?;
    if !serve {
        println!("{}", index.display());
        return Ok(());
    }
    serve_dir(&doc_dir, address)
}

// ------------------------------------------------------------------ building

/// A package from crates.io, as Cargo.lock pins it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Package {
    name: String,
    version: String,
}

impl Package {
    /// How cargo names exactly this package: `nix@0.32.0`.
    fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The directory rustdoc writes the crate to: a crate's name has `_`
    /// where its package's name has `-`.
    fn doc_dir_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// The crates.io packages the student crates depend on directly.
fn crates_the_steps_use(root: &Path) -> Result<Vec<Package>> {
    let output = crate::cargo_command(root)
        .args(["tree", "--package", STUDENT_CRATES, "--edges", "normal"])
        .args(["--depth", "1", "--prefix", "depth", "--format", "{p}"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("`cargo tree` failed ({})", output.status);
    }
    let packages = direct_registry_dependencies(&String::from_utf8_lossy(&output.stdout));
    if packages.is_empty() {
        bail!("`cargo tree` found no crates.io dependencies of the {STUDENT_CRATES} crates");
    }
    Ok(packages)
}

/// Reads the output of `cargo tree --depth 1 --prefix depth --format {p}`.
/// Its depth-1 lines name the dependencies: `1nix v0.32.0`, or
/// `1nix v0.32.0 (*)` when listed before. A dependency followed by a path,
/// `1solution-01-unshare-pid v0.1.0 (/work/solutions/01-unshare-pid)`, is a
/// crate of the workspace, and stays out.
fn direct_registry_dependencies(tree: &str) -> Vec<Package> {
    let mut packages = BTreeSet::new();
    for line in tree.lines() {
        let Some(entry) = line.strip_prefix('1') else {
            continue;
        };
        let mut words = entry.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let from_a_path = words.next().is_some_and(|source| source.starts_with("(/"));
        if !from_a_path {
            packages.insert(Package {
                name: name.to_string(),
                version: version.trim_start_matches('v').to_string(),
            });
        }
    }
    packages.into_iter().collect()
}

/// Runs `cargo doc` for `crates`. cargo documents their dependencies too, and
/// gives nix the features the workspace turns on, so the docs show what the
/// steps can call.
fn build(root: &Path, target_dir: &Path, crates: &[Package]) -> Result<()> {
    let names: Vec<&str> = crates.iter().map(|package| package.name.as_str()).collect();
    eprintln!(
        "docs: documenting {} and their dependencies (the first time takes a minute)",
        names.join(", ")
    );
    let mut command = crate::cargo_command(root);
    command.arg("doc").arg("--target-dir").arg(target_dir);
    for package in crates {
        command.args(["--package", &package.spec()]);
    }
    let status = command.status().context("running cargo doc")?;
    if !status.success() {
        bail!("`cargo doc` failed ({status})");
    }
    Ok(())
}

/// Writes doc/index.html, the page `/` shows: stable rustdoc writes one page
/// per crate and no page that lists them.
fn write_index(doc_dir: &Path, used: &[Package]) -> Result<PathBuf> {
    let used_dirs: Vec<String> = used.iter().map(Package::doc_dir_name).collect();
    let others: Vec<String> = documented_crates(doc_dir)?
        .into_iter()
        .filter(|name| !used_dirs.contains(name))
        .collect();
    let path = doc_dir.join("index.html");
    fs::write(&path, index_html(used, &others))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The crates documented in `doc_dir`: each is a directory with an
/// index.html. (src/ holds the source pages, and is not a crate.)
fn documented_crates(doc_dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries =
        fs::read_dir(doc_dir).with_context(|| format!("listing {}", doc_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", doc_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "src" && entry.path().join("index.html").is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The index page: the crates the steps use first, then the rest. (Writing
/// to a String cannot fail, hence the ignored results of `writeln!`.)
fn index_html(used: &[Package], others: &[String]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>API docs of the tara workshop</title>\n\
         <style>body { font-family: sans-serif; max-width: 44em; margin: 2em auto; \
         padding: 0 1em; line-height: 1.5; }</style>\n</head>\n<body>\n\
         <h1>API docs of the tara workshop</h1>\n\
         <p>The crates the steps use, documented for Linux with the features the \
         workshop turns on:</p>\n<ul>\n",
    );
    for package in used {
        let _ = writeln!(
            html,
            "<li><a href=\"{dir}/index.html\">{name}</a> {version}</li>",
            dir = escape_html(&package.doc_dir_name()),
            name = escape_html(&package.name),
            version = escape_html(&package.version),
        );
    }
    html.push_str("</ul>\n");
    if !others.is_empty() {
        html.push_str("<p>And the crates they depend on:</p>\n<ul>\n");
        for name in others {
            let name = escape_html(name);
            let _ = writeln!(html, "<li><a href=\"{name}/index.html\">{name}</a></li>");
        }
        html.push_str("</ul>\n");
    }
    html.push_str(
        "<p>Every page has a search box. Links into the standard library lead to \
         doc.rust-lang.org, online; for std offline, run <code>rustup doc --std</code> \
         on your computer.</p>\n</body>\n</html>\n",
    );
    html
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// ------------------------------------------------------------------- serving

/// Serves the files beneath `doc_dir` on `address` until Ctrl-C, with
/// Python's standard static file server: it answers GET and HEAD, sends the
/// right content types and never serves a file outside its directory.
/// (Every supported system and the VM have python3; provision.sh installs it.)
fn serve_dir(doc_dir: &Path, address: &str) -> Result<()> {
    let address: SocketAddr = address.parse().with_context(|| {
        format!("--address takes IP:PORT, for example 0.0.0.0:3001, not {address:?}")
    })?;
    eprintln!("{}", serving_message(address));
    let status = std::process::Command::new("python3")
        .args(["-m", "http.server", "--bind"])
        .arg(address.ip().to_string())
        .arg("--directory")
        .arg(doc_dir)
        .arg(address.port().to_string())
        .stdin(Stdio::null())
        .status()
        .context("starting python3 -m http.server (install python3)")?;
    if !status.success() && status.code().is_some() {
        bail!(
            "python3 -m http.server stopped ({status}): is port {} taken?",
            address.port()
        );
    }
    Ok(())
}

fn serving_message(local: SocketAddr) -> String {
    let port = local.port();
    if local.ip().is_unspecified() {
        format!(
            "docs: serving on port {port} of every interface: http://localhost:{port}/ \
             (from your computer too, through the VM's forwarded port). Ctrl-C stops."
        )
    } else {
        format!("docs: serving on http://{local}/ (Ctrl-C stops)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crates_io_dependencies_are_documented() {
        let tree = "0step-01-unshare-pid v0.1.0 (/w/steps/01-unshare-pid)\n\
                    1anyhow v1.0.105\n1clap v4.6.9\n1nix v0.32.0\n\n\
                    0step-02-mount-ns v0.1.0 (/w/steps/02-mount-ns)\n\
                    1anyhow v1.0.105\n1clap v4.6.9 (*)\n1nix v0.32.0 (*)\n\
                    1solution-01-unshare-pid v0.1.0 (/w/solutions/01-unshare-pid)\n";
        let names: Vec<String> = direct_registry_dependencies(tree)
            .iter()
            .map(Package::spec)
            .collect();
        assert_eq!(names, ["anyhow@1.0.105", "clap@4.6.9", "nix@0.32.0"]);
    }

    #[test]
    fn the_index_links_every_crate() {
        let used = [Package {
            name: "cfg-if".into(),
            version: "1.0.5".into(),
        }];
        let html = index_html(&used, &["libc".into()]);
        assert!(
            html.contains("<a href=\"cfg_if/index.html\">cfg-if</a> 1.0.5"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"libc/index.html\">libc</a>"),
            "{html}"
        );
    }

    #[test]
    fn the_message_says_where_to_look() {
        let everywhere: SocketAddr = "0.0.0.0:3001".parse().unwrap();
        assert!(serving_message(everywhere).contains("http://localhost:3001/"));
        let local: SocketAddr = "127.0.0.1:3001".parse().unwrap();
        assert!(serving_message(local).contains("http://127.0.0.1:3001/"));
    }
}

//! Debian packages, downloaded with apt and unpacked without installing
//! them: nothing outside the cache directory changes, and no root is needed.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where unpacked packages keep their shared libraries (kernel-test only
/// runs on x86_64: the kernels it boots are amd64).
const LIBRARY_DIRS: [&str; 2] = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];

/// The package that the meta-package `meta` depends on, in the version apt
/// would install: `linux-image-amd64` -> `linux-image-6.1.0-57-amd64`.
pub fn resolve_meta_package(meta: &str) -> Result<String> {
    let output = Command::new("apt-cache")
        .args(["show", "--no-all-versions", meta])
        .output()
        .context("running apt-cache (kernel-test needs Debian's apt)")?;
    let show = String::from_utf8_lossy(&output.stdout);
    match first_dependency(&show) {
        Some(package) if output.status.success() => Ok(package),
        _ => bail!(
            "apt does not know the package {meta}: run `apt-get update` (apt-cache said: {})",
            last_line(&output.stderr)
        ),
    }
}

/// The first package of the `Depends:` field of `apt-cache show`.
fn first_dependency(show: &str) -> Option<String> {
    let depends = show
        .lines()
        .find_map(|line| line.strip_prefix("Depends:"))?;
    let first = depends.split([',', '|']).next()?.trim();
    let name = first.split_whitespace().next()?;
    Some(name.to_string())
}

/// Unpacks `packages` into `dir`, downloading them into `downloads` first,
/// unless `dir` is already there: a second run downloads nothing.
pub fn unpack(packages: &[String], downloads: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let debs = download(packages, downloads)?;
    // Unpack next to the final place, then rename: an interrupted run never
    // leaves a half-unpacked directory that a later run would trust.
    let partial = dir.with_extension("partial");
    remove_if_present(&partial)?;
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for deb in debs {
        let status = Command::new("dpkg-deb")
            .arg("--extract")
            .arg(&deb)
            .arg(&partial)
            .status()
            .context("running dpkg-deb")?;
        if !status.success() {
            bail!("dpkg-deb could not unpack {} ({status})", deb.display());
        }
    }
    std::fs::rename(&partial, dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))
}

/// The .deb files of `packages` in `downloads`; `apt-get download` fetches
/// those that a previous run did not, in one go.
fn download(packages: &[String], downloads: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    for package in packages {
        if downloaded(package, downloads)?.is_none() {
            missing.push(package.as_str());
        }
    }
    if !missing.is_empty() {
        std::fs::create_dir_all(downloads)
            .with_context(|| format!("creating {}", downloads.display()))?;
        println!(
            "kernel-test: downloading from Debian: {}",
            missing.join(" ")
        );
        let output = Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(downloads)
            .output()
            .context("running apt-get download")?;
        if !output.status.success() {
            bail!(
                "downloading the Debian package(s) {} failed: apt-get said: {}",
                missing.join(" "),
                last_line(&output.stderr)
            );
        }
    }
    packages
        .iter()
        .map(|package| {
            downloaded(package, downloads)?
                .with_context(|| format!("apt-get download left no .deb of {package}"))
        })
        .collect()
}

/// apt-get names a download NAME_VERSION_ARCH.deb.
fn downloaded(package: &str, downloads: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(downloads) else {
        return Ok(None);
    };
    let prefix = format!("{package}_");
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", downloads.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// A program of a Debian package: the installed one when it is on the PATH,
/// else one unpacked from the package (and the libraries it lacks) into the
/// cache and run from there.
#[derive(Debug)]
pub struct Program {
    /// The executable.
    pub path: PathBuf,
    /// The name it is started under: multi-call binaries (kmod) look at it.
    arg0: Option<&'static str>,
    /// The unpacked packages, when not installed.
    pub unpacked: Option<PathBuf>,
}

/// Where to find one program.
#[derive(Debug, Clone, Copy)]
pub struct ProgramSource {
    /// Its name on the PATH.
    pub name: &'static str,
    /// The Debian package that ships it.
    pub package: &'static str,
    /// The file to run in the unpacked package.
    pub path_in_package: &'static str,
}

impl Program {
    /// Finds `source.name` on the PATH, or unpacks its package into
    /// `tools/PACKAGE`, downloading into `downloads`.
    pub fn find_or_unpack(source: ProgramSource, downloads: &Path, tools: &Path) -> Result<Self> {
        let arg0 = Some(source.name);
        if let Some(path) = on_path(source.name) {
            return Ok(Program {
                path,
                arg0,
                unpacked: None,
            });
        }
        let dir = tools.join(source.package);
        if !dir.exists() {
            let packages = packages_apt_would_install(source.package)?;
            println!(
                "kernel-test: {} is not installed: using Debian's package {}, unpacked into {}",
                source.name,
                source.package,
                dir.display()
            );
            unpack(&packages, downloads, &dir)?;
        }
        Ok(Program {
            path: dir.join(source.path_in_package),
            arg0,
            unpacked: Some(dir),
        })
    }

    /// A command that runs the program; an unpacked one finds its libraries
    /// with LD_LIBRARY_PATH.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        if let Some(name) = self.arg0 {
            std::os::unix::process::CommandExt::arg0(&mut command, name);
        }
        if let Some(dir) = &self.unpacked {
            let mut paths = OsString::new();
            for (index, lib) in LIBRARY_DIRS.iter().enumerate() {
                if index > 0 {
                    paths.push(":");
                }
                paths.push(dir.join(lib));
            }
            command.env("LD_LIBRARY_PATH", paths);
        }
        command
    }
}

/// `name` in the PATH, or in the sbin directories a user's PATH may lack.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The packages `apt-get install PACKAGE` would install here: the package
/// and the dependencies this system lacks. Asked with --simulate, so this
/// works even when the real install would be refused (for example, it would
/// remove a newer package from backports) and needs no root.
fn packages_apt_would_install(package: &str) -> Result<Vec<String>> {
    let output = Command::new("apt-get")
        .args(["install", "--simulate", "--no-install-recommends", package])
        .env("LC_ALL", "C")
        .output()
        .context("running apt-get install --simulate")?;
    let packages = simulated_installs(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() || packages.is_empty() {
        bail!(
            "apt cannot tell which packages {package} needs: apt-get said: {}",
            last_line(&output.stderr)
        );
    }
    Ok(packages)
}

/// The `Inst NAME (...)` lines of `apt-get install --simulate`.
fn simulated_installs(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The last non-empty line a command printed: apt's error comes last.
fn last_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("(nothing)")
        .trim()
        .to_string()
}

pub fn remove_if_present(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_package_names_the_kernel_first() {
        let show = "Package: linux-image-amd64\nVersion: 6.1.192-3\n\
                    Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nDescription: x\n";
        assert_eq!(
            first_dependency(show).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        let alternatives = "Depends: a (>= 1) | b, c\n";
        assert_eq!(first_dependency(alternatives).as_deref(), Some("a"));
        assert_eq!(first_dependency("Package: x\n"), None);
    }

    #[test]
    fn a_simulation_lists_what_would_be_installed() {
        let simulation = "Reading package lists...\n\
                          Remv qemu-utils [1:10.0.2]\n\
                          Inst libfdt1 (1.6.1-4+b1 Debian:12 [amd64])\n\
                          Inst qemu-system-x86 (1:7.2+dfsg-7 Debian:12 [amd64])\n\
                          Conf libfdt1 (1.6.1-4+b1 Debian:12 [amd64])\n";
        assert_eq!(
            simulated_installs(simulation),
            ["libfdt1", "qemu-system-x86"]
        );
    }

    #[test]
    fn apt_errors_come_last() {
        assert_eq!(
            last_line(b"W: a warning\nE: Unable to locate package nope\n\n"),
            "E: Unable to locate package nope"
        );
        assert_eq!(last_line(b""), "(nothing)");
    }
}

//! Maintainer and instructor tooling: `cargo xtask --help`.

mod bench;
mod book;
mod docs;
mod grade;
mod host_cgroups;
mod host_network;
mod kernel;
mod libtest;
mod progress;
mod scripts;
mod steps;
mod verify;
mod vm;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tooling of the tara workshop. It runs as you; the test binaries it starts
/// are re-run as root by the workspace's runner (tests/as-root).
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Generate the student crates steps/NN-topic from solutions/NN-topic
    Steps {
        /// Do not write: fail, naming the file, when steps/ is stale
        #[arg(long)]
        check: bool,
    },
    /// Prove the acceptance tests mean something: each passes on the
    /// solution and fails on the unsolved starter
    Verify {
        /// Only these steps (for example 01 or 01-unshare-pid); all by default
        #[arg(value_name = "STEP")]
        only: Vec<String>,
    },
    /// Build the book and check it works offline
    Book,
    /// Shellcheck every shell script, validate the Vagrantfile, and lint the
    /// CI files (actionlint, check-jsonschema)
    Scripts,
    /// Run a cargo command inside the workshop VM, from the host:
    /// `cargo xtask vm test -p step-01-unshare-pid`
    #[command(trailing_var_arg = true, allow_hyphen_values = true)]
    Vm {
        /// The cargo command and its arguments
        #[arg(required = true, value_name = "CARGO-ARGS")]
        cargo_args: Vec<String>,
    },
    /// Run the solutions' unit and acceptance tests (and testkit's) on other
    /// kernels under qemu: Debian's 6.1 and 6.12, cgroup v2 only
    KernelTest {
        /// Which kernel: 6.1, 6.12 or all
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Boot with the kernel's own defaults instead of doing what systemd
        /// does at boot (sysctl --system, mount --make-rshared /)
        #[arg(long)]
        raw: bool,
        /// Only these steps (for example 01 or 01-unshare-pid); all by default
        #[arg(value_name = "STEP")]
        only: Vec<String>,
    },
    /// Build the API docs of the crates the steps use (nix and the others,
    /// with their dependencies) and serve them on http://localhost:3001, for
    /// reading offline
    Docs {
        /// Only build them; print the path of their index page
        #[arg(long)]
        no_serve: bool,
        /// The address to serve on (in the VM: 0.0.0.0:3001, which the VM
        /// forwards to the host)
        #[arg(long, default_value = "127.0.0.1:3001")]
        address: String,
    },
    /// Measure each step's `run` against the floor (unshare) and the real
    /// runtimes crun and runc, side by side, with hyperfine; needs root
    /// (runs itself again with sudo)
    Bench {
        /// Few runs of every row (debug builds): a check that the bench
        /// works, not numbers to publish
        #[arg(long)]
        quick: bool,
        /// Also write the book's page book/src/benchmarks.md and its chart
        #[arg(long)]
        book: bool,
        /// Only these steps (for example 04 or 05-cgroups); all by default
        #[arg(value_name = "STEP")]
        only: Vec<String>,
    },
    /// Grade the student crates: run each step's acceptance tests against
    /// step-NN-topic in a fresh copy of the repository, and report tests
    /// passed, points and why each failing test failed. Exit codes: 0 the
    /// report was made, 1 grading could not run, 2 INVALID (files that decide
    /// the grade differ from --against), 3 below --min-score
    Grade(grade::Options),
    /// Where you stand: for each step, how many acceptance tests your crate
    /// passes, the first failing test of the current step and the exercise
    /// to look at next, with its hint
    Progress {
        /// Only these steps (for example 02 or 02-mount-ns); all by default
        #[arg(value_name = "STEP")]
        only: Vec<String>,
        /// Run every step's tests again, even those unchanged since last time
        #[arg(long)]
        no_cache: bool,
    },
    /// Everything CI checks: fmt, clippy, scripts, steps --check, tests,
    /// verify, kernel-test, bench --quick, book; and that the machine's
    /// own network namespace (interfaces, addresses, routes, iptables and
    /// nft rules, forwarding sysctls) is the same after them as before
    Test,
}

fn main() {
    // A mistake on the command line exits with 1, like any other failure:
    // clap's usual 2 would read as INVALID to a script calling `grade`.
    let cli = Cli::try_parse().unwrap_or_else(|error| {
        let _ = error.print();
        std::process::exit(if error.use_stderr() { 1 } else { 0 })
    });
    let root = workspace_root();
    let result = match cli.command {
        Task::Steps { check } => steps::run(&root, check),
        Task::Verify { only } => verify::run(&root, &only).map(drop),
        Task::Book => book::build(&root),
        Task::Scripts => scripts::check(&root),
        Task::Vm { cargo_args } => vm::run(&root, &cargo_args).map(|code| std::process::exit(code)),
        Task::KernelTest { kernel, raw, only } => kernel::run(&root, &kernel, raw, &only),
        Task::Docs { no_serve, address } => docs::run(&root, !no_serve, &address),
        Task::Bench { quick, book, only } => {
            bench::run(&root, &bench::Options { quick, book, only })
        }
        Task::Grade(options) => {
            let repo = options.repository(&root);
            grade::run(&repo, &options).map(|code| std::process::exit(code))
        }
        Task::Progress { only, no_cache } => progress::run(&root, &only, !no_cache),
        Task::Test => test_everything(&root),
    };
    if let Err(error) = result {
        eprintln!("xtask: {error:#}");
        std::process::exit(1);
    }
}

/// The maintainers' single command, run by CI after provisioning. The
/// tests of the network steps must leave the machine's own network alone,
/// and those of step 05 no cgroup: both are read before the first check and
/// compared after the last, whether the checks passed or not.
fn test_everything(root: &Path) -> Result<()> {
    let network = host_network::Snapshot::take()?;
    for (what, why) in network.unreadable() {
        println!("xtask test: `{what}` is not checked: {why}");
    }
    let cgroups = host_cgroups::Snapshot::take()?;
    let checks = run_every_check(root);
    section("the machine's network namespace is as the checks found it, and no cgroup is left");
    let unchanged = host_network::Snapshot::take()
        .and_then(|after| host_network::ensure_unchanged(&network, &after))
        .and_then(|()| host_cgroups::Snapshot::take())
        .and_then(|after| host_cgroups::ensure_none_left(&cgroups, &after));
    match (checks, unchanged) {
        (Ok(verified), Ok(())) => {
            println!("\nxtask test: all checks passed ({verified} acceptance tests verified)");
            Ok(())
        }
        (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(error),
        (Err(checks), Err(network)) => {
            eprintln!("xtask: {network:#}");
            Err(checks)
        }
    }
}

/// Every check of `cargo xtask test`, in order, stopping at the first that
/// fails; returns how many acceptance tests verify proved.
fn run_every_check(root: &Path) -> Result<usize> {
    section("cargo fmt --check");
    cargo(root, &["fmt", "--all", "--check"])?;
    section("cargo clippy -D warnings");
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    section("shell scripts, the Vagrantfile and the CI files");
    scripts::check(root)?;
    section("steps/ is generated from solutions/");
    steps::run(root, true)?;
    section("unit and acceptance tests of the solutions, testkit and xtask (grading included)");
    cargo(root, &["test", "--workspace", "--exclude", "step-*"])?;
    section("verify: every acceptance test passes on its solution and fails on its starter");
    let verified = verify::run(root, &[])?;
    section("kernel-test: the tests on Debian's 6.1 and 6.12 kernels, cgroup v2 only (qemu)");
    kernel::run(root, "all", false, &[])?;
    section("bench --quick: every row of the benchmarks runs");
    bench::run(
        root,
        &bench::Options {
            quick: true,
            ..bench::Options::default()
        },
    )?;
    section("book");
    book::build(root)?;
    Ok(verified)
}

fn section(title: &str) {
    println!("\n==> {title}");
}

/// Whether xtask runs as root (bench, grade and the host snapshot ask).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The last `count` lines of `text`: the end of a tool's output, where its
/// error is.
fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The workspace root: xtask's manifest lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The workspace's target directory, where cargo builds: CARGO_TARGET_DIR
/// (the VM sets it), which cargo takes relative to the directory it was
/// started in, and so do we; otherwise target/ in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            std::path::absolute(PathBuf::from(dir)).unwrap_or_else(|_| root.join("target"))
        }
        _ => root.join("target"),
    }
}

/// A cargo command in `root`: the cargo that runs xtask (CARGO), so that a
/// rustup toolchain override applies to the builds xtask starts too.
fn cargo_command(root: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}

/// Runs cargo with `args` in `root`, failing when it fails.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = cargo_command(root)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

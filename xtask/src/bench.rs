//! `cargo xtask bench`: how much does isolation cost, and how do the
//! steps compare with the real runtimes?
//!
//! Every row starts a container that runs `/bin/true` and waits for it to
//! end, so what is measured is the runtime's own work: cloning into new
//! namespaces, mounting, making cgroups, wiring a network, the exec, and
//! the cleanup. In one run, side by side:
//!
//! 1. the solutions are built (release; `--quick` takes the debug builds
//!    that `cargo test` made, since it only checks that the bench works);
//! 2. the lab is made (lab.rs): a network namespace every command runs in,
//!    a busybox rootfs, the steps' images, OCI bundles for crun and runc,
//!    the CNI configuration;
//! 3. each row runs under GNU time for its peak memory, which also shows a
//!    failing row's error before anything is timed;
//! 4. hyperfine times every row;
//! 5. the lab is removed (also on an error or Ctrl-C), the table printed,
//!    and with `--book` the page book/src/benchmarks.md and its chart
//!    written.
//!
//! It needs root. Run as a user, it builds as that user and then runs
//! itself again with sudo, and gives the files it wrote back to the user.

mod cgroups;
mod chart;
mod lab;
mod machine;
mod measure;
mod oci;
mod report;
mod rootfs;
mod rows;

use anyhow::{bail, Context, Result};
use lab::{Env, Lab};
use machine::Machine;
use measure::Runs;
use rows::Row;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the environment of the bench's second run, as root: the
/// solutions are built already.
const BUILT: &str = "TARA_BENCH_BUILT";

/// The book's page, and its chart.
const PAGE: &str = "book/src/benchmarks.md";
const CHART: &str = "book/src/images/benchmarks.svg";

/// What the bench runs, and the Debian package each comes from (the CNI
/// plugins where Debian and Ubuntu put them, lab::CNI_PLUGINS).
const TOOLS: [(&str, &str); 10] = [
    ("hyperfine", "hyperfine"),
    ("crun", "crun"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/bin/time", "time"),
    ("busybox", "busybox-static"),
    ("nsenter", "util-linux"),
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("iptables", "iptables"),
];

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Few runs of every row: a check that the bench works.
    pub quick: bool,
    /// Write the book's page and chart.
    pub book: bool,
    /// Only the rows of these steps (and the floor, and the runtimes they
    /// are compared with).
    pub only: Vec<String>,
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    if options.quick && options.book {
        bail!("--quick runs too few times for the book: run `cargo xtask bench --book` alone");
    }
    if options.book && !options.only.is_empty() {
        bail!("--book measures every step: leave out the step names");
    }
    check_tools()?;
    catch_interrupts();
    let steps = crate::verify::select_steps(&root.join("solutions"), &options.only)?;
    if std::env::var_os(BUILT).is_none() {
        build(root, &steps, options.quick)?;
    }
    if !crate::is_root() {
        return rerun_as_root();
    }
    let bench_dir = crate::target_dir(root).join("bench");
    let mut written = vec![bench_dir.clone()];
    let result = measure_as_root(root, &bench_dir, &steps, options, &mut written);
    give_back_to_invoking_user(&written);
    result
}

/// Fails with one line naming every missing tool and its package.
fn check_tools() -> Result<()> {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "bench: missing {}: run `sudo vagrant/provision.sh`, or apt-get install the packages",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `program` itself if it is a path, else the first of that name on the
/// PATH or in the system directories (as root sees them).
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.exists());
    found
}

/// Builds the steps' solutions: release for a real run, debug for
/// `--quick` (built already by `cargo test`, so it costs nothing).
fn build(root: &Path, steps: &[String], quick: bool) -> Result<()> {
    let mut args = vec!["build".to_string(), "--quiet".to_string()];
    if !quick {
        args.push("--release".into());
    }
    for step in steps {
        args.push("-p".into());
        args.push(format!("solution-{step}"));
    }
    println!(
        "bench: building {}",
        if quick { "(debug)" } else { "(release)" }
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::cargo(root, &args)
}

/// Each step's binary, by number ("01").
fn binaries(root: &Path, steps: &[String], quick: bool) -> BTreeMap<String, PathBuf> {
    let profile = if quick { "debug" } else { "release" };
    let dir = crate::target_dir(root).join(profile);
    steps
        .iter()
        .map(|step| {
            let number = step.split('-').next().unwrap_or(step).to_string();
            (number, dir.join(format!("solution-{step}")))
        })
        .collect()
}

/// Runs this command again as root, with sudo, its environment kept
/// (CARGO_TARGET_DIR among it).
fn rerun_as_root() -> Result<()> {
    let exe = std::env::current_exe().context("finding xtask's own executable")?;
    println!("bench: the measurements need root: running again with sudo");
    let status = Command::new("sudo")
        .arg("--preserve-env")
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(BUILT, "1")
        .status()
        .context("running sudo")?;
    if !status.success() {
        bail!("the bench failed as root ({status})");
    }
    Ok(())
}

/// Everything after the build, as root.
fn measure_as_root(
    root: &Path,
    bench_dir: &Path,
    steps: &[String],
    options: &Options,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let binaries = binaries(root, steps, options.quick);
    let runs = if options.quick {
        measure::QUICK
    } else {
        measure::FULL
    };
    remove_old_results(bench_dir)?;
    let mut lab = Lab::new(bench_dir)?;
    let mut machine = Machine::read(lab.layout.describe())?;
    println!("bench: preparing the lab (network namespace {})", lab.name);
    lab.prepare(&binaries)?;
    let selected: Vec<&str> = binaries.keys().map(String::as_str).collect();
    let rows: Vec<Row> = rows::all(&lab, &binaries)
        .into_iter()
        .filter(|row| row.steps.is_empty() || row.steps.iter().any(|s| selected.contains(s)))
        .collect();
    let notes = notes(&lab);
    for note in &notes {
        println!("bench: note: {note}");
    }
    let rss = peak_rss_of_each(&lab, &rows, runs)?;
    let timings = time_each(&lab, &rows, runs, bench_dir)?;
    let commands = shown_commands(root, &lab, &rows);
    lab.tear_down()?;
    machine.load_after = machine::load_average();

    let lines = report::lines(&rows, &timings, &rss)?;
    println!("\n{}", machine.describe());
    print!("{}", report::terminal_table(&lines));
    println!(
        "hyperfine's results: {}",
        bench_dir.join("hyperfine-*.json").display()
    );
    if options.quick {
        println!(
            "bench: --quick: debug builds, {} runs of each row: the numbers show that every row \
             works, not what it costs",
            runs.timed
        );
    }
    if options.book {
        let page = report::Page {
            machine: &machine,
            runs,
            notes: &notes,
            commands: &commands,
        };
        write_book(root, &lines, &page, written)?;
    }
    Ok(())
}

/// Removes the JSON files of an earlier run, which may have had other rows.
fn remove_old_results(bench_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(bench_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("hyperfine-") && name.ends_with(".json") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The peak RSS of each row (KiB), by label; one run at least per row, so
/// that a row that fails shows its error here.
fn peak_rss_of_each(lab: &Lab, rows: &[Row], runs: Runs) -> Result<BTreeMap<String, u64>> {
    println!(
        "bench: running each row {} time(s) under /usr/bin/time",
        runs.memory
    );
    let mut rss = BTreeMap::new();
    for row in rows {
        check_interrupted()?;
        let kib = measure::peak_rss(lab, row, runs.memory, &lab.scratch())?;
        println!(
            "  {:<32} peak RSS {:>6.1} MiB",
            row.label,
            kib as f64 / 1024.0
        );
        rss.insert(row.label.clone(), kib);
    }
    Ok(rss)
}

/// hyperfine's timings of every row. Each round runs one hyperfine per
/// environment the rows run in (crun's has its own view of the cgroups on
/// v1), every other round in reverse order.
fn time_each(
    lab: &Lab,
    rows: &[Row],
    runs: Runs,
    bench_dir: &Path,
) -> Result<Vec<measure::Timing>> {
    // Let the writes of the preparation reach the disk first: each run of
    // steps 03 to 05 syncs its store, and should not pay for them.
    // SAFETY: sync has no preconditions and cannot fail.
    unsafe { libc::sync() };
    let mut samples = Vec::new();
    for round in 1..=runs.rounds {
        let mut order: Vec<&Row> = rows.iter().collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for env in [Env::Lab, Env::CrunView] {
            check_interrupted()?;
            let group: Vec<&Row> = order
                .iter()
                .copied()
                .filter(|row| row.env() == env)
                .collect();
            if group.is_empty() {
                continue;
            }
            println!(
                "bench: round {round} of {}: timing {} rows with hyperfine",
                runs.rounds,
                group.len()
            );
            let json = bench_dir.join(format!("hyperfine-{}-{round}.json", env.name()));
            samples.extend(measure::time(lab, env, &group, runs, &json)?);
        }
    }
    Ok(measure::summarize(&samples))
}

/// What the reader should know about how this machine was measured.
fn notes(lab: &Lab) -> Vec<String> {
    let mut notes = Vec::new();
    if !lab.layout.v2_only {
        notes.push(
            "On this machine's cgroup v1, crun ran in a mount namespace of its own, made once \
             before hyperfine started (not timed), whose `/sys/fs/cgroup` is a tmpfs with only \
             the v1 hierarchies bind-mounted, each from the bench's own cgroup: crun refuses a \
             layout whose v2 hierarchy holds a controller beside the v1 ones, and it reads a \
             relative `cgroupsPath` from the top of each hierarchy."
                .to_string(),
        );
    }
    notes
}

/// Each row's label and command, with the lab's paths shortened for the
/// reader: `$WORK` for the lab's directory, `target/` for the target
/// directory, `PID` for the bench's process ID.
fn shown_commands(root: &Path, lab: &Lab, rows: &[Row]) -> Vec<(String, String)> {
    let target = crate::target_dir(root);
    let replacements = [
        (
            lab.work().to_string_lossy().into_owned(),
            "$WORK".to_string(),
        ),
        (format!("{}/", target.display()), "target/".to_string()),
        (lab.name.clone(), "tara-bench-PID".to_string()),
    ];
    rows.iter()
        .map(|row| {
            let mut command: Vec<String> = row.command.iter().map(|arg| quote(arg)).collect();
            for word in &mut command {
                for (long, short) in &replacements {
                    *word = word.replace(long.as_str(), short);
                }
            }
            (row.label.clone(), command.join(" "))
        })
        .collect()
}

/// Writes the generated part of the page, and the chart.
fn write_book(
    root: &Path,
    lines: &[report::Line],
    page: &report::Page,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = root.join(PAGE);
    let old =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let new = report::replace_generated(&old, &report::generated_part(lines, page))
        .with_context(|| format!("in {}", path.display()))?;
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
    let chart = root.join(CHART);
    std::fs::write(&chart, chart::svg(lines)?)
        .with_context(|| format!("writing {}", chart.display()))?;
    written.extend([path.clone(), chart.clone()]);
    println!("bench: wrote {} and {}", path.display(), chart.display());
    Ok(())
}

/// Run through sudo, the bench gives what it wrote to the user who ran
/// it, so that `cargo clean` and git work without root.
fn give_back_to_invoking_user(paths: &[PathBuf]) {
    let (Ok(uid), Ok(gid)) = (std::env::var("SUDO_UID"), std::env::var("SUDO_GID")) else {
        return;
    };
    for path in paths.iter().filter(|path| path.exists()) {
        let owner = format!("{uid}:{gid}");
        if let Err(error) = run_quietly(Command::new("chown").args(["-R", &owner]).arg(path)) {
            eprintln!("xtask bench: {error:#}");
        }
    }
}

/// `arg` as a shell word: as it is when it is plain, else single-quoted.
pub fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs `command` with its output captured; returns its standard output,
/// or fails with the end of what it said.
pub fn run_quietly(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !output.status.success() {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = said.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
        bail!("{shown} failed ({}):\n    {tail}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Set by SIGINT or SIGTERM (Ctrl-C): the bench stops at the next row, and
/// removes its lab.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C reaches every process of the terminal's foreground group:
/// hyperfine and what it runs end, the bench only takes note, so that it
/// can remove its lab. (The handler is not inherited across exec: the
/// programs the bench starts keep the default action.)
fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is zeroed, then filled.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_interrupt as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_and_others_are_quoted() {
        assert_eq!(quote("/usr/bin/true"), "/usr/bin/true");
        assert_eq!(
            quote("--cgroup-parent=tara-bench-7"),
            "--cgroup-parent=tara-bench-7"
        );
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn a_step_binary_is_found_by_its_number() {
        let steps = ["01-unshare-pid".to_string(), "05-cgroups".to_string()];
        let binaries = binaries(Path::new("/w"), &steps, true);
        let numbers: Vec<&str> = binaries.keys().map(String::as_str).collect();
        assert_eq!(numbers, ["01", "05"]);
        assert!(binaries["05"].ends_with("debug/solution-05-cgroups"));
    }
}

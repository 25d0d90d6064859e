//! `cargo xtask kernel-test`: the solutions' tests on other kernels.
//!
//! The students' VM runs Ubuntu's kernel with cgroup v2; CI runs on this
//! machine's kernel, with hybrid cgroup v1. A container runtime meets
//! kernel differences (pid_max, mount propagation, cgroup layouts), so this
//! command also runs the tests on Debian 12's kernels 6.1 and 6.12, booted
//! under qemu with cgroup v2 only:
//!
//! 1. build the test binaries on the host (`cargo test --no-run`);
//! 2. download each kernel from Debian (cached under target/kernel-test/),
//!    extract its uncompressed vmlinux and compute its module order;
//! 3. build an initramfs: busybox, the modules, and an /init (init.sh) that
//!    mounts the host's / read-only (with a tmpfs overlay) and the
//!    workspace read-write over 9p, at the same paths, then switch_roots;
//! 4. boot qemu (KVM when it works, emulation otherwise) with a script that
//!    runs each test binary as cargo would, and prints a marker line with
//!    the number of failed binaries before it powers the machine off;
//! 5. read the binaries' outputs and print a table per kernel.

mod debian;
mod initramfs;
mod linux;
mod qemu;
mod suite;

use anyhow::{bail, ensure, Context, Result};
use debian::{Program, ProgramSource};
use linux::{Kernel, Series, Tools};
use qemu::{Accel, Boot, Deadlines, Ending, Machine, Qemu, Share};
use std::path::{Path, PathBuf};
use std::time::Duration;
use suite::{GuestRun, Report, TestBinary};

/// The kernel's command line: the console on the first serial port; a
/// panic reboots at once (and qemu, with -no-reboot, exits); fewer
/// messages; no CPU-bug mitigations (slow under emulation, and nothing to
/// protect here); trust the CPU's random numbers, so that nothing waits
/// for entropy at boot.
const KERNEL_COMMAND_LINE: &str =
    "console=ttyS0 panic=-1 quiet mitigations=off random.trust_cpu=on";

/// Under emulation, the guest reaches /init in about 5 s on 2 cores.
const TCG_DEADLINES: Deadlines = Deadlines {
    init: Duration::from_secs(60),
    boot: Duration::from_secs(180),
    suite: Duration::from_secs(30 * 60),
};

/// With KVM, /init starts within a second or two; if it says nothing for
/// this long, KVM does not really work here (a nested VM may open /dev/kvm
/// and never run the guest) and the command falls back to emulation.
const KVM_DEADLINES: Deadlines = Deadlines {
    init: Duration::from_secs(15),
    ..TCG_DEADLINES
};

/// The longest one test binary may run in the guest before it is killed.
const BINARY_TIMEOUT_SECS: u64 = 10 * 60;

const DEPMOD: ProgramSource = ProgramSource {
    name: "depmod",
    package: "kmod",
    path_in_package: "bin/kmod",
};
const XZ: ProgramSource = ProgramSource {
    name: "xz",
    package: "xz-utils",
    path_in_package: "usr/bin/xz",
};
const ZSTD: ProgramSource = ProgramSource {
    name: "zstd",
    package: "zstd",
    path_in_package: "usr/bin/zstd",
};

/// Runs the tests of the steps in `only` (all when empty) on `kernel`
/// (6.1, 6.12 or all).
pub fn run(root: &Path, kernel: &str, raw: bool, only: &[String]) -> Result<()> {
    ensure!(
        cfg!(target_arch = "x86_64"),
        "kernel-test boots Debian's amd64 kernels: it runs on x86_64 hosts only"
    );
    let series = Series::parse_choice(kernel)?;
    let steps = crate::verify::select_steps(&root.join("solutions"), only)?;
    let cache = crate::target_dir(root).join("kernel-test");
    let downloads = cache.join("downloads");
    let tools_dir = cache.join("tools");

    let mut packages: Vec<String> = steps
        .iter()
        .map(|step| format!("solution-{step}"))
        .collect();
    packages.push("testkit".to_string());
    println!("kernel-test: building the tests of {}", packages.join(", "));
    let binaries = suite::build(root, &packages)?;

    let qemu = Qemu::find(&downloads, &tools_dir)?;
    let tools = Tools {
        depmod: Program::find_or_unpack(DEPMOD, &downloads, &tools_dir)?,
        xz: Program::find_or_unpack(XZ, &downloads, &tools_dir)?,
        zstd: Program::find_or_unpack(ZSTD, &downloads, &tools_dir)?,
    };
    // Everything that downloads comes first: a missing package fails the
    // command before any machine boots.
    let mut kernels = Vec::new();
    for series in series {
        let kernel = Kernel::prepare(series, &cache, &tools)?;
        let initramfs = initramfs::build(&kernel, &cache, &tools.xz)?;
        kernels.push((kernel, initramfs));
    }
    let mut accel = first_accel(&cache);
    let mut totals = (0, 0);
    let mut broken = Vec::new();
    for (kernel, initramfs) in &kernels {
        let test = KernelTest {
            root,
            cache: &cache,
            qemu: &qemu,
            kernel,
            initramfs,
            binaries: &binaries,
            raw,
        };
        let (passed, failed) = test.run(&mut accel)?;
        totals.0 += passed;
        totals.1 += failed;
        if failed > 0 {
            broken.push(kernel.series.name());
        }
    }
    // A closing line CI runners understand.
    println!("\nkernel-test: {} passed, {} failed", totals.0, totals.1);
    if !broken.is_empty() {
        bail!("tests failed on kernel {}", broken.join(" and "));
    }
    Ok(())
}

/// KVM when /dev/kvm opens and an earlier run did not find it broken on
/// this host kernel; emulation otherwise.
fn first_accel(cache: &Path) -> Accel {
    let broken = std::fs::read_to_string(cache.join("kvm-unusable")).unwrap_or_default();
    if qemu::kvm_available() && broken.trim() != host_release() {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One kernel's run of the tests.
struct KernelTest<'a> {
    root: &'a Path,
    cache: &'a Path,
    qemu: &'a Qemu,
    kernel: &'a Kernel,
    initramfs: &'a Path,
    binaries: &'a [TestBinary],
    raw: bool,
}

impl KernelTest<'_> {
    /// Boots the kernel, runs the tests and prints the table; returns how
    /// many tests passed and failed (a boot that fails counts as one).
    fn run(&self, accel: &mut Accel) -> Result<(usize, usize)> {
        let results =
            self.cache
                .join("runs")
                .join(format!("{}{}", self.kernel.series.name(), self.mode()));
        debian::remove_if_present(&results)?;
        std::fs::create_dir_all(&results)
            .with_context(|| format!("creating {}", results.display()))?;
        let marker = qemu::new_marker()?;
        let script = results.join("guest.sh");
        let guest = GuestRun {
            workspace: self.root,
            binaries: self.binaries,
            results: &results,
            marker: &marker,
            raw: self.raw,
            binary_timeout_secs: BINARY_TIMEOUT_SECS,
            busybox: &initramfs::busybox()?,
        };
        std::fs::write(&script, suite::guest_script(&guest))
            .with_context(|| format!("writing {}", script.display()))?;

        println!(
            "\n==> kernel {} ({}){}",
            self.kernel.series.name(),
            self.kernel.package,
            if self.raw {
                ", raw kernel defaults"
            } else {
                ""
            }
        );
        let boot = self.boot_with_fallback(accel, &script, &marker, &results)?;
        let failing_binaries = match boot.ending {
            Ending::Marker(code) => code,
            Ending::Exited(status) => {
                report_broken_boot(
                    &format!("qemu exited ({status}) before the tests ended"),
                    &results,
                );
                return Ok((0, 1));
            }
            Ending::TimedOut(what) => {
                report_broken_boot(&format!("{what}: qemu was killed"), &results);
                return Ok((0, 1));
            }
        };
        println!(
            "kernel {}: {}, booted in {}, tests ran in {}",
            self.kernel.series.name(),
            accel.name(),
            seconds(boot.boot_time),
            seconds(boot.suite_time)
        );
        let reports: Vec<(String, Report)> = self
            .binaries
            .iter()
            .map(|binary| (binary.label(), suite::read_report(binary, &results)))
            .collect();
        let (passed, failed) = print_reports(&reports);
        // The guest counted the binaries that exited non-zero: the files
        // must tell the same story.
        let failing_files = reports
            .iter()
            .filter(|(_, report)| report.failed > 0)
            .count();
        if usize::try_from(failing_binaries) != Ok(failing_files) {
            println!(
                "kernel-test: the guest counted {failing_binaries} failing test binaries, \
                 their outputs show {failing_files}"
            );
            return Ok((passed, failed.max(1)));
        }
        Ok((passed, failed))
    }

    fn mode(&self) -> &'static str {
        if self.raw {
            "-raw"
        } else {
            ""
        }
    }

    /// Boots with `accel`; when KVM shows no sign of life, remembers that
    /// (for this host kernel) and boots again with emulation.
    fn boot_with_fallback(
        &self,
        accel: &mut Accel,
        script: &Path,
        marker: &str,
        results: &Path,
    ) -> Result<Boot> {
        let boot = self.boot(*accel, script, marker, results)?;
        let silent =
            matches!(&boot.ending, Ending::TimedOut(what) if what.contains(qemu::INIT_STARTED));
        // qemu may also give up at once: a /dev/kvm that opens but refuses
        // the CPU's registers ("failed to set MSR") makes it abort.
        let died_booting = matches!(boot.ending, Ending::Exited(_)) && boot.boot_time.is_none();
        if *accel == Accel::Kvm && (silent || died_booting) {
            let why = if silent {
                format!("did not start the guest within {:?}", KVM_DEADLINES.init)
            } else {
                "stopped qemu before the guest booted (see qemu.log)".to_string()
            };
            println!("kernel-test: KVM {why}: using emulation (TCG) from now on");
            let note = self.cache.join("kvm-unusable");
            std::fs::write(&note, host_release())
                .with_context(|| format!("writing {}", note.display()))?;
            *accel = Accel::Tcg;
            return self.boot(*accel, script, marker, results);
        }
        Ok(boot)
    }

    fn boot(&self, accel: Accel, script: &Path, marker: &str, results: &Path) -> Result<Boot> {
        let shares = self.shares()?;
        let mut command_line = format!("{KERNEL_COMMAND_LINE} kernel_test_shares=");
        let writable: Vec<String> = shares
            .iter()
            .filter(|share| share.writable)
            .map(|share| format!("{}={}", share.tag, share.path.display()))
            .collect();
        command_line.push_str(&writable.join(","));
        command_line.push_str(&format!(" kernel_test_script={}", script.display()));
        let machine = Machine {
            accel,
            cpus: std::thread::available_parallelism().map_or(2, usize::from),
            vmlinux: &self.kernel.vmlinux,
            initramfs: self.initramfs,
            kernel_command_line: command_line,
            shares: &shares,
        };
        let deadlines = match accel {
            Accel::Kvm => KVM_DEADLINES,
            Accel::Tcg => TCG_DEADLINES,
        };
        println!("    booting with {}", accel.name());
        qemu::boot(
            self.qemu,
            &machine,
            marker,
            deadlines,
            &results.join("console.log"),
            &results.join("qemu.log"),
        )
    }

    /// The host's / (read-only), and read-write the workspace and the target
    /// directory when it lies elsewhere (CARGO_TARGET_DIR).
    fn shares(&self) -> Result<Vec<Share>> {
        let mut writable = vec![self.root.to_path_buf()];
        let target = crate::target_dir(self.root);
        let target = target.canonicalize().unwrap_or(target);
        if !target.starts_with(self.root) {
            writable.push(target);
        }
        let mut shares = vec![Share {
            tag: "hostroot".into(),
            path: PathBuf::from("/"),
            writable: false,
        }];
        for (index, path) in writable.into_iter().enumerate() {
            // The kernel's command line splits on spaces, /init on commas.
            let text = path.to_string_lossy();
            ensure!(
                path.is_absolute() && !text.contains([' ', ',', '\t', '\n', '=']),
                "kernel-test cannot share {text:?} with the guest: its path must be absolute \
                 and hold no space, comma or '='"
            );
            shares.push(Share {
                tag: format!("share{index}"),
                path,
                writable: true,
            });
        }
        Ok(shares)
    }
}

/// Prints why a boot gave no results, with the end of the console and of
/// qemu's own messages.
fn report_broken_boot(why: &str, results: &Path) {
    println!("kernel-test: the machine failed: {why}");
    for log in ["console.log", "qemu.log"] {
        let path = results.join(log);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("  last lines of {}:", path.display());
        for line in &lines[lines.len().saturating_sub(20)..] {
            println!("    {line}");
        }
    }
}

/// Prints the table of one kernel and its failures; returns the passed
/// and failed counts.
fn print_reports(reports: &[(String, Report)]) -> (usize, usize) {
    let width = reports
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max("test binary".len());
    println!(
        "  {:width$}  {:>6}  {:>6}  {:>7}",
        "test binary", "passed", "failed", "ignored"
    );
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    for (label, report) in reports {
        println!(
            "  {label:width$}  {:>6}  {:>6}  {:>7}",
            report.passed, report.failed, report.ignored
        );
        passed += report.passed;
        failed += report.failed;
        ignored += report.ignored;
    }
    println!(
        "  {:width$}  {passed:>6}  {failed:>6}  {ignored:>7}",
        "total"
    );
    for (label, report) in reports {
        for (test, output) in &report.failures {
            println!("\n  FAILED {label}: {test}");
            for line in output.lines() {
                println!("    {line}");
            }
        }
    }
    (passed, failed)
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("?".to_string(), |duration| {
        format!("{:.1} s", duration.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_adds_up() {
        let reports = vec![
            (
                "a lib".to_string(),
                Report {
                    passed: 3,
                    failed: 1,
                    failures: vec![("t".into(), "boom".into())],
                    complete: true,
                    ..Report::default()
                },
            ),
            (
                "a test acceptance".to_string(),
                Report {
                    passed: 5,
                    ignored: 1,
                    complete: true,
                    ..Report::default()
                },
            ),
        ];
        assert_eq!(print_reports(&reports), (8, 1));
    }

    #[test]
    fn durations_read_in_seconds() {
        assert_eq!(seconds(Some(Duration::from_millis(5230))), "5.2 s");
        assert_eq!(seconds(None), "?");
    }
}

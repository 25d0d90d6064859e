//! qemu: the command line of the test machine, and one boot of it, watched
//! through its serial console, with a deadline on every wait.

use super::debian::{Program, ProgramSource};
use anyhow::{ensure, Context, Result};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const QEMU: ProgramSource = ProgramSource {
    name: "qemu-system-x86_64",
    package: "qemu-system-x86",
    path_in_package: "usr/bin/qemu-system-x86_64",
};

/// The memory of the test machine.
const MEMORY: &str = "3G";

/// The lines the guest prints on its serial console, in this order.
pub const INIT_STARTED: &str = "kernel-test: init";
pub const BOOTED: &str = "kernel-test: booted";

/// qemu, installed or unpacked from Debian's packages, and its firmware.
#[derive(Debug)]
pub struct Qemu {
    program: Program,
    /// Where qemu's firmware files are (`-L`).
    data_dir: PathBuf,
}

impl Qemu {
    pub fn find(downloads: &Path, tools: &Path) -> Result<Qemu> {
        let program = Program::find_or_unpack(QEMU, downloads, tools)?;
        let data_dir = match &program.unpacked {
            Some(dir) => dir.join("usr/share/qemu"),
            None => PathBuf::from("/usr/share/qemu"),
        };
        let qemu = Qemu { program, data_dir };
        ensure!(
            qemu.firmware().exists(),
            "{} is missing (Debian package qemu-system-data)",
            qemu.firmware().display()
        );
        Ok(qemu)
    }

    /// qboot: a minimal firmware that jumps straight into the kernel's PVH
    /// entry point, where SeaBIOS spends seconds (under emulation) probing
    /// devices this machine does not have.
    fn firmware(&self) -> PathBuf {
        self.data_dir.join("qboot.rom")
    }

    fn command(&self) -> std::process::Command {
        let mut command = self.program.command();
        if let Some(dir) = &self.program.unpacked {
            // Debian builds TCG and some devices as loadable modules that
            // qemu looks for in a fixed directory, unless told otherwise.
            command.env("QEMU_MODULE_DIR", dir.join("usr/lib/x86_64-linux-gnu/qemu"));
        }
        command
    }
}

/// How qemu runs the guest's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// The host CPU runs them (hardware virtualization): fast.
    Kvm,
    /// qemu translates them (emulation): works anywhere, several times slower.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        }
    }
}

/// A host directory the guest mounts over 9p (virtio).
#[derive(Debug, Clone)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
    pub writable: bool,
}

/// Everything that makes one machine.
#[derive(Debug)]
pub struct Machine<'a> {
    pub accel: Accel,
    pub cpus: usize,
    pub vmlinux: &'a Path,
    pub initramfs: &'a Path,
    pub kernel_command_line: String,
    pub shares: &'a [Share],
}

/// qemu's arguments for `machine`, with `firmware`.
fn arguments(machine: &Machine, firmware: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |words: &[&str]| args.extend(words.iter().map(OsString::from));
    push(&["-machine", "q35"]);
    match machine.accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        // One host thread per virtual CPU, and a large translation cache:
        // the tests run many short-lived programs.
        Accel::Tcg => push(&["-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"]),
    }
    let cpus = machine.cpus.to_string();
    push(&["-smp", &cpus, "-m", MEMORY]);
    // No default devices (network card, VGA, floppy...), no window; the
    // serial port is qemu's stdout. On a guest reboot (panic=-1) qemu exits.
    push(&[
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    let mut pairs: Vec<(&str, OsString)> = vec![
        ("-bios", firmware.into()),
        ("-kernel", machine.vmlinux.into()),
        ("-initrd", machine.initramfs.into()),
        ("-append", machine.kernel_command_line.clone().into()),
    ];
    for share in machine.shares {
        // security_model=none: files are created as the user running qemu,
        // and the guest's chown fails silently (no root needed on the host).
        // multidevs=remap: the host's / spans several file systems, whose
        // inode numbers would collide in the guest.
        let mut fsdev = OsString::from(format!("local,id={},path=", share.tag));
        fsdev.push(escape_option(share.path.as_os_str()));
        fsdev.push(",security_model=none,multidevs=remap");
        if !share.writable {
            fsdev.push(",readonly=on");
        }
        pairs.push(("-fsdev", fsdev));
        let device = format!("virtio-9p-pci,fsdev={0},mount_tag={0}", share.tag);
        pairs.push(("-device", device.into()));
    }
    for (option, value) in pairs {
        args.push(option.into());
        args.push(value);
    }
    args
}

/// qemu separates sub-options with commas: a comma in a value is doubled.
fn escape_option(value: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut escaped = Vec::new();
    for &byte in value.as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
}

/// When the watch of a boot gives up.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the start until /init speaks.
    pub init: Duration,
    /// From the start until the run's script says the machine is up.
    pub boot: Duration,
    /// From then until the marker line.
    pub suite: Duration,
}

/// How a boot ended.
#[derive(Debug)]
pub enum Ending {
    /// The guest printed the marker line with this exit code.
    Marker(i32),
    /// qemu exited before the marker line.
    Exited(ExitStatus),
    /// A deadline passed; qemu was killed. Says what was awaited.
    TimedOut(String),
}

/// What one boot showed.
#[derive(Debug)]
pub struct Boot {
    pub ending: Ending,
    /// From qemu's start until the machine was up.
    pub boot_time: Option<Duration>,
    /// From then until the marker line.
    pub suite_time: Option<Duration>,
}

/// qemu, killed (by its PID, which we started) and reaped when dropped: on
/// an error, a timeout or a panic, no machine outlives the command.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boots `machine`, prints the guest's `kernel-test:` lines with `prefix`,
/// writes everything it printed to `console_log` (and qemu's own messages
/// to `qemu_log`), and waits for the line that starts with `marker`.
pub fn boot(
    qemu: &Qemu,
    machine: &Machine,
    marker: &str,
    deadlines: Deadlines,
    console_log: &Path,
    qemu_log: &Path,
) -> Result<Boot> {
    let mut console =
        File::create(console_log).with_context(|| format!("creating {}", console_log.display()))?;
    let errors =
        File::create(qemu_log).with_context(|| format!("creating {}", qemu_log.display()))?;
    let mut command = qemu.command();
    command
        .args(arguments(machine, &qemu.firmware()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(errors));
    die_with_parent(&mut command);
    let start = Instant::now();
    let mut child = Guard(command.spawn().context("starting qemu")?);
    let lines = read_lines(child.0.stdout.take().expect("stdout is piped"));

    let mut booted_at = None;
    let mut awaited = (INIT_STARTED, deadlines.init);
    loop {
        let waited_from = booted_at.unwrap_or(start);
        let remaining = awaited.1.saturating_sub(waited_from.elapsed());
        let line = match lines.recv_timeout(remaining) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                drop(child);
                let what = format!("no \"{}\" on the console within {:?}", awaited.0, awaited.1);
                return Ok(Boot {
                    ending: Ending::TimedOut(what),
                    boot_time: booted_at.map(|at| at - start),
                    suite_time: None,
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().context("waiting for qemu")?;
                return Ok(Boot {
                    ending: Ending::Exited(status),
                    boot_time: booted_at.map(|at| at - start),
                    suite_time: None,
                });
            }
        };
        writeln!(console, "{line}").context("writing the console log")?;
        if let Some(code) = marker_code(&line, marker) {
            let now = Instant::now();
            wait_for_poweroff(&mut child.0)?;
            return Ok(Boot {
                ending: Ending::Marker(code),
                boot_time: booted_at.map(|at| at - start),
                suite_time: booted_at.map(|at| now - at),
            });
        }
        if let Some(message) = line.find("kernel-test:").map(|at| &line[at..]) {
            println!("    {message}");
            if message.starts_with(INIT_STARTED) {
                awaited = (BOOTED, deadlines.boot);
            } else if message.starts_with(BOOTED) {
                booted_at = Some(Instant::now());
                awaited = ("the end of the tests", deadlines.suite);
            }
        }
    }
}

/// After the marker the guest powers off at once; qemu gets a few seconds.
fn wait_for_poweroff(child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().context("waiting for qemu")?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The Guard kills it.
    println!("    (qemu did not exit after the tests: killed)");
    Ok(())
}

/// Asks the kernel to SIGKILL qemu when this process dies, whatever kills
/// it (Ctrl-C, a panic, kill -9): a machine must never outlive its command.
fn die_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl and getppid are.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody would kill us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("xtask died while starting qemu"));
            }
            Ok(())
        });
    }
}

/// The lines of `stdout`, read by a thread, so that the caller can wait for
/// them with a deadline. The channel closes when qemu closes its stdout.
fn read_lines(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buffer = Vec::new();
        // The serial console may carry bytes that are not UTF-8.
        while matches!(reader.read_until(b'\n', &mut buffer), Ok(read) if read > 0) {
            let line = String::from_utf8_lossy(&buffer);
            if sender.send(line.trim_end().to_string()).is_err() {
                break;
            }
            buffer.clear();
        }
    });
    receiver
}

/// A marker no test output contains by chance: MARKER CODE ends the run.
pub fn new_marker() -> Result<String> {
    let mut bytes = [0u8; 8];
    let mut random = File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut random, &mut bytes).context("reading /dev/urandom")?;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("kernel-test-done-{hex}"))
}

/// The exit code on the marker line, which the kernel's own messages may
/// have interrupted (the serial console is shared): look for the marker
/// anywhere in the line.
pub fn marker_code(line: &str, marker: &str) -> Option<i32> {
    let at = line.find(marker)?;
    line[at + marker.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether /dev/kvm can be opened: a first hint, not a proof (it may open
/// and still not run a guest, as in some nested virtual machines).
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn machine<'a>(accel: Accel, shares: &'a [Share]) -> Machine<'a> {
        Machine {
            accel,
            cpus: 2,
            vmlinux: Path::new("/cache/vmlinux"),
            initramfs: Path::new("/cache/initramfs.cpio"),
            kernel_command_line: "console=ttyS0 quiet".into(),
            shares,
        }
    }

    fn value_of(args: &[String], option: &str) -> Vec<String> {
        args.windows(2)
            .filter(|pair| pair[0] == option)
            .map(|pair| pair[1].clone())
            .collect()
    }

    #[test]
    fn tcg_emulates_with_a_thread_per_cpu() {
        let args = words(&arguments(
            &machine(Accel::Tcg, &[]),
            Path::new("/q/qboot.rom"),
        ));
        assert_eq!(value_of(&args, "-accel"), ["tcg,thread=multi,tb-size=512"]);
        assert_eq!(value_of(&args, "-cpu"), ["max"]);
        assert_eq!(value_of(&args, "-smp"), ["2"]);
        assert_eq!(value_of(&args, "-bios"), ["/q/qboot.rom"]);
        assert_eq!(value_of(&args, "-kernel"), ["/cache/vmlinux"]);
        assert_eq!(value_of(&args, "-append"), ["console=ttyS0 quiet"]);
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(args.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let args = words(&arguments(&machine(Accel::Kvm, &[]), Path::new("/q")));
        assert_eq!(value_of(&args, "-accel"), ["kvm"]);
        assert_eq!(value_of(&args, "-cpu"), ["host"]);
    }

    #[test]
    fn shares_become_9p_devices() {
        let shares = [
            Share {
                tag: "hostroot".into(),
                path: "/".into(),
                writable: false,
            },
            Share {
                tag: "share0".into(),
                path: "/work/a,b".into(),
                writable: true,
            },
        ];
        let args = words(&arguments(&machine(Accel::Tcg, &shares), Path::new("/q")));
        assert_eq!(
            value_of(&args, "-fsdev"),
            [
                "local,id=hostroot,path=/,security_model=none,multidevs=remap,readonly=on",
                "local,id=share0,path=/work/a,,b,security_model=none,multidevs=remap",
            ]
        );
        assert_eq!(
            value_of(&args, "-device"),
            [
                "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
                "virtio-9p-pci,fsdev=share0,mount_tag=share0",
            ]
        );
    }

    #[test]
    fn the_marker_line_carries_the_exit_code() {
        let marker = "kernel-test-done-0123456789abcdef";
        assert_eq!(marker_code(&format!("{marker} 0"), marker), Some(0));
        assert_eq!(marker_code(&format!("{marker} 3\r"), marker), Some(3));
        // A kernel message may come first on the same line.
        let line = format!("[   12.3] random: crng init done{marker} 1");
        assert_eq!(marker_code(&line, marker), Some(1));
        assert_eq!(marker_code("kernel-test-done-other 0", marker), None);
        assert_eq!(marker_code(&format!("{marker} oops"), marker), None);
    }

    #[test]
    fn markers_differ() {
        let (a, b) = (new_marker().unwrap(), new_marker().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("kernel-test-done-") && a.len() == 17 + 16);
    }
}

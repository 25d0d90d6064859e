//! Network namespaces that play the host, so that a test never touches the
//! machine's own network.
//!
//! * [`HostNetns`]: a named network namespace (`ip netns add`) per test,
//!   with `lo` up. Every command of the test that touches networking runs
//!   in it (through `nsenter --net`, which keeps the test's mount namespace
//!   and environment): the runtime's bridges, veths, iptables rules and
//!   sysctls land there, and go away with it when the test ends.
//! * [`Outside`]: a second namespace joined to the host one by a veth pair,
//!   routed through it, for traffic that comes from elsewhere (a published
//!   port reached from another machine).
//! * [`HostNetns::run_inside`]: runs a closure on a thread that joined the
//!   host namespace, for a test that calls the step's library (netlink)
//!   directly: whatever the code under test does to "its" network, it does
//!   to the test's namespace, never to the machine's.
//! * Leak checks: no `veth*` interface and no iptables rule naming a
//!   container's address left in the host namespace, and no interface a
//!   tara runtime makes (`tara*`, `veth` + 11 hex digits) that appeared in
//!   the machine's own namespace.

use crate::finished::Finished;
use crate::process::run_with_deadline;
use crate::{copy_environment, poll_until, require_root, DEFAULT_DEADLINE};
use nix::sched::{setns, CloneFlags};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Every namespace made here is named `tara-test-<PID>-<N>`: unique per
/// test process and per test, and recognizable when a killed run left one.
const NAME_PREFIX: &str = "tara-test-";

/// Where `ip netns add` keeps the namespaces it names (a bind mount of
/// /proc/PID/ns/net each, which keeps the namespace alive with no process).
const NETNS_DIR: &str = "/run/netns";

/// The second namespace's link to the host namespace: test-net-2 (RFC 5737).
/// The machine itself uses 192.0.2.0/24, which the tests avoid.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The second namespace's own address, routed through [`HOST_ADDRESS`].
pub const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The prefix length of the link between the two.
const LINK_PREFIX: u8 = 24;
/// The host namespace's end of that link: not `veth*`, so that the leak
/// check, which looks for a container's veth, does not see it.
const HOST_END: &str = "outside0";

/// How long a leak check waits for the kernel to finish tearing down what
/// a container left (a network namespace is destroyed asynchronously, and
/// its veth with it).
const LEAK_GRACE: Duration = DEFAULT_DEADLINE;

/// The prefix of the bridges a tara runtime creates (`tara0`, `tara-NAME`).
const BRIDGE_PREFIX: &str = "tara";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Held around `ip netns add`: the first one on a machine makes
/// /run/netns a shared mount point of its own, and two doing that at once
/// would stack two mounts there, one hiding the namespaces of the other.
static ADDING: Mutex<()> = Mutex::new(());

/// A network namespace that plays the host for one test. Dropping it
/// deletes the namespace (with its bridges, veths and firewall rules) and,
/// unless the test already failed, fails the test if a veth was left in it
/// or if an interface named as tara names them appeared in the machine's
/// own namespace.
#[derive(Debug)]
pub struct HostNetns {
    name: String,
    machine_links_before: BTreeSet<String>,
}

impl HostNetns {
    /// Checks for root, then creates the namespace and brings its `lo` up.
    pub fn new() -> Self {
        require_root();
        remove_namespaces_of_dead_runs();
        let machine_links_before = watched_machine_links();
        let name = unique_name();
        add_namespace(&name);
        // From here on, Drop deletes it.
        let netns = HostNetns {
            name,
            machine_links_before,
        };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file that names the namespace, for `nsenter --net=` or setns(2).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// A command that runs `program` in this namespace (and in the test's
    /// own mount namespace): `nsenter --net=PATH -- program`. Add its
    /// arguments as to any command.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        in_namespace(&self.path(), program.as_ref())
    }

    /// `command`, with its program, arguments, environment and working
    /// directory, made to run in this namespace: for a command that was
    /// built elsewhere (`Command::cargo_bin`).
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = self.command(command.get_program());
        wrapped.args(command.get_args());
        copy_environment(command, &mut wrapped);
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Runs `sh -c SCRIPT` in this namespace to its end.
    pub fn sh(&self, script: &str) -> Finished {
        let mut command = self.command("sh");
        command.args(["-c", script]);
        Finished::new(run_with_deadline(command, DEFAULT_DEADLINE))
    }

    /// Runs `body` on a new thread that first joined this namespace, and
    /// returns what it returns; a panic in `body` (a failed assertion, a
    /// blank exercise) goes on in the caller.
    ///
    /// For the code of the step called in the test's own process: a
    /// netlink socket talks to the namespace of the thread that created it,
    /// and setns(2) moves only the calling thread, so everything `body`
    /// does (`Netlink::new()`, a command it spawns) reaches this namespace,
    /// and the test's other threads stay in the machine's.
    #[track_caller]
    pub fn run_inside<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        // The test's name on the thread: libtest and panics show it.
        let mut thread = std::thread::Builder::new();
        if let Some(name) = std::thread::current().name() {
            thread = thread.name(name.to_string());
        }
        std::thread::scope(|scope| {
            let inside = thread
                .spawn_scoped(scope, || {
                    let netns = File::open(&path)
                        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
                    setns(&netns, CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns({}, CLONE_NEWNET): {e}", path.display()));
                    body()
                })
                .expect("spawning a thread");
            // The panic was reported on that thread already: rethrown as is.
            inside
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The names of the interfaces in this namespace.
    pub fn links(&self) -> Vec<String> {
        let listed = self.sh("ip -o link show").success().stdout_text();
        link_names(&listed)
    }

    /// The namespace's firewall rules, as `iptables-save` prints them.
    pub fn iptables_rules(&self) -> String {
        self.sh("iptables-save").success().stdout_text()
    }

    /// Joins a second namespace to this one by a veth pair: this side has
    /// [`HOST_ADDRESS`], the other [`OUTSIDE_ADDRESS`] and its default
    /// route through this side. The second namespace lives as long as the
    /// returned value.
    pub fn connect_second_namespace(&self) -> Outside {
        let outside = Outside {
            name: unique_name(),
        };
        ip(&["netns", "add", &outside.name]);
        let (host, other) = (&self.name[..], &outside.name[..]);
        let host_cidr = format!("{HOST_ADDRESS}/{LINK_PREFIX}");
        let other_cidr = format!("{OUTSIDE_ADDRESS}/{LINK_PREFIX}");
        let gateway = HOST_ADDRESS.to_string();
        ip(&["-n", other, "link", "set", "lo", "up"]);
        ip(&[
            "-n", host, "link", "add", HOST_END, "type", "veth", "peer", "name", "eth0", "netns",
            other,
        ]);
        ip(&["-n", host, "addr", "add", &host_cidr, "dev", HOST_END]);
        ip(&["-n", host, "link", "set", HOST_END, "up"]);
        ip(&["-n", other, "addr", "add", &other_cidr, "dev", "eth0"]);
        ip(&["-n", other, "link", "set", "eth0", "up"]);
        ip(&["-n", other, "route", "add", "default", "via", &gateway]);
        outside
    }

    /// What a container left in this namespace: a `veth*` interface, or an
    /// iptables rule that names one of `addresses` (its leased address).
    pub fn leaks(&self, addresses: &[Ipv4Addr]) -> Vec<String> {
        let mut leaks: Vec<String> = self
            .links()
            .into_iter()
            .filter(|name| name.starts_with("veth"))
            .map(|name| format!("interface left behind: {name}"))
            .collect();
        let rules = self.iptables_rules();
        for line in rules.lines() {
            if let Some(address) = addresses.iter().find(|a| mentions(line, **a)) {
                leaks.push(format!("iptables rule of {address} left behind: {line}"));
            }
        }
        leaks
    }

    /// Waits until [`leaks`](Self::leaks) finds nothing, and fails the
    /// test, listing what was left, if that does not happen in time.
    #[track_caller]
    pub fn assert_nothing_left(&self, addresses: &[Ipv4Addr]) {
        if poll_until(LEAK_GRACE, || {
            self.leaks(addresses).is_empty().then_some(())
        })
        .is_none()
        {
            panic!(
                "the container's network was not cleaned up after {LEAK_GRACE:?}:\n  {}",
                self.leaks(addresses).join("\n  ")
            );
        }
    }
}

impl Default for HostNetns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HostNetns {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let veths_left = if failed {
            Vec::new()
        } else {
            let settled = poll_until(LEAK_GRACE, || {
                let veths = veths(&self.links());
                veths.is_empty().then_some(())
            });
            settled.map_or_else(|| veths(&self.links()), |()| Vec::new())
        };
        delete_namespace(&self.name);
        let appeared: Vec<String> = watched_machine_links()
            .difference(&self.machine_links_before)
            .cloned()
            .collect();
        if failed {
            return;
        }
        assert!(
            veths_left.is_empty(),
            "the test left interfaces in its host namespace: {veths_left:?}"
        );
        assert!(
            appeared.is_empty(),
            "interfaces appeared in the MACHINE's own network namespace during the test: \
             {appeared:?}. Everything must happen in the test's host namespace."
        );
    }
}

/// A second network namespace, routed to a [`HostNetns`] (see
/// [`HostNetns::connect_second_namespace`]). Dropping it deletes it.
#[derive(Debug)]
pub struct Outside {
    name: String,
}

impl Outside {
    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` in this namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        in_namespace(&Path::new(NETNS_DIR).join(&self.name), program.as_ref())
    }

    /// Runs `sh -c SCRIPT` in this namespace to its end.
    pub fn sh(&self, script: &str) -> Finished {
        let mut command = self.command("sh");
        command.args(["-c", script]);
        Finished::new(run_with_deadline(command, DEFAULT_DEADLINE))
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// `nsenter --net=PATH -- program`: only the network namespace changes.
/// nsenter execs the program itself (it forks only to enter a PID
/// namespace), so the PID of the command is the program's.
fn in_namespace(path: &Path, program: &OsStr) -> Command {
    let mut command = Command::new("nsenter");
    let mut net = std::ffi::OsString::from("--net=");
    net.push(path);
    command.arg(net).arg("--").arg(program);
    command
}

fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{n}", std::process::id())
}

/// Runs `ip ARGS...`, which must succeed.
#[track_caller]
fn ip(args: &[&str]) {
    let mut command = Command::new("ip");
    command.args(args);
    Finished::new(run_with_deadline(command, DEFAULT_DEADLINE)).success();
}

/// `ip netns add NAME`, one at a time in this process.
fn add_namespace(name: &str) {
    let _one_at_a_time = ADDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ip(&["netns", "add", name]);
}

fn delete_namespace(name: &str) {
    let mut command = Command::new("ip");
    command.args(["netns", "del", name]);
    let _ = run_with_deadline(command, DEFAULT_DEADLINE);
}

/// Deletes the namespaces of test processes that no longer exist (a run
/// killed before its Drops ran). Those of live processes are left alone.
fn remove_namespaces_of_dead_runs() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(&name);
        }
    }
}

/// The interface names in `ip -o link` output: `2: eth0@if5: <...> ...`.
fn link_names(listed: &str) -> Vec<String> {
    listed
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

fn veths(links: &[String]) -> Vec<String> {
    links
        .iter()
        .filter(|name| name.starts_with("veth"))
        .cloned()
        .collect()
}

/// The watched interfaces of the machine's namespace, which this process
/// is in: /proc/self/net/dev lists the interfaces of the reader's network
/// namespace, two header lines then `  name: counters...`.
fn watched_machine_links() -> BTreeSet<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("reading /proc/self/net/dev");
    dev.lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_string())
        .filter(|name| made_by_tara(name))
        .collect()
}

/// Whether an interface has a name a tara runtime gives: a bridge `tara*`,
/// or a container's host end, `veth` and 11 hex digits of its ID (15
/// bytes). Only those are watched in the machine's namespace: a student's
/// VM may run docker (`veth` + 7 hex digits), podman or CNI (`veth` + 8)
/// containers while the tests run, and their veths come and go.
fn made_by_tara(name: &str) -> bool {
    let container_end = name.strip_prefix("veth").is_some_and(|id| {
        id.len() == 11
            && id
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    });
    name.starts_with(BRIDGE_PREFIX) || container_end
}

/// Whether `text` names `address` as a whole: 10.87.0.2 is not in
/// 10.87.0.20 nor in 110.87.0.2.
pub fn mentions(text: &str, address: Ipv4Addr) -> bool {
    let needle = address.to_string();
    text.match_indices(&needle).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + needle.len()..].chars().next();
        let part_of_a_number = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
        !part_of_a_number(before) && !part_of_a_number(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_mentioned_only_as_a_whole() {
        let address = Ipv4Addr::new(10, 87, 0, 2);
        assert!(mentions("-A TARA-DNAT -d 10.87.0.2/32 -j ACCEPT", address));
        assert!(mentions("--to-destination 10.87.0.2:80", address));
        assert!(!mentions("-d 10.87.0.20/32", address));
        assert!(!mentions("-d 110.87.0.2/32", address));
        assert!(!mentions("-s 10.87.0.0/16", address));
    }

    #[test]
    fn link_names_drop_the_peer() {
        let listed = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n\
                      5: vethab12@if2: <BROADCAST> mtu 1500 master tara0\n";
        assert_eq!(link_names(listed), ["lo", "vethab12"]);
    }

    #[test]
    fn only_the_names_tara_gives_are_watched_in_the_machines_namespace() {
        for name in ["tara0", "tara-red", "veth0123456789a"] {
            assert!(made_by_tara(name), "{name}");
        }
        // docker's, podman's, the tests' own, and a 15-byte name that is
        // not hexadecimal.
        for name in [
            "veth1a2b3c4",
            "veth1a2b3c4d",
            "veth-test",
            "vethabcdefghijk",
            "eth0",
        ] {
            assert!(!made_by_tara(name), "{name}");
        }
    }

    #[test]
    fn run_inside_runs_in_the_namespace_and_passes_panics_on() {
        use std::os::unix::fs::MetadataExt;
        // A namespace is known by the inode of its nsfs file.
        let netns_of_this_thread = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let host = HostNetns::new();
        let named = std::fs::metadata(host.path()).unwrap().ino();
        assert_eq!(host.run_inside(netns_of_this_thread), named);
        assert_ne!(
            netns_of_this_thread(),
            named,
            "the caller stays where it is"
        );
        let payload = std::panic::catch_unwind(|| host.run_inside(|| panic!("inside")))
            .expect_err("the panic is passed on");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
    }

    #[test]
    fn a_host_namespace_is_private_and_goes_away() {
        let host = HostNetns::new();
        let name = host.name().to_string();
        assert!(host.path().exists());
        assert_eq!(host.links(), ["lo"]);
        let outside = host.connect_second_namespace();
        let ping = format!("busybox ping -c 1 -W 5 {HOST_ADDRESS}");
        outside.sh(&ping).success();
        let outside_name = outside.name().to_string();
        drop(outside);
        drop(host);
        for name in [name, outside_name] {
            assert!(!Path::new(NETNS_DIR).join(name).exists());
        }
    }

    #[test]
    fn a_veth_left_in_the_host_namespace_fails_the_check() {
        let host = HostNetns::new();
        host.sh("ip link add veth-t type veth peer name veth-u")
            .success();
        let mut leaks = host.leaks(&[]);
        leaks.sort();
        assert_eq!(
            leaks,
            [
                "interface left behind: veth-t",
                "interface left behind: veth-u"
            ]
        );
        host.sh("ip link del veth-t").success();
        host.assert_nothing_left(&[]);
    }
}

//! Acceptance tests of step 04-bridge-network.
//!
//! Compiled into both `step-04-bridge-network` (the student's crate) and
//! `solution-04-bridge-network` (the reference). The first tests call one
//! exercise's function each, through the crate's library (`lesson`); the
//! others drive the crate's binary, `[--root DIR] network ...|run --network
//! -p ...` and step 03's commands, with a store of their own in the sandbox
//! and testkit's busybox imported as an image, on the real kernel, as root.
//!
//! Nothing here touches the machine's own network: every test makes a
//! network namespace of its own that plays the host ([`HostNetns`]) and
//! runs the binary, `ip` and `iptables` in it. Its bridges, veths, rules and
//! sysctls go away with it.

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use testkit::netns::{HOST_ADDRESS, OUTSIDE_ADDRESS};
use testkit::process::process_state;
use testkit::{
    busybox_rootfs, call_exercise, private_busybox_rootfs, run_to_end, snapshot_settings, wait_for,
    Finished, HostNetns, Running, Sandbox, StoreCli, DEFAULT_DEADLINE,
};

// `lesson`: the library of the crate this file is compiled into.
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/lesson.rs"));

const STEP: &str = "04-bridge-network";

/// The default network `tara`: its gateway, and its first container's address.
const TARA_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 87, 0, 1);
const TARA_FIRST: Ipv4Addr = Ipv4Addr::new(10, 87, 0, 2);

/// What a container kept running runs: says it is up, then waits. With
/// `--init`, SIGTERM to the runtime reaches the sleep, which dies of it.
const READY_THEN_WAIT: &str = "echo ready; exec sleep 300";

// ---------------------------------------------------------------------------
// Helpers: a store in the sandbox, and the binary run against it, in the
// test's host network namespace.
// ---------------------------------------------------------------------------

/// A test's own `--root`, inside its sandbox, used from its host namespace:
/// testkit's [`StoreCli`], with what this step's tests add.
struct Store<'a> {
    cli: StoreCli<'a>,
    host: &'a HostNetns,
}

impl<'a> std::ops::Deref for Store<'a> {
    type Target = StoreCli<'a>;

    fn deref(&self) -> &StoreCli<'a> {
        &self.cli
    }
}

impl<'a> Store<'a> {
    fn new(sandbox: &'a Sandbox, host: &'a HostNetns) -> Self {
        Store {
            cli: StoreCli::in_host(sandbox, env!("CARGO_PKG_NAME"), host),
            host,
        }
    }

    /// A container on the default network pings its gateway, which must
    /// answer.
    fn ping_gateway_from_a_container(&self) {
        let ping = ["ping", "-c", "1", "-W", "5", "10.87.0.1"];
        self.ok(&[&["run", "--rm", "busybox", "--"][..], &ping].concat());
    }

    /// Starts `run --init --name NAME OPTIONS... busybox -- sh -c SCRIPT`
    /// in the background; returns once SCRIPT has printed `ready`, which
    /// the container can only do once its network is up.
    fn start_with(&self, name: &str, options: &[&str], script: &str) -> Running {
        let mut args = vec!["run", "--init", "--name", name];
        args.extend_from_slice(options);
        args.extend_from_slice(&["busybox", "--", "sh", "-c", script]);
        let mut runtime = self.sandbox().spawn(self.command(&args));
        runtime.wait_for_line("ready");
        runtime
    }

    /// A container `name` that waits, kept running until [`stop`].
    fn start(&self, name: &str, options: &[&str]) -> Running {
        self.start_with(name, options, READY_THEN_WAIT)
    }

    /// The lease files of `network`, sorted (none when it has no directory).
    fn leases(&self, network: &str) -> Vec<String> {
        let dir = self.root().join("networks").join(network).join("leases");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `network inspect NAME`, parsed.
    fn inspect(&self, network: &str) -> serde_json::Value {
        let json = self.ok(&["network", "inspect", network]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("network inspect: {e}:\n{json}"))
    }

    /// Fails unless every container of `network` has given everything back:
    /// no lease file, no veth in the host namespace, no iptables rule that
    /// names one of `addresses`.
    #[track_caller]
    fn assert_nothing_left(&self, network: &str, addresses: &[Ipv4Addr]) {
        self.host.assert_nothing_left(addresses);
        assert_eq!(
            self.leases(network),
            Vec::<String>::new(),
            "leases of network {network} left behind"
        );
    }
}

/// Sends SIGTERM to a runtime started by [`Store::start`] and waits for it:
/// the container's command dies of the signal, and the runtime says so.
fn stop(runtime: Running) -> Vec<String> {
    runtime.signal(Signal::SIGTERM);
    wait_for_143(runtime)
}

/// Waits for a runtime sent SIGTERM to exit with 143; returns what its
/// container printed.
fn wait_for_143(mut runtime: Running) -> Vec<String> {
    let (status, lines) = runtime.wait();
    if status.code() != Some(143) {
        runtime.fail(&format!(
            "after SIGTERM, the runtime exited with {status}, not 143 (128 + SIGTERM)"
        ));
    }
    lines
}

/// Fails unless the command failed with 125 and said why in one line that
/// contains `words`.
#[track_caller]
fn one_line_125(finished: Finished, words: &str) {
    let finished = finished.code(125);
    let stderr = String::from_utf8_lossy(&finished.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains(words), "{words:?} in {stderr:?}");
}

/// Runs `sh -c SCRIPT` in the network namespace of process `pid` (and the
/// test's own mount namespace: the host's `ip`).
fn in_netns_of(pid: Pid, script: &str) -> Finished {
    let mut command = Command::new("nsenter");
    command.args(["-t", &pid.to_string(), "-n", "--", "sh", "-c", script]);
    run_to_end(command)
}

/// The flags of an `ip -o link` line: `<BROADCAST,MULTICAST,UP,LOWER_UP>`.
fn link_flags(line: &str) -> Vec<String> {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.find('>').unwrap_or(line.len());
    line[start..end].split(',').map(str::to_string).collect()
}

/// Starts `unshare --net sleep 300` in the host namespace, a stand-in for
/// a container: a process in a network namespace of its own, with only a
/// `lo` that is down. Returns once the sleep runs, in that namespace.
fn stand_in_container(sandbox: &Sandbox, host: &HostNetns) -> Running {
    let mut command = host.command("unshare");
    command.args(["--net", "sleep", "300"]);
    let running = sandbox.spawn(command);
    wait_for_exec(&running, "sleep");
    running
}

/// Calls `configure_inside` with a netlink socket in the namespace of
/// `pid`, as the runtime does: from a thread of the host namespace, so that
/// a socket opened by mistake in "its own" namespace reaches the test's
/// host namespace, not the machine's.
fn configure_from_the_host(
    host: &HostNetns,
    pid: Pid,
    eth0: Option<(ipnet::Ipv4Net, Ipv4Addr)>,
) -> anyhow::Result<()> {
    host.run_inside(|| {
        let mut inside =
            lesson::netlink::Netlink::in_namespace_of(pid).expect("a netlink socket inside");
        call_exercise(|| lesson::wiring::configure_inside(&mut inside, eth0))
    })
}

/// Waits until `running` has exec'd `program` (after nsenter and unshare
/// did their work).
fn wait_for_exec(running: &Running, program: &str) {
    let comm = format!("/proc/{}/comm", running.pid());
    wait_for(&format!("{program} to start"), DEFAULT_DEADLINE, || {
        let name = std::fs::read_to_string(&comm).unwrap_or_default();
        (name.trim() == program).then_some(())
    });
}

/// Kills a process started by the test, by its PID, and reaps it.
fn kill(mut running: Running) {
    running.signal(Signal::SIGKILL);
    let _ = running.wait();
}

/// Whether something listens on TCP `port` in the network namespace of
/// `pid`: /proc/PID/net/tcp{,6} list that namespace's sockets, local
/// address `ADDR:PORT` in hex, and state 0A for LISTEN.
fn listening(pid: Pid, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
            })
    })
}

/// `busybox wget -O- URL`, without any proxy: `busybox` is the command of
/// a namespace that runs busybox.
fn fetch(mut busybox: Command, url: &str) -> Finished {
    busybox.args(["wget", "-q", "-O-", "-Y", "off", url]);
    run_to_end(busybox)
}

/// What the contract says a container's /etc/resolv.conf holds: the host's,
/// without loopback nameservers (behind systemd-resolved's stub alone, the
/// servers it asks), and docker's defaults when no nameserver is left.
fn expected_resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let nameservers = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("nameserver"))
            .map(|address| address.trim().to_string())
            .collect()
    };
    let upstream = "/run/systemd/resolve/resolv.conf";
    let source = if nameservers(&host) == ["127.0.0.53"] && Path::new(upstream).exists() {
        std::fs::read_to_string(upstream).unwrap()
    } else {
        host
    };
    let is_loopback = |address: &str| {
        address == "::1"
            || address
                .parse::<Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    };
    let mut kept: String = source
        .lines()
        .filter(|line| {
            line.strip_prefix("nameserver")
                .is_none_or(|address| !is_loopback(address.trim()))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if nameservers(&kept).is_empty() {
        kept.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    kept
}

/// The bridge of network `name`: `tara-NAME` when that fits in the
/// kernel's 15 bytes, `tara-` and 10 hex digits of sha256(NAME) otherwise.
fn bridge_of(name: &str) -> String {
    use sha2::Digest;
    let plain = format!("tara-{name}");
    if plain.len() <= 15 {
        return plain;
    }
    let digest = format!("{:x}", sha2::Sha256::digest(name.as_bytes()));
    format!("tara-{}", &digest[..10])
}

/// Output without trailing spaces on its lines (busybox's `ip` leaves some).
fn trimmed(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The addresses written in `text`, for the leak checks.
fn addresses(text: &[&str]) -> Vec<Ipv4Addr> {
    text.iter().map(|a| a.parse().unwrap()).collect()
}

// ---------------------------------------------------------------------------
// One exercise at a time: each of these calls one exercise's function.
// ---------------------------------------------------------------------------

#[test]
fn allocate_leases_the_first_free_address_until_the_subnet_is_full() {
    let sandbox = Sandbox::new();
    let dir = sandbox.join("leases");
    std::fs::create_dir(&dir).unwrap();
    let subnet: ipnet::Ipv4Net = "10.9.8.0/29".parse().unwrap();
    let gateway = Ipv4Addr::new(10, 9, 8, 1);
    let allocate = |contents: &str| {
        call_exercise(|| lesson::ipam::allocate(&dir, subnet, gateway, contents.as_bytes()))
    };
    let leased = |contents: &str| {
        allocate(contents)
            .unwrap_or_else(|e| panic!("allocate in {subnet} failed: {e:#}"))
            .to_string()
    };
    assert_eq!(leased("first"), "10.9.8.2", "the gateway .1 is skipped");
    assert_eq!(leased("second"), "10.9.8.3");
    // Someone else's lease: taken, and left as it is.
    std::fs::write(dir.join("10.9.8.4"), "someone else").unwrap();
    assert_eq!(leased("third"), "10.9.8.5", "10.9.8.4 was already leased");
    assert_eq!(leased("fourth"), "10.9.8.6");
    let error = allocate("fifth").expect_err("a /29 has five addresses for containers");
    assert!(
        format!("{error:#}").contains("full"),
        "the error says the subnet is full: {error:#}"
    );
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    let expected = [
        ("10.9.8.2", "first"),
        ("10.9.8.3", "second"),
        ("10.9.8.4", "someone else"),
        ("10.9.8.5", "third"),
        ("10.9.8.6", "fourth"),
    ]
    .map(|(name, contents)| (name.to_string(), contents.to_string()));
    assert_eq!(files, expected, "one file per lease, holding its contents");
    // The gateway is skipped wherever it is.
    let other = sandbox.join("other");
    std::fs::create_dir(&other).unwrap();
    let small: ipnet::Ipv4Net = "10.9.9.0/30".parse().unwrap();
    let last = Ipv4Addr::new(10, 9, 9, 2);
    let only = call_exercise(|| lesson::ipam::allocate(&other, small, last, b""));
    assert_eq!(only.unwrap(), Ipv4Addr::new(10, 9, 9, 1));
    assert!(call_exercise(|| lesson::ipam::allocate(&other, small, last, b"")).is_err());
}

#[test]
fn create_veth_pair_puts_eth0_in_the_container_and_the_host_end_on_the_bridge() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    host.sh("ip link add br-test type bridge && ip link set br-test up")
        .success();
    let container = stand_in_container(&sandbox, &host);
    let child = container.pid();
    // On a thread in the host namespace, as the runtime is in its own.
    host.run_inside(|| {
        let mut netlink =
            lesson::netlink::Netlink::new().expect("a netlink socket in the host namespace");
        call_exercise(|| {
            lesson::wiring::create_veth_pair(&mut netlink, "veth-test", "br-test", child)
        })
    })
    .unwrap_or_else(|e| panic!("create_veth_pair failed: {e:#}"));
    let inside = in_netns_of(container.pid(), "ip -o link show")
        .success()
        .stdout_text();
    let names: Vec<&str> = inside
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["lo", "eth0"],
        "the container's interfaces:\n{inside}"
    );
    let on_bridge = host
        .sh("ip -o link show master br-test")
        .success()
        .stdout_text();
    let line = on_bridge
        .lines()
        .find(|line| line.contains(": veth-test@"))
        .unwrap_or_else(|| panic!("veth-test is not on the bridge br-test:\n{on_bridge}"));
    assert!(
        link_flags(line).iter().any(|flag| flag == "UP"),
        "the host end is not up: {line}"
    );
    assert_eq!(
        host.links()
            .iter()
            .filter(|name| name.as_str() == "eth0")
            .count(),
        0,
        "eth0 must be created in the container's namespace, not the host's"
    );
    kill(container);
    // The veth dies with the container's namespace: HostNetns checks it.
}

#[test]
fn configure_inside_sets_lo_eth0_and_the_default_route() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let container = stand_in_container(&sandbox, &host);
    let pid = container.pid();
    host.sh(&format!(
        "ip link add veth-test type veth peer name eth0 netns {pid} && \
         ip addr add 10.87.0.1/16 dev veth-test && ip link set veth-test up"
    ))
    .success();
    let address: ipnet::Ipv4Net = "10.87.0.2/16".parse().unwrap();
    configure_from_the_host(&host, pid, Some((address, TARA_GATEWAY)))
        .unwrap_or_else(|e| panic!("configure_inside failed: {e:#}"));
    let addresses = in_netns_of(pid, "ip -o -4 addr show dev eth0")
        .success()
        .stdout_text();
    assert!(
        addresses.contains("inet 10.87.0.2/16 "),
        "eth0's address:\n{addresses}"
    );
    let routes = in_netns_of(pid, "ip route show").success().stdout_text();
    assert!(
        routes
            .lines()
            .any(|line| line.starts_with("default via 10.87.0.1 dev eth0")),
        "the default route:\n{routes}"
    );
    for name in ["lo", "eth0"] {
        let line = in_netns_of(pid, &format!("ip -o link show {name}"))
            .success()
            .stdout_text();
        assert!(
            link_flags(&line).iter().any(|flag| flag == "UP"),
            "{name} is not up: {line}"
        );
    }
    in_netns_of(pid, "busybox ping -c 1 -W 5 10.87.0.1").success();
    in_netns_of(pid, "busybox ping -c 1 -W 5 127.0.0.1").success();
    kill(container);

    // No network: lo up, and nothing else.
    let alone = stand_in_container(&sandbox, &host);
    configure_from_the_host(&host, alone.pid(), None)
        .unwrap_or_else(|e| panic!("configure_inside(None) failed: {e:#}"));
    let links = in_netns_of(alone.pid(), "ip -o link show")
        .success()
        .stdout_text();
    assert_eq!(links.lines().count(), 1, "only lo:\n{links}");
    assert!(
        link_flags(&links).iter().any(|flag| flag == "UP"),
        "lo is not up: {links}"
    );
    in_netns_of(alone.pid(), "busybox ping -c 1 -W 5 127.0.0.1").success();
    kill(alone);
}

// ---------------------------------------------------------------------------
// The whole runtime: these run the crate's binary in the test's host
// namespace.
// ---------------------------------------------------------------------------

#[test]
fn a_container_has_eth0_with_its_lease_lo_and_a_default_route() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let script = "ip link; echo; ip -4 addr; echo; ip route";
    let seen = store.ok(&["run", "--rm", "busybox", "--", "sh", "-c", script]);
    let mut settings = snapshot_settings(STEP);
    settings.add_filter(r"link/ether [0-9a-f:]{17}", "link/ether [MAC]");
    settings.add_filter(r"@if\d+", "@if[HOST END]");
    // busybox flags M-DOWN when no interface of the container has the
    // index of the host end: noise.
    settings.add_filter(r",M-DOWN>", ">");
    settings.bind(|| insta::assert_snapshot!("ip-inside", trimmed(&seen)));
    // On the host: the default network's bridge, with the gateway.
    let bridge = host
        .sh("ip -o -4 addr show dev tara0")
        .success()
        .stdout_text();
    assert!(
        bridge.contains("inet 10.87.0.1/16 "),
        "the bridge tara0 has the gateway's address:\n{bridge}"
    );
    store.assert_nothing_left("tara", &[TARA_FIRST]);
}

#[test]
fn the_gateway_and_the_host_reach_a_container() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    store.ping_gateway_from_a_container();
    let web = store.start("web", &[]);
    assert_eq!(store.leases("tara"), ["10.87.0.2"]);
    host.sh("busybox ping -c 1 -W 5 10.87.0.2").success();
    assert_eq!(
        host.sh("cat /proc/sys/net/ipv4/ip_forward")
            .success()
            .stdout_text(),
        "1\n",
        "the runtime turns forwarding on in its own namespace"
    );
    // The host's services that listen on 127.0.0.1 only are not for the
    // containers, though route_localnet on the bridge (for the published
    // ports) lets packets to 127.0.0.0/8 in: root in a container's
    // namespace routes 127.0.0.1 to the gateway, and gets no answer.
    let pid_1 = web.only_child();
    in_netns_of(
        pid_1,
        "ip addr flush dev lo && ip route add 127.0.0.1/32 via 10.87.0.1 && \
         echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet",
    )
    .success();
    let to_the_hosts_loopback = "busybox ping -c 1 -W 2 127.0.0.1";
    let reached = in_netns_of(pid_1, to_the_hosts_loopback);
    assert!(
        !reached.get_output().status.success(),
        "a container reached the host's 127.0.0.1 through the gateway"
    );
    // Without tara's raw rules, the same ping is answered: the hole is real.
    host.sh("iptables -w -t raw -F").success();
    in_netns_of(pid_1, "busybox ping -c 1 -W 5 127.0.0.1").success();
    stop(web);
    store.assert_nothing_left("tara", &[TARA_FIRST]);
}

#[test]
fn two_containers_on_one_network_reach_each_other() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let first = store.start("first", &[]);
    assert_eq!(store.leases("tara"), ["10.87.0.2"]);
    let lease =
        std::fs::read_to_string(store.root().join("networks/tara/leases/10.87.0.2")).unwrap();
    let lease: serde_json::Value = serde_json::from_str(&lease).unwrap();
    assert_eq!(lease["container"], store.container_id("first"), "{lease}");
    let script = "ip -o -4 addr show dev eth0 | grep -o 'inet [0-9./]*'; ping -c 1 -W 5 10.87.0.2";
    let seen = store.ok(&["run", "--rm", "busybox", "--", "sh", "-c", script]);
    assert!(
        seen.starts_with("inet 10.87.0.3/16\n"),
        "the second container has the next address:\n{seen}"
    );
    stop(first);
    store.assert_nothing_left("tara", &addresses(&["10.87.0.2", "10.87.0.3"]));
}

#[test]
fn networks_are_isolated_from_each_other_even_with_forwarding() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    assert_eq!(store.ok(&["network", "create", "red"]), "red\n");
    assert_eq!(store.ok(&["network", "create", "blue"]), "blue\n");
    // The first free /24s of 10.86.0.0/16.
    let red = store.start("on-red", &["--network", "red"]);
    let blue = store.start("on-blue", &["--network", "blue"]);
    assert_eq!(store.leases("red"), ["10.86.0.2"]);
    assert_eq!(store.leases("blue"), ["10.86.1.2"]);
    assert_eq!(
        host.sh("cat /proc/sys/net/ipv4/ip_forward")
            .success()
            .stdout_text(),
        "1\n",
        "forwarding is on: only the firewall keeps the networks apart"
    );
    // From a second container on each network: its own network is
    // reachable, the other one is not.
    let probe = |network: &str, gateway: &str, neighbour: &str, stranger: &str| {
        let script = format!(
            "ping -c 1 -W 5 {gateway} >/dev/null || {{ echo gateway unreachable; exit 3; }}
ping -c 1 -W 5 {neighbour} >/dev/null || {{ echo neighbour unreachable; exit 4; }}
ping -c 1 -W 2 {stranger} >/dev/null && {{ echo reached the other network; exit 5; }}
echo isolated"
        );
        let args = [
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "--",
            "sh",
            "-c",
            &script,
        ];
        assert_eq!(store.ok(&args), "isolated\n", "from {network}");
    };
    probe("blue", "10.86.1.1", "10.86.1.2", "10.86.0.2");
    probe("red", "10.86.0.1", "10.86.0.2", "10.86.1.2");
    // A reload of the host's firewall (`iptables -F`) removes every rule
    // of the filter table, and leaves the bridges: the next container
    // started puts back what every network needs, before it runs.
    host.sh("iptables -w -F").success();
    probe("red", "10.86.0.1", "10.86.0.2", "10.86.1.2");
    stop(red);
    stop(blue);
    store.assert_nothing_left("red", &addresses(&["10.86.0.2", "10.86.0.3"]));
    store.assert_nothing_left("blue", &addresses(&["10.86.1.2", "10.86.1.3"]));
}

#[test]
fn network_none_has_only_lo() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let script = "ip -o link; echo --; cat /etc/hosts; echo --; \
                  ping -c 1 -W 5 127.0.0.1 >/dev/null && echo lo works";
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "--",
        "sh",
        "-c",
        script,
    ];
    let seen = store.ok(&args);
    let parts: Vec<&str> = seen.split("--\n").collect();
    let [links, hosts, ping] = parts[..] else {
        panic!("unexpected output:\n{seen}");
    };
    assert_eq!(links.lines().count(), 1, "only lo:\n{links}");
    assert!(links.starts_with("1: lo: "), "{links}");
    assert!(
        link_flags(links).iter().any(|flag| flag == "UP"),
        "lo is up: {links}"
    );
    assert_eq!(
        hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    assert_eq!(ping, "lo works\n");
    assert!(
        host.links().iter().all(|name| !name.starts_with("veth")),
        "no veth for a container without a network"
    );
    host.assert_nothing_left(&[]);
}

#[test]
fn a_published_port_answers_on_the_hosts_addresses_and_from_outside() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let outside = host.connect_second_namespace();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let script = "mkdir /www && echo hello from web > /www/index.html && echo ready && \
                  exec httpd -f -p 80 -h /www";
    // 0.0.0.0 means every address, as no address does.
    let ports = ["-p", "8080:80", "-p", "0.0.0.0:8083:80"];
    let web = store.start_with("web", &ports, script);
    let pid_1 = web.only_child();
    wait_for("httpd to listen on port 80", DEFAULT_DEADLINE, || {
        listening(pid_1, 80).then_some(())
    });
    for port in [8080, 8083] {
        for address in [HOST_ADDRESS, Ipv4Addr::LOCALHOST] {
            let url = format!("http://{address}:{port}/");
            let page = fetch(host.command("busybox"), &url).success().stdout_text();
            assert_eq!(page, "hello from web\n", "from the host, {url}");
        }
        let url = format!("http://{HOST_ADDRESS}:{port}/");
        let page = fetch(outside.command("busybox"), &url)
            .success()
            .stdout_text();
        assert_eq!(
            page, "hello from web\n",
            "from {OUTSIDE_ADDRESS}, another namespace, {url}"
        );
    }
    // The ports are taken while web runs; one run cannot take a port twice.
    for (taken, port) in [("8080:80", "8080"), ("127.0.0.1:8083:80", "8083")] {
        one_line_125(
            store.run(&["run", "--rm", "-p", taken, "busybox", "--", "true"]),
            port,
        );
    }
    let twice = [
        "run", "--rm", "-p", "8082:80", "-p", "8082:81", "busybox", "--", "true",
    ];
    one_line_125(store.run(&twice), "8082");
    // Out past the host: the outside namespace sees a container's
    // connection come from the host's address (masquerade), through the
    // host's forwarding. A CGI of busybox's httpd says whom it answers.
    let www = sandbox.join("outside-www");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    let cgi = www.join("cgi-bin/peer");
    std::fs::write(
        &cgi,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listen = format!("{OUTSIDE_ADDRESS}:9000");
    let mut httpd = outside.command("busybox");
    httpd.args(["httpd", "-f", "-p", &listen, "-h"]).arg(&www);
    let server = sandbox.spawn(httpd);
    // Once nsenter has become busybox, /proc/PID/net shows the outside
    // namespace's sockets, not the machine's.
    wait_for_exec(&server, "busybox");
    wait_for("httpd to listen outside", DEFAULT_DEADLINE, || {
        listening(server.pid(), 9000).then_some(())
    });
    let url = format!("http://{listen}/cgi-bin/peer");
    let wget = [
        "run", "--rm", "busybox", "--", "wget", "-q", "-O-", "-Y", "off", &url,
    ];
    assert_eq!(
        store.ok(&wget),
        format!("{HOST_ADDRESS}\n"),
        "{OUTSIDE_ADDRESS} must see a container's connection come from the host's address \
         (masquerade), not the container's"
    );
    kill(server);
    stop(web);
    store.assert_nothing_left("tara", &addresses(&["10.87.0.2", "10.87.0.3"]));
    let rules = host.iptables_rules();
    assert!(
        !rules.contains("8080") && !rules.contains("8083"),
        "the ports' rules are removed with their container:\n{rules}"
    );
}

#[test]
fn etc_hosts_hostname_and_resolv_conf_are_the_containers_own() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let script = "cat /etc/hosts; echo --; cat /etc/hostname; echo --; cat /etc/resolv.conf";
    let args = [
        "run",
        "--name",
        "web",
        "--hostname",
        "box",
        "busybox",
        "--",
        "sh",
        "-c",
        script,
    ];
    let seen = store.ok(&args);
    let parts: Vec<&str> = seen.split("--\n").collect();
    let [hosts, hostname, resolv_conf] = parts[..] else {
        panic!("unexpected output:\n{seen}");
    };
    assert_eq!(
        hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.87.0.2\tbox web\n"
    );
    assert_eq!(hostname, "box\n");
    assert_eq!(resolv_conf, expected_resolv_conf());
    // They live in the container's directory...
    let dir = store
        .root()
        .join("containers")
        .join(store.container_id("web"));
    for (file, seen) in [
        ("hosts", hosts),
        ("hostname", hostname),
        ("resolv.conf", resolv_conf),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).unwrap_or_default(),
            seen,
            "{file} in the container's directory"
        );
        // ... and the container's upper dir has at most an empty file to
        // mount them on.
        let in_upper = dir.join("upper/etc").join(file);
        if let Ok(metadata) = std::fs::metadata(&in_upper) {
            assert_eq!(metadata.len(), 0, "{} is written", in_upper.display());
        }
    }
    // The image is untouched.
    let layer = store.top_layer("busybox");
    assert_eq!(
        std::fs::read(layer.join("etc/hosts")).unwrap(),
        std::fs::read(busybox_rootfs().join("etc/hosts")).unwrap(),
        "the image's /etc/hosts changed"
    );
    for file in ["hostname", "resolv.conf"] {
        assert!(
            !layer.join("etc").join(file).exists(),
            "{file} in the layer"
        );
    }
    let diff = store.ok(&["diff", "web"]);
    let allowed = ["C /etc", "A /etc/hostname", "A /etc/resolv.conf"];
    assert!(
        diff.lines().all(|line| allowed.contains(&line)),
        "diff shows at most the mount points:\n{diff}"
    );
    // A hostname equal to the name is written once.
    let args = [
        "run",
        "--rm",
        "--name",
        "twin",
        "--hostname",
        "twin",
        "busybox",
        "--",
        "cat",
        "/etc/hosts",
    ];
    let hosts = store.ok(&args);
    assert!(hosts.ends_with("\n10.87.0.2\ttwin\n"), "{hosts}");
    // A hostname is one word of /etc/hosts.
    for bad in ["a b", "a\nb"] {
        let args = ["run", "--rm", "--hostname", bad, "busybox", "--", "true"];
        one_line_125(store.run(&args), "hostname");
    }
    store.ok(&["rm", "web"]);
    store.assert_nothing_left("tara", &[TARA_FIRST]);
}

#[test]
fn twenty_containers_started_together_get_twenty_distinct_addresses() {
    const COUNT: usize = 20;
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let script = format!("ip -o -4 addr show dev eth0; {READY_THEN_WAIT}");
    let mut runtimes: Vec<Running> = (0..COUNT)
        .map(|n| {
            let name = format!("c{n}");
            let args = [
                "run", "--init", "--rm", "--name", &name, "busybox", "--", "sh", "-c", &script,
            ];
            sandbox.spawn(store.command(&args))
        })
        .collect();
    // They take turns for their leases (the store's lock): on a slow
    // machine, the last one may start long after the first.
    // A runtime that exits (with an error) fails the test at once.
    let turns = DEFAULT_DEADLINE * COUNT as u32 / 2;
    let exited = wait_for("every container to lease an address", turns, || {
        let exited = runtimes
            .iter()
            .position(|runtime| matches!(process_state(runtime.pid()), Some('Z') | None));
        match exited {
            Some(index) => Some(Some(index)),
            None => (store.leases("tara").len() >= COUNT).then_some(None),
        }
    });
    if let Some(index) = exited {
        runtimes[index].fail("a runtime exited before every container was up");
    }
    // All of them are up at once: none has given its address back yet.
    for runtime in &mut runtimes {
        runtime.wait_for_line("ready");
    }
    let leases = store.leases("tara");
    assert_eq!(leases.len(), COUNT, "one lease each: {leases:?}");
    let inspected = store.inspect("tara");
    let listed = inspected["containers"].as_array().unwrap().len();
    assert_eq!(
        listed, COUNT,
        "network inspect tara lists them:\n{inspected:#}"
    );
    for runtime in &runtimes {
        runtime.signal(Signal::SIGTERM);
    }
    // They take turns to give their leases back, too.
    wait_for("every runtime to exit", turns, || {
        let exited = |runtime: &Running| matches!(process_state(runtime.pid()), Some('Z') | None);
        runtimes.iter().all(exited).then_some(())
    });
    let mut seen: Vec<String> = runtimes
        .into_iter()
        .map(|runtime| {
            let lines = wait_for_143(runtime);
            let line = lines
                .iter()
                .find(|line| line.contains(" inet "))
                .unwrap_or_else(|| panic!("no address on eth0: {lines:?}"));
            let address = line.split_whitespace().nth(3).unwrap();
            address.split('/').next().unwrap().to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), COUNT, "distinct addresses: {seen:?}");
    let mut leased = leases.clone();
    leased.sort();
    assert_eq!(seen, leased, "each container has its leased address");
    let all: Vec<Ipv4Addr> = leases.iter().map(|a| a.parse().unwrap()).collect();
    store.assert_nothing_left("tara", &all);
}

#[test]
fn nothing_is_left_after_an_exit_a_signal_a_kill_or_a_failed_start() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    // A normal exit.
    store.ok(&["run", "--rm", "busybox", "--", "true"]);
    store.assert_nothing_left("tara", &[TARA_FIRST]);
    // A signal: the runtime forwards SIGTERM, the command dies of it.
    let runtime = store.start("stopped", &["-p", "8080:80"]);
    assert_eq!(store.leases("tara"), ["10.87.0.2"]);
    let id = store.container_id("stopped");
    let veth = format!("veth{}", &id[..11]);
    assert!(
        host.links().contains(&veth),
        "the host end of the container's veth is {veth}: {:?}",
        host.links()
    );
    stop(runtime);
    store.assert_nothing_left("tara", &[TARA_FIRST]);
    // A runtime killed with SIGKILL cannot clean up: the next container's
    // allocation reclaims its lease and its port's rules, from what the
    // lease says, even when that container publishes nothing.
    let mut killed = store.start("killed", &["-p", "8080:80"]);
    killed.signal(Signal::SIGKILL);
    let _ = killed.wait();
    store.ok(&["run", "--rm", "busybox", "--", "true"]);
    store.assert_nothing_left("tara", &addresses(&["10.87.0.2", "10.87.0.3"]));
    let rules = host.iptables_rules();
    assert!(
        !rules.contains("8080"),
        "the killed container's port rules are left:\n{rules}"
    );
    // A failed start: a command the image does not have.
    store
        .run(&["run", "--rm", "busybox", "--", "no-such-command"])
        .code(127);
    store.assert_nothing_left("tara", &[TARA_FIRST]);
    // A failed start: an image that does not exist, the network does.
    one_line_125(
        store.run(&["run", "--rm", "no-such-image", "--", "true"]),
        "no-such-image",
    );
    store.assert_nothing_left("tara", &[TARA_FIRST]);
    // A failed start once the network is wired (lease, port rules, veth):
    // an image whose /etc is a symlink, here to a directory of the sandbox.
    // Followed, it would have the runtime write and mount the container's
    // files there, on the host's side.
    let target = sandbox.join("etc-target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("hosts"), "the target's own\n").unwrap();
    let rootfs = private_busybox_rootfs(&sandbox);
    std::fs::remove_dir_all(rootfs.join("etc")).unwrap();
    std::os::unix::fs::symlink(&target, rootfs.join("etc")).unwrap();
    store.ok(&["image", "import", "etc-link", rootfs.to_str().unwrap()]);
    one_line_125(
        store.run(&["run", "--rm", "-p", "8081:80", "etc-link", "--", "true"]),
        "/etc",
    );
    store.assert_nothing_left("tara", &[TARA_FIRST]);
    let rules = host.iptables_rules();
    assert!(
        !rules.contains("8081"),
        "the failed container's port rules are left:\n{rules}"
    );
    let mut at_target: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    at_target.sort();
    assert_eq!(at_target, ["hosts"], "files were made at /etc's target");
    assert_eq!(
        std::fs::read_to_string(target.join("hosts")).unwrap(),
        "the target's own\n",
        "the file at /etc's target changed"
    );
}

#[test]
fn network_rm_is_refused_while_a_container_uses_it() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    assert_eq!(store.ok(&["network", "create", "red"]), "red\n");
    assert!(host.links().contains(&"tara-red".to_string()));
    let user = store.start("the-user", &["--network", "red"]);
    one_line_125(store.run(&["network", "rm", "red"]), "the-user");
    stop(user);
    assert_eq!(store.ok(&["network", "rm", "red"]), "red\n");
    assert!(
        !host.links().contains(&"tara-red".to_string()),
        "the bridge is removed: {:?}",
        host.links()
    );
    let rules = host.iptables_rules();
    assert!(
        !rules.contains("tara-red") && !rules.contains("10.86.0."),
        "the network's rules are removed:\n{rules}"
    );
    assert!(
        !rules.contains("TARA"),
        "tara's chains are removed with the last network:\n{rules}"
    );
    assert_eq!(
        store.ok(&["network", "ls"]).lines().count(),
        1,
        "only the header"
    );
    one_line_125(store.run(&["network", "rm", "red"]), "red");
    // The default network can be removed when unused, and comes back.
    store.ok(&["run", "--rm", "busybox", "--", "true"]);
    assert_eq!(store.ok(&["network", "rm", "tara"]), "tara\n");
    assert!(!host.links().contains(&"tara0".to_string()));
    store.ping_gateway_from_a_container();
    assert!(host.links().contains(&"tara0".to_string()));
    store.assert_nothing_left("tara", &[TARA_FIRST]);
}

#[test]
fn bad_networks_and_a_full_subnet_give_one_line_and_125() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    // A route of the host namespace: 198.51.100.0/24.
    let _outside = host.connect_second_namespace();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let create = |args: &[&str]| {
        let mut all = vec!["network", "create"];
        all.extend_from_slice(args);
        store.run(&all)
    };
    create(&["--subnet", "10.90.0.0/24", "red"])
        .success()
        .stdout("red\n");
    create(&["--subnet", "10.91.0.0/30", "tiny"])
        .success()
        .stdout("tiny\n");
    let listed = store.ok(&["network", "ls"]);
    let bad = [
        (vec!["--subnet", "10.90.0.128/25", "overlaps"], "10.90.0"),
        (vec!["--subnet", "10.92.0.0/24", "red"], "red"),
        (
            vec!["--subnet", "10.92.0.1/24", "host-bits"],
            "10.92.0.1/24",
        ),
        (
            vec!["--subnet", "10.92.0.0/31", "too-small"],
            "10.92.0.0/31",
        ),
        (
            vec!["--subnet", "10.92.0.0/33", "no-such-prefix"],
            "10.92.0.0/33",
        ),
        (vec!["--subnet", "not-a-cidr", "nonsense"], "not-a-cidr"),
        (
            vec![
                "--subnet",
                "10.92.0.0/24",
                "--gateway",
                "10.93.0.1",
                "outside",
            ],
            "10.93.0.1",
        ),
        (
            vec![
                "--subnet",
                "10.92.0.0/24",
                "--gateway",
                "10.92.0.0",
                "network-address",
            ],
            "10.92.0.0",
        ),
        (
            vec![
                "--subnet",
                "10.92.0.0/24",
                "--gateway",
                "10.92.0.255",
                "broadcast",
            ],
            "10.92.0.255",
        ),
        (
            vec!["--subnet", "198.51.100.0/25", "on-a-route"],
            "198.51.100.0",
        ),
        (
            vec!["--subnet", "10.92.0.0/24", "_starts-badly"],
            "_starts-badly",
        ),
        (vec!["--subnet", "10.92.0.0/24", "has space"], "has space"),
        // The default network's, though it does not exist yet.
        (vec!["--subnet", "10.87.3.0/24", "in-tara"], "10.87.3.0/24"),
        (vec!["--subnet", "127.0.0.0/8", "loopback"], "127.0.0.0/8"),
    ];
    for (args, words) in bad {
        let failed = create(&args);
        let what = format!("network create {}", args.join(" "));
        let failed = failed.code(125);
        let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
        assert_eq!(
            stderr.lines().count(),
            1,
            "{what}: one line on stderr: {stderr:?}"
        );
        assert!(stderr.contains(words), "{what}: {words:?} in {stderr:?}");
    }
    let long = "n".repeat(65);
    one_line_125(create(&["--subnet", "10.92.0.0/24", &long]), &long);
    // An interface of the host that has the bridge's name, here a bridge
    // made by hand, is not taken over, nor changed.
    host.sh("ip link add tara-lan type bridge").success();
    let lan = "ip addr show dev tara-lan";
    let before = host.sh(lan).success().stdout_text();
    one_line_125(create(&["--subnet", "10.92.0.0/24", "lan"]), "tara-lan");
    let after = host.sh(lan).success().stdout_text();
    assert_eq!(after, before, "tara-lan changed");
    let rules = host.iptables_rules();
    assert!(!rules.contains("tara-lan"), "rules for tara-lan:\n{rules}");
    host.sh("ip link del tara-lan").success();
    one_line_125(
        store.run(&["run", "--rm", "--network", "nope", "busybox", "--", "true"]),
        "no such network: nope",
    );
    // A /30 has one address besides its gateway.
    let only = store.start("only", &["--network", "tiny"]);
    assert_eq!(store.leases("tiny"), ["10.91.0.2"]);
    let full = store.run(&["run", "--rm", "--network", "tiny", "busybox", "--", "true"]);
    let full = full.code(125);
    let stderr = String::from_utf8_lossy(&full.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(
        stderr.contains("tiny") && stderr.contains("full"),
        "the network is named full: {stderr:?}"
    );
    stop(only);
    assert_eq!(
        store.ok(&["network", "ls"]),
        listed,
        "the failed commands changed the networks"
    );
    let mut bridges: Vec<String> = host
        .links()
        .into_iter()
        .filter(|name| name.starts_with("tara"))
        .collect();
    bridges.sort();
    assert_eq!(
        bridges,
        ["tara-red", "tara-tiny"],
        "the failed commands made bridges"
    );
    store.assert_nothing_left("tiny", &addresses(&["10.91.0.2"]));
}

#[test]
fn network_ls_and_inspect_show_the_networks_and_their_containers() {
    let sandbox = Sandbox::new();
    let host = HostNetns::new();
    let store = Store::new(&sandbox, &host);
    store.import_busybox();
    let long = "a-network-with-a-rather-long-name";
    store.ok(&["network", "create", "red"]);
    store.ok(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/16",
        "--gateway",
        "10.99.0.254",
        "blue",
    ]);
    store.ok(&["network", "create", long]);
    assert_eq!(bridge_of(long).len(), 15);
    let links = host.links();
    for bridge in ["tara-red", "tara-blue", &bridge_of(long)] {
        assert!(
            links.iter().any(|name| name == bridge),
            "{bridge} in {links:?}"
        );
    }
    let options = [
        "--network",
        "red",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:5353:53/udp",
    ];
    let web = store.start("web", &options);
    let listed = store.ok(&["network", "ls"]);
    let inspected = store.ok(&["network", "inspect", "red"]);
    let id = store.container_id("web");
    let json: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(json["containers"][0]["id"], id.as_str());
    let mut settings = snapshot_settings(STEP);
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[ID]");
    settings.bind(|| {
        insta::assert_snapshot!("network-ls", listed);
        insta::assert_snapshot!("network-inspect", inspected);
    });
    stop(web);
    assert_eq!(store.inspect("red")["containers"], serde_json::json!([]));
    let counts: Vec<String> = store
        .ok(&["network", "ls"])
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().last().unwrap().to_string())
        .collect();
    assert_eq!(counts, ["0", "0", "0"]);
    store.assert_nothing_left("red", &addresses(&["10.86.0.2"]));
}

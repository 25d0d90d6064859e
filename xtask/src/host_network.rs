//! `cargo xtask test` leaves the machine's network as it found it.
//!
//! Step 04 creates bridges, veth pairs and iptables rules and sets sysctls.
//! The tests do all that in network namespaces of their own: a slip (one
//! command run in the wrong namespace) would change the machine's network
//! instead, and nothing else would notice: an interface left behind, a NAT
//! rule, `ip_forward` switched on. So `test_everything` takes a [`Snapshot`]
//! of the machine's network namespace before its first check and another
//! after its last, and fails, with the difference, when they differ.
//!
//! Everything here only reads: every command lists, none changes anything.

use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One command whose output goes into a snapshot.
struct Probe {
    program: &'static str,
    args: &'static [&'static str],
    /// The firewall commands take CAP_NET_ADMIN even to read.
    needs_root: bool,
    /// Removes from the output what changes by itself.
    normalize: fn(&str) -> String,
}

const PROBES: [Probe; 10] = [
    // Interfaces with their details, without statistics (no -s).
    Probe {
        program: "ip",
        args: &["-details", "link", "show"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "ip",
        args: &["-details", "address", "show"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "ip",
        args: &["-4", "route", "show", "table", "all"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "ip",
        args: &["-6", "route", "show", "table", "all"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "ip",
        args: &["-4", "rule", "show"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "ip",
        args: &["-6", "rule", "show"],
        needs_root: false,
        normalize: normalize_ip,
    },
    // Not the namespace itself, but what `ip netns add` leaves in /run/netns
    // when a test forgets to delete it.
    Probe {
        program: "ip",
        args: &["netns", "list"],
        needs_root: false,
        normalize: normalize_ip,
    },
    Probe {
        program: "iptables-save",
        args: &[],
        needs_root: true,
        normalize: normalize_iptables_save,
    },
    Probe {
        program: "ip6tables-save",
        args: &[],
        needs_root: true,
        normalize: normalize_iptables_save,
    },
    Probe {
        program: "nft",
        args: &["list", "ruleset"],
        needs_root: true,
        normalize: normalize_nft,
    },
];

/// The sysctls a network setup changes, besides the per-interface ones of
/// every interface (`net.ipv4.conf.IFACE.forwarding` and `route_localnet`).
const SYSCTLS: [&str; 6] = [
    "net.ipv4.ip_forward",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
    "net.ipv4.conf.all.rp_filter",
];

/// The per-interface sysctls read for every directory of
/// /proc/sys/net/ipv4/conf (all, default, lo, eth0...).
const INTERFACE_SYSCTLS: [&str; 2] = ["forwarding", "route_localnet"];

/// The state of the machine's network namespace, as the commands print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    /// The command, or "sysctl".
    title: String,
    /// The normalized output, or why it could not be read.
    reading: Result<String, String>,
}

impl Snapshot {
    /// Runs every probe in this process's network namespace (the machine's:
    /// xtask runs in it). A command that is missing or fails gives a section
    /// that says so (see [`Snapshot::unreadable`]), except `ip`, which
    /// the workshop needs anyway.
    pub fn take() -> Result<Snapshot> {
        let mut sections = Vec::new();
        for probe in &PROBES {
            let title = std::iter::once(probe.program)
                .chain(probe.args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            let reading = run(probe).map(|output| (probe.normalize)(&output));
            if let (Err(why), "ip") = (&reading, probe.program) {
                bail!("reading the machine's network with `{title}` failed: {why}");
            }
            sections.push(Section { title, reading });
        }
        sections.push(Section {
            title: "sysctl".to_string(),
            reading: Ok(read_sysctls(Path::new("/proc/sys"))),
        });
        Ok(Snapshot { sections })
    }

    /// The sections that could not be read, with why: they are compared
    /// too, but say nothing about the network.
    pub fn unreadable(&self) -> Vec<(&str, &str)> {
        self.sections
            .iter()
            .filter_map(|section| match &section.reading {
                Err(why) => Some((section.title.as_str(), why.as_str())),
                Ok(_) => None,
            })
            .collect()
    }
}

/// Fails, showing what differs, unless `after` equals `before`.
pub fn ensure_unchanged(before: &Snapshot, after: &Snapshot) -> Result<()> {
    let mut report = String::new();
    for (old, new) in before.sections.iter().zip(&after.sections) {
        let (old_text, new_text) = (rendered(&old.reading), rendered(&new.reading));
        if old_text != new_text {
            let _ = writeln!(report, "--- {} (- before, + after)", old.title);
            report.push_str(&line_diff(&old_text, &new_text));
        }
    }
    if !report.is_empty() {
        bail!(
            "the machine's own network namespace changed while the tests ran: a test, or \
             the code it tests, created or changed something outside its own network \
             namespace, or left a named one behind. What differs:\n{report}"
        );
    }
    Ok(())
}

fn rendered(reading: &Result<String, String>) -> String {
    match reading {
        Ok(text) => text.clone(),
        Err(why) => format!("(could not read: {why})\n"),
    }
}

/// The output of `probe`, run as root when it needs it.
fn run(probe: &Probe) -> Result<String, String> {
    let Some(program) = find_program(probe.program) else {
        return Err(format!("{} is not installed", probe.program));
    };
    let mut command = if probe.needs_root && !crate::is_root() {
        // As tests/as-root runs the tests: sudo, which may ask for the
        // password once on a terminal, and fails at once without one.
        let mut sudo = Command::new("sudo");
        sudo.arg("--").arg(&program);
        sudo
    } else {
        Command::new(&program)
    };
    let output = command
        .args(probe.args)
        .env("LC_ALL", "C")
        .stdin(Stdio::inherit())
        .output()
        .map_err(|error| format!("running {}: {error}", program.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        return Err(format!(
            "{} failed ({}): {last}",
            probe.program, output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `name` in the PATH, or in the sbin directories a user's PATH may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `NAME = VALUE` lines of [`SYSCTLS`] and of the [`INTERFACE_SYSCTLS`] of
/// every interface, read from `proc_sys` (/proc/sys); a missing one reads
/// `(absent)`.
fn read_sysctls(proc_sys: &Path) -> String {
    let read = |path: PathBuf| {
        std::fs::read_to_string(path).map_or("(absent)".to_string(), |value| {
            value.split_whitespace().collect::<Vec<_>>().join(" ")
        })
    };
    let mut text = String::new();
    for name in SYSCTLS {
        let value = read(proc_sys.join(name.replace('.', "/")));
        let _ = writeln!(text, "{name} = {value}");
    }
    // Interface names may hold dots (eth0.100): walk the directory.
    let conf = proc_sys.join("net/ipv4/conf");
    let mut interfaces: Vec<String> = std::fs::read_dir(&conf)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    interfaces.sort();
    for interface in interfaces {
        for setting in INTERFACE_SYSCTLS {
            let value = read(conf.join(&interface).join(setting));
            let _ = writeln!(text, "net.ipv4.conf.{interface}.{setting} = {value}");
        }
    }
    text
}

/// `ip` prints a few values that change by themselves: the timers of a
/// bridge and of its ports (`hello_timer 1.23`, `gc_timer 151.72`,
/// `message_age_timer`...), the remaining lifetime of an address learned
/// by DHCP or SLAAC (`valid_lft 86234sec preferred_lft 14234sec`; `forever`
/// stays) and of a route (`expires 1793sec`). They become `<N>`. Spaces
/// between words are squeezed, since `ip` pads the timers.
fn normalize_ip(output: &str) -> String {
    let mut text = String::new();
    for line in output.lines() {
        let mut words: Vec<&str> = Vec::new();
        for word in line.split_whitespace() {
            let counting = words.last().is_some_and(|previous| {
                previous.ends_with("_timer")
                    || ["valid_lft", "preferred_lft", "expires"].contains(previous)
            });
            if counting && word.starts_with(|c: char| c.is_ascii_digit()) {
                words.push("<N>");
            } else {
                words.push(word);
            }
        }
        // `ip netns list` shows the id a namespace has in this one, which
        // the kernel gives on demand (listing a veth whose peer is there
        // is enough): `ns1 (id: 0)`.
        if let [.., "(id:", _] = words[..] {
            words.truncate(words.len() - 2);
        }
        if !words.is_empty() {
            // The indentation shows what belongs to which interface: keep it.
            text.push_str(indentation(line));
            text.push_str(&words.join(" "));
            text.push('\n');
        }
    }
    text
}

fn indentation(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// iptables-save writes when it ran (`# Generated by iptables-save v1.8.9
/// (nf_tables) on Wed Dec  2 06:52:21 2026`, `# Completed on ...`) and each
/// built-in chain's packet and byte counters (`:INPUT ACCEPT [12:3456]`),
/// which grow by themselves: both go. Other comments stay: iptables-nft's
/// warning that legacy tables are present is one.
fn normalize_iptables_save(output: &str) -> String {
    let mut text = String::new();
    for line in output.lines() {
        if line.starts_with("# Generated by") || line.starts_with("# Completed on") {
            continue;
        }
        let line = match line.rsplit_once(" [") {
            Some((chain, counters)) if line.starts_with(':') && is_counters(counters) => chain,
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `12:3456]`: the end of a chain line's counters.
fn is_counters(text: &str) -> bool {
    text.strip_suffix(']')
        .and_then(|pair| pair.split_once(':'))
        .is_some_and(|(packets, bytes)| {
            [packets, bytes]
                .iter()
                .all(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// `nft list ruleset` prints the counters of rules that count (iptables-nft
/// puts one in each rule: `counter packets 12 bytes 3456`) and the time
/// left to set elements that expire (`expires 59s`): both change by
/// themselves and go.
fn normalize_nft(output: &str) -> String {
    let mut text = String::new();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut kept: Vec<&str> = Vec::new();
        let mut index = 0;
        while index < words.len() {
            match &words[index..] {
                ["counter", "packets", _, "bytes", _, ..] => {
                    kept.push("counter");
                    index += 5;
                }
                ["expires", _, ..] => {
                    kept.extend(["expires", "<N>"]);
                    index += 2;
                }
                [word, ..] => {
                    kept.push(word);
                    index += 1;
                }
                [] => unreachable!("index < len"),
            }
        }
        if !kept.is_empty() {
            // The indentation shows the nesting: keep it.
            text.push_str(indentation(line));
            text.push_str(&kept.join(" "));
            text.push('\n');
        }
    }
    text
}

/// The lines of `old` and `new` that differ, `-` removed and `+` added,
/// with two lines of context around each change and `...` between.
fn line_diff(old: &str, new: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut edits: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            edits.push((' ', old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            edits.push(('-', old[i]));
            i += 1;
        } else {
            edits.push(('+', new[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let near_change = |index: usize| {
        let from = index.saturating_sub(CONTEXT);
        let to = (index + CONTEXT + 1).min(edits.len());
        edits[from..to].iter().any(|(mark, _)| *mark != ' ')
    };
    let mut text = String::new();
    let mut skipped = false;
    for (index, (mark, line)) in edits.iter().enumerate() {
        if near_change(index) {
            if skipped {
                text.push_str("  ...\n");
                skipped = false;
            }
            let _ = writeln!(text, "{mark} {line}");
        } else {
            skipped = true;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = "\
5: tara0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000
    link/ether 6e:1f:0a:2b:3c:4d brd ff:ff:ff:ff:ff:ff promiscuity 0 allmulti 0 minmtu 68 maxmtu 65535
    bridge forward_delay 1500 hello_time 200 max_age 2000 ageing_time 30000 stp_state 0 priority 32768 \
vlan_filtering 0 vlan_protocol 802.1Q bridge_id 8000.6e:1f:a:2b:3c:4d designated_root 8000.6e:1f:a:2b:3c:4d \
root_port 0 root_path_cost 0 topology_change 0 topology_change_detected 0 hello_timer    0.00 tcn_timer    0.00 \
topology_change_timer    0.00 gc_timer  151.72 vlan_default_pvid 1
";

    fn snapshot(sections: &[(&str, Result<&str, &str>)]) -> Snapshot {
        Snapshot {
            sections: sections
                .iter()
                .map(|(title, reading)| Section {
                    title: title.to_string(),
                    reading: reading.map(str::to_string).map_err(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn bridge_timers_are_ignored_and_the_rest_kept() {
        let later = BRIDGE.replace("gc_timer  151.72", "gc_timer   12.04");
        let later = later.replace("hello_timer    0.00", "hello_timer    1.37");
        assert_eq!(normalize_ip(BRIDGE), normalize_ip(&later));
        let normalized = normalize_ip(BRIDGE);
        assert!(
            normalized.contains("gc_timer <N> vlan_default_pvid 1"),
            "{normalized}"
        );
        assert!(normalized.contains("forward_delay 1500 hello_time 200"));
        // A real change still shows.
        let stp = BRIDGE.replace("stp_state 0", "stp_state 1");
        assert_ne!(normalize_ip(BRIDGE), normalize_ip(&stp));
    }

    #[test]
    fn lifetimes_count_down_but_forever_stays() {
        let address = "    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\n\
                       \x20      valid_lft 86234sec preferred_lft 86234sec\n\
                       \x20   inet 127.0.0.1/8 scope host lo\n\
                       \x20      valid_lft forever preferred_lft forever\n";
        let later = address.replace("86234sec", "85000sec");
        assert_eq!(normalize_ip(address), normalize_ip(&later));
        assert!(normalize_ip(address).contains("\n       valid_lft <N> preferred_lft <N>\n"));
        assert!(normalize_ip(address).contains("valid_lft forever preferred_lft forever\n"));
        let route = "2001:db8::/64 dev eth0 proto ra metric 100 expires 1793sec pref medium\n";
        assert_eq!(
            normalize_ip(route),
            "2001:db8::/64 dev eth0 proto ra metric 100 expires <N> pref medium\n"
        );
    }

    #[test]
    fn named_namespaces_lose_their_ids() {
        assert_eq!(
            normalize_ip("tara-test-1 (id: 3)\nother\n"),
            "tara-test-1\nother\n"
        );
    }

    #[test]
    fn iptables_save_loses_its_dates_and_counters_only() {
        let save = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Wed Dec  2 06:52:21 2026
*nat
:PREROUTING ACCEPT [12:3456]
:TARA-DNAT - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j TARA-DNAT
-A TARA-DNAT ! -i tara0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.87.0.2:80
COMMIT
# Completed on Wed Dec  2 06:52:21 2026
# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
";
        assert_eq!(
            normalize_iptables_save(save),
            "*nat\n:PREROUTING ACCEPT\n:TARA-DNAT -\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j TARA-DNAT\n\
             -A TARA-DNAT ! -i tara0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.87.0.2:80\n\
             COMMIT\n\
             # Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
        );
        // A rule whose text ends in brackets is no chain line.
        let rule = "-A X -m comment --comment \"[1:2]\" -j ACCEPT\n";
        assert_eq!(normalize_iptables_save(rule), rule);
    }

    #[test]
    fn nft_counters_and_expiry_go() {
        let ruleset = "\
table ip nat {
\tchain POSTROUTING {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.87.0.0/16 oifname != \"tara0\" counter packets 12 bytes 720 masquerade
\t\tip daddr 10.0.0.1 expires 59s
\t}
}
";
        let later = ruleset
            .replace("packets 12 bytes 720", "packets 99 bytes 5940")
            .replace("expires 59s", "expires 3s");
        assert_eq!(normalize_nft(ruleset), normalize_nft(&later));
        assert!(normalize_nft(ruleset)
            .contains("\t\tip saddr 10.87.0.0/16 oifname != \"tara0\" counter masquerade\n"));
    }

    #[test]
    fn the_same_network_passes() {
        let before = snapshot(&[("ip route", Ok("default via 192.0.2.1 dev eth0\n"))]);
        ensure_unchanged(&before, &before.clone()).unwrap();
        let unreadable = snapshot(&[("nft list ruleset", Err("nft is not installed"))]);
        ensure_unchanged(&unreadable, &unreadable.clone()).unwrap();
        assert_eq!(
            unreadable.unreadable(),
            [("nft list ruleset", "nft is not installed")]
        );
    }

    #[test]
    fn a_change_fails_with_the_difference() {
        let before = snapshot(&[
            (
                "ip -4 route show table all",
                Ok("default via 192.0.2.1 dev eth0\n"),
            ),
            (
                "sysctl",
                Ok("net.ipv4.ip_forward = 0\nnet.ipv4.ping_group_range = 1 0\n"),
            ),
        ]);
        let after = snapshot(&[
            (
                "ip -4 route show table all",
                Ok("default via 192.0.2.1 dev eth0\n"),
            ),
            (
                "sysctl",
                Ok("net.ipv4.ip_forward = 1\nnet.ipv4.ping_group_range = 1 0\n"),
            ),
        ]);
        let error = ensure_unchanged(&before, &after).unwrap_err().to_string();
        assert!(error.contains("--- sysctl (- before, + after)"), "{error}");
        assert!(error.contains("- net.ipv4.ip_forward = 0\n+ net.ipv4.ip_forward = 1\n"));
        assert!(!error.contains("route show"), "{error}");
    }

    #[test]
    fn the_diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\n";
        assert_eq!(
            line_diff(old, new),
            "  ...\n  c\n  d\n- e\n+ E\n  f\n  g\n  h\n+ i\n"
        );
        assert_eq!(line_diff("x\n", "x\n"), "");
        assert_eq!(line_diff("", "veth0\n"), "+ veth0\n");
    }

    /// Reads this machine's network twice (only reads):
    /// `cargo test -p xtask -- --ignored --nocapture host_network`.
    #[test]
    #[ignore = "reads the machine's network: run it on purpose"]
    fn this_machine_reads_the_same_twice() {
        let before = Snapshot::take().unwrap();
        for section in &before.sections {
            println!("--- {}\n{}", section.title, rendered(&section.reading));
        }
        ensure_unchanged(&before, &Snapshot::take().unwrap()).unwrap();
    }

    #[test]
    fn port_timers_are_ignored() {
        let port = "    bridge_slave state forwarding priority 32 cost 2 hold_timer    0.00 \
                    message_age_timer    0.00 forward_delay_timer   14.98 topology_change_ack 0\n";
        let later = port.replace("14.98", "10.97");
        assert_eq!(normalize_ip(port), normalize_ip(&later));
        assert_eq!(
            normalize_ip(port),
            "    bridge_slave state forwarding priority 32 cost 2 hold_timer <N> \
             message_age_timer <N> forward_delay_timer <N> topology_change_ack 0\n"
        );
    }

    #[test]
    fn sysctls_are_read_with_every_interface() {
        let dir = std::env::temp_dir().join(format!("host-network-{}", std::process::id()));
        for (path, value) in [
            ("net/ipv4/ip_forward", "0\n"),
            ("net/ipv4/ping_group_range", "1\t0\n"),
            ("net/ipv4/conf/all/forwarding", "0\n"),
            ("net/ipv4/conf/all/route_localnet", "0\n"),
            ("net/ipv4/conf/eth0.100/forwarding", "1\n"),
            ("net/ipv4/conf/eth0.100/route_localnet", "0\n"),
        ] {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, value).unwrap();
        }
        let text = read_sysctls(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.starts_with("net.ipv4.ip_forward = 0\nnet.ipv4.ping_group_range = 1 0\n"));
        assert!(
            text.contains("net.ipv6.conf.all.forwarding = (absent)\n"),
            "{text}"
        );
        assert!(text.contains("net.ipv4.conf.all.route_localnet = 0\n"));
        assert!(text.ends_with(
            "net.ipv4.conf.eth0.100.forwarding = 1\nnet.ipv4.conf.eth0.100.route_localnet = 0\n"
        ));
    }
}

//! iptables rules: masquerade, forwarding, published ports, and the
//! isolation of networks from each other.
//!
//! As docker and the CNI plugins do, the rules are set by running the
//! `iptables` command (Debian and Ubuntu's is iptables-nft: the same rules,
//! stored by the kernel's nf_tables). They live in chains of tara's own, so
//! that they are easy to read (`iptables -S TARA-FORWARD`) and never mixed
//! up with the host's:
//!
//! ```text
//! raw PREROUTING ─▶ TARA-RAW                             nothing to 127.0.0.1 from bridges
//! filter FORWARD ─▶ TARA-ISOLATION-1 ─▶ TARA-ISOLATION-2   drop between networks
//!                ─▶ TARA-FORWARD                          accept to and from bridges
//! nat PREROUTING, OUTPUT (to a local address) ─▶ TARA-DNAT  published ports
//! nat POSTROUTING ─▶ TARA-POSTROUTING                     masquerade
//! ```
//!
//! Every rule is added only when `iptables -C` does not find it, so adding
//! twice changes nothing; a network's rules go with `network rm`, a
//! container's (its published ports) when it ends.

use crate::network::Network;
use crate::ports::PortMapping;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// One iptables rule: `iptables -t TABLE -A CHAIN ARGS...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    pub args: Vec<String>,
}

impl Rule {
    fn new(table: &'static str, chain: &'static str, args: &[&str]) -> Self {
        Rule {
            table,
            chain,
            args: args.iter().map(|arg| arg.to_string()).collect(),
        }
    }
}

/// One of tara's chains, and the built-in chains that jump to it (with
/// the matches of the jump).
struct Chain {
    table: &'static str,
    name: &'static str,
    jumped_from: &'static [(&'static str, &'static [&'static str])],
}

const LOCAL_DESTINATION: &[&str] = &["-m", "addrtype", "--dst-type", "LOCAL"];

/// tara's chains. Where two jump from one built-in chain, the first listed
/// comes first there: isolation is decided before anything is accepted.
const CHAINS: [Chain; 6] = [
    Chain {
        table: "raw",
        name: "TARA-RAW",
        jumped_from: &[("PREROUTING", &[])],
    },
    Chain {
        table: "filter",
        name: "TARA-ISOLATION-1",
        jumped_from: &[("FORWARD", &[])],
    },
    // Reached from TARA-ISOLATION-1 only.
    Chain {
        table: "filter",
        name: "TARA-ISOLATION-2",
        jumped_from: &[],
    },
    Chain {
        table: "filter",
        name: "TARA-FORWARD",
        jumped_from: &[("FORWARD", &[])],
    },
    Chain {
        table: "nat",
        name: "TARA-DNAT",
        jumped_from: &[
            ("PREROUTING", LOCAL_DESTINATION),
            ("OUTPUT", LOCAL_DESTINATION),
        ],
    },
    Chain {
        table: "nat",
        name: "TARA-POSTROUTING",
        jumped_from: &[("POSTROUTING", &[])],
    },
];

/// The rules that keep the other tara networks away from `bridge`'s.
// ANCHOR: isolation
pub fn isolation_rules(bridge: &str) -> Vec<Rule> {
    // EXERCISE 4: isolate the network. Hint: two rules in the filter table, as docker's
    // DOCKER-ISOLATION chains: in TARA-ISOLATION-1, what comes in from this bridge and
    // goes out by another interface jumps to TARA-ISOLATION-2 (-i BRIDGE ! -o BRIDGE
    // -j TARA-ISOLATION-2); there, what goes out to this bridge is dropped (-o BRIDGE
    // -j DROP). Every network adds both, so traffic between two tara bridges is dropped.
    // SOLUTION-BEGIN
    vec![
        Rule::new(
            "filter",
            "TARA-ISOLATION-1",
            &["-i", bridge, "!", "-o", bridge, "-j", "TARA-ISOLATION-2"],
        ),
        Rule::new("filter", "TARA-ISOLATION-2", &["-o", bridge, "-j", "DROP"]),
    ]
    // SOLUTION-END
}
// ANCHOR_END: isolation

/// The rules of a network besides its isolation: masquerade what leaves its
/// subnet for another interface; forward what comes from its bridge, and
/// the replies back.
// ANCHOR: network_rules
pub fn network_rules(network: &Network) -> Vec<Rule> {
    let bridge = network.bridge.as_str();
    let subnet = network.subnet.to_string();
    vec![
        // The source address of what a container sends out becomes the
        // host's: the outside world has no route back to 10.87.0.2.
        Rule::new(
            "nat",
            "TARA-POSTROUTING",
            &["-s", &subnet, "!", "-o", bridge, "-j", "MASQUERADE"],
        ),
        // A published port reached from the host itself (127.0.0.1 too):
        // the container must answer the bridge's address, not the host's.
        Rule::new(
            "nat",
            "TARA-POSTROUTING",
            &[
                "-o",
                bridge,
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                "MASQUERADE",
            ],
        ),
        // route_localnet lets packets to 127.0.0.0/8 in from the bridge,
        // for the published ports: without this rule a container could
        // also reach the services of the host that listen on 127.0.0.1
        // only (CVE-2020-8558 was this hole in Kubernetes). In the raw
        // table, before connection tracking: there the replies of a
        // published port's container are still addressed to the gateway,
        // not yet translated back to 127.0.0.1.
        Rule::new(
            "raw",
            "TARA-RAW",
            &["-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"],
        ),
        Rule::new("filter", "TARA-FORWARD", &["-i", bridge, "-j", "ACCEPT"]),
        Rule::new(
            "filter",
            "TARA-FORWARD",
            &[
                "-o",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ),
    ]
}
// ANCHOR_END: network_rules

/// The rules of one published port of the container at `address`:
/// connections to the host's port are sent to the container's (DNAT), and
/// forwarded to it.
pub fn port_rules(network: &Network, address: Ipv4Addr, port: &PortMapping) -> Vec<Rule> {
    let bridge = network.bridge.as_str();
    let protocol = port.protocol.name();
    let host_port = port.host_port.to_string();
    let container_port = port.container_port.to_string();
    let destination = format!("{address}:{container_port}");
    let mut dnat = vec!["!", "-i", bridge, "-p", protocol, "--dport", &host_port];
    let host_ip = port.host_ip.map(|ip| ip.to_string());
    if let Some(ip) = &host_ip {
        dnat.extend(["-d", ip]);
    }
    dnat.extend(["-j", "DNAT", "--to-destination", &destination]);
    let address = address.to_string();
    vec![
        Rule::new("nat", "TARA-DNAT", &dnat),
        Rule::new(
            "filter",
            "TARA-FORWARD",
            &[
                "-d",
                &address,
                "!",
                "-i",
                bridge,
                "-o",
                bridge,
                "-p",
                protocol,
                "--dport",
                &container_port,
                "-j",
                "ACCEPT",
            ],
        ),
    ]
}

/// Adds tara's chains (once) and the rules of `network`.
pub fn add_network_rules(network: &Network) -> Result<()> {
    ensure_chains()?;
    all_rules(network).iter().try_for_each(add)
}

/// Whether the rules of `network` are in place. A firewall reload
/// (`firewall-cmd --reload`) or `iptables -F` (which flushes the filter
/// table only) removes them and leaves the bridge, so every `run` checks;
/// with one `iptables-save` rather than an `iptables -C` per rule, which
/// would cost a `run` about 20 ms. Every jump into tara's chains must be
/// there, and in each table a rule of tara's naming the bridge.
pub fn network_rules_present(network: &Network) -> bool {
    let Ok(saved) = iptables_save() else {
        return false;
    };
    let lines: Vec<&str> = saved.lines().collect();
    let jumps_present = builtin_chains().into_iter().all(|(table, builtin)| {
        jumps_from(table, builtin)
            .iter()
            .all(|jump| lines.contains(&rule_args(jump, "-A")[2..].join(" ").as_str()))
    });
    // iptables-save prints a rule's options in an order of its own: look
    // for the chain and the bridge only.
    let bridge = format!(" {} ", network.bridge);
    let rule_in_each_table = ["TARA-RAW", "TARA-ISOLATION-2", "TARA-POSTROUTING"]
        .iter()
        .all(|chain| {
            let start = format!("-A {chain} ");
            lines
                .iter()
                .any(|line| line.starts_with(&start) && line.contains(&bridge))
        });
    jumps_present && rule_in_each_table
}

/// `iptables-save`: every table's rules, as `-A CHAIN ...` lines.
fn iptables_save() -> Result<String> {
    let output = Command::new("iptables-save")
        .process_group(0)
        .output()
        .context("running iptables-save (is the iptables package installed?)")?;
    if !output.status.success() {
        bail!(
            "iptables-save: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("iptables-save printed something not UTF-8")
}

/// Removes the rules of `network`, those that exist.
pub fn remove_network_rules(network: &Network) -> Result<()> {
    all_rules(network).iter().try_for_each(delete)
}

fn all_rules(network: &Network) -> Vec<Rule> {
    let mut rules = network_rules(network);
    rules.extend(isolation_rules(&network.bridge));
    rules
}

/// Adds the rules of the container's published ports.
pub fn add_port_rules(network: &Network, address: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
    for port in ports {
        port_rules(network, address, port)
            .iter()
            .try_for_each(add)?;
    }
    Ok(())
}

/// Removes the rules of the container's published ports, those that exist.
pub fn remove_port_rules(
    network: &Network,
    address: Ipv4Addr,
    ports: &[PortMapping],
) -> Result<()> {
    for port in ports {
        port_rules(network, address, port)
            .iter()
            .try_for_each(delete)?;
    }
    Ok(())
}

/// `iptables -N` for each of tara's chains, and the jumps to them.
fn ensure_chains() -> Result<()> {
    for chain in &CHAINS {
        if iptables(&["-t", chain.table, "-S", chain.name]).is_err() {
            iptables(&["-t", chain.table, "-N", chain.name])?;
        }
    }
    for (table, builtin) in builtin_chains() {
        let jumps = jumps_from(table, builtin);
        if jumps.iter().all(exists) {
            continue;
        }
        // Inserted at the top of the built-in chain, before any rule of the
        // host that would drop or reject the packet, and in their order.
        jumps.iter().try_for_each(delete)?;
        for (position, jump) in jumps.iter().enumerate() {
            let position = (position + 1).to_string();
            let mut insert = vec!["-t", table, "-I", builtin, &position];
            insert.extend(jump.args.iter().map(String::as_str));
            iptables(&insert)?;
        }
    }
    Ok(())
}

/// Removes tara's chains and the jumps to them: once no network is left.
pub fn remove_chains() -> Result<()> {
    for (table, builtin) in builtin_chains() {
        jumps_from(table, builtin).iter().try_for_each(delete)?;
    }
    for chain in &CHAINS {
        if iptables(&["-t", chain.table, "-S", chain.name]).is_ok() {
            iptables(&["-t", chain.table, "-F", chain.name])?;
            iptables(&["-t", chain.table, "-X", chain.name])?;
        }
    }
    Ok(())
}

/// The built-in chains that jump to tara's, each once, in order.
fn builtin_chains() -> Vec<(&'static str, &'static str)> {
    let mut builtins = Vec::new();
    for chain in &CHAINS {
        for (builtin, _) in chain.jumped_from {
            if !builtins.contains(&(chain.table, *builtin)) {
                builtins.push((chain.table, *builtin));
            }
        }
    }
    builtins
}

/// The jumps from `builtin` to tara's chains, in the order they must have.
fn jumps_from(table: &'static str, builtin: &'static str) -> Vec<Rule> {
    let mut jumps = Vec::new();
    for chain in CHAINS.iter().filter(|chain| chain.table == table) {
        for (from, matches) in chain
            .jumped_from
            .iter()
            .filter(|(from, _)| *from == builtin)
        {
            let mut args = matches.to_vec();
            args.extend(["-j", chain.name]);
            jumps.push(Rule::new(table, from, &args));
        }
    }
    jumps
}

/// `iptables -A`, unless `iptables -C` finds the rule already.
fn add(rule: &Rule) -> Result<()> {
    if !exists(rule) {
        iptables(&rule_args(rule, "-A"))?;
    }
    Ok(())
}

/// `iptables -D`, if `iptables -C` finds the rule.
fn delete(rule: &Rule) -> Result<()> {
    if exists(rule) {
        iptables(&rule_args(rule, "-D"))?;
    }
    Ok(())
}

fn exists(rule: &Rule) -> bool {
    iptables(&rule_args(rule, "-C")).is_ok()
}

/// `-t TABLE ACTION CHAIN ARGS...`
fn rule_args<'a>(rule: &'a Rule, action: &'a str) -> Vec<&'a str> {
    let mut args = vec!["-t", rule.table, action, rule.chain];
    args.extend(rule.args.iter().map(String::as_str));
    args
}

/// Runs `iptables -w ARGS...` (-w: wait for the lock another iptables holds
/// rather than fail).
fn iptables(args: &[&str]) -> Result<()> {
    // In a process group of its own: a Ctrl-C in the terminal goes to the
    // whole foreground group, and must not kill iptables half-way through
    // the runtime's cleanup.
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .process_group(0)
        .output()
        .context("running iptables (is the iptables package installed?)")?;
    if !output.status.success() {
        bail!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Network {
        Network {
            name: "tara".into(),
            bridge: "tara0".into(),
            subnet: "10.87.0.0/16".parse().unwrap(),
            gateway: "10.87.0.1".parse().unwrap(),
        }
    }

    fn commands(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|rule| rule_args(rule, "-A").join(" "))
            .collect()
    }

    #[test]
    fn a_network_masquerades_and_forwards_its_subnet() {
        let rules = commands(&network_rules(&network()));
        assert_eq!(
            rules,
            [
                "-t nat -A TARA-POSTROUTING -s 10.87.0.0/16 ! -o tara0 -j MASQUERADE",
                "-t nat -A TARA-POSTROUTING -o tara0 -m addrtype --src-type LOCAL -j MASQUERADE",
                "-t raw -A TARA-RAW -i tara0 -d 127.0.0.0/8 -j DROP",
                "-t filter -A TARA-FORWARD -i tara0 -j ACCEPT",
                "-t filter -A TARA-FORWARD -o tara0 -m conntrack --ctstate RELATED,ESTABLISHED \
                 -j ACCEPT",
            ]
        );
    }

    #[test]
    fn a_published_port_is_sent_to_the_container() {
        let port = "127.0.0.1:8080:80/udp".parse().unwrap();
        let rules = commands(&port_rules(&network(), "10.87.0.2".parse().unwrap(), &port));
        assert_eq!(
            rules,
            [
                "-t nat -A TARA-DNAT ! -i tara0 -p udp --dport 8080 -d 127.0.0.1 -j DNAT \
                 --to-destination 10.87.0.2:80",
                "-t filter -A TARA-FORWARD -d 10.87.0.2 ! -i tara0 -o tara0 -p udp --dport 80 \
                 -j ACCEPT",
            ]
        );
    }
}

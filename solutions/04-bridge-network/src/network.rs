//! Networks: a bridge on the host, a subnet, a gateway, and their rules.
//!
//! ```text
//! ROOT/networks/<name>/network.json    name, bridge, subnet, gateway
//! ROOT/networks/<name>/leases/<addr>   one file per address in use (see ipam)
//! ```
//!
//! The state is written first, and the host's side (bridge, sysctls,
//! iptables rules) is then brought up idempotently, every time a container
//! is started on the network: after a reboot, or after a runtime that was
//! killed half-way, the next `run` completes what is missing, and
//! `network rm` removes whatever of it exists.

use crate::firewall;
use crate::ipam;
use crate::netlink::Netlink;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use overlay::store::{self, Locked, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The network a container joins when `run` names none: docker's
/// `bridge` network on `docker0`.
pub const DEFAULT_NETWORK: &str = "tara";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "tara0";
/// The default network's subnet: private addresses (RFC 1918) that miss
/// docker's 172.17.0.0/16 and podman's 10.88.0.0/16.
pub const DEFAULT_SUBNET: &str = "10.87.0.0/16";
/// Where `network create` without `--subnet` takes a free /24 from.
pub const SUBNET_POOL: &str = "10.86.0.0/16";
/// Interface names are at most 15 bytes (the kernel's IFNAMSIZ is 16,
/// with the final NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// A network, as `network.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// The Linux bridge the containers' veths are attached to.
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// The bridge's own address: the containers' default route.
    pub gateway: Ipv4Addr,
}

impl Network {
    /// `address` with the subnet's prefix, as it is put on an interface:
    /// the gateway on the bridge, a container's address on its eth0.
    pub fn with_prefix(&self, address: Ipv4Addr) -> Ipv4Net {
        Ipv4Net::new(address, self.subnet.prefix_len()).expect("a prefix from a subnet")
    }

    /// `ROOT/networks/<name>`.
    pub fn dir(&self, store: &Store) -> PathBuf {
        dir_of(store, &self.name)
    }

    /// `ROOT/networks/<name>/leases`.
    pub fn leases_dir(&self, store: &Store) -> PathBuf {
        self.dir(store).join("leases")
    }
}

/// What `network create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

/// `ROOT/networks`, created when missing, for root only.
pub fn networks_dir(store: &Store) -> Result<PathBuf> {
    let dir = store.root().join("networks");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn dir_of(store: &Store, name: &str) -> PathBuf {
    store.root().join("networks").join(name)
}

/// The network `name`.
pub fn load(store: &Store, name: &str) -> Result<Network> {
    let path = dir_of(store, name).join("network.json");
    let text = match std::fs::read_to_string(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("no such network: {name} (`network ls` lists them)")
        }
        read => read.with_context(|| format!("reading {}", path.display()))?,
    };
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Every network, by name.
pub fn list(store: &Store) -> Result<Vec<Network>> {
    let dir = networks_dir(store)?;
    let mut networks = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name();
        networks.push(load(store, &name.to_string_lossy())?);
    }
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(networks)
}

/// `network create [--subnet CIDR] [--gateway IP] NAME`.
pub fn create(store: &Store, name: &str, options: &CreateOptions) -> Result<Network> {
    check_name(name)?;
    if name == DEFAULT_NETWORK {
        bail!("{DEFAULT_NETWORK} is the default network: it is created on first use");
    }
    let lock = store.lock()?;
    let subnet = match &options.subnet {
        Some(text) => parse_subnet(text)?,
        None => free_subnet_from_pool(store)?,
    };
    let default_subnet: Ipv4Net = DEFAULT_SUBNET.parse().expect("a valid CIDR");
    if overlap(subnet, default_subnet) {
        bail!(
            "subnet {subnet} overlaps {DEFAULT_SUBNET}, kept for the default network \
             {DEFAULT_NETWORK}: choose another"
        );
    }
    let network = Network {
        name: name.to_string(),
        bridge: bridge_name(name),
        subnet,
        gateway: choose_gateway(subnet, options.gateway.as_deref())?,
    };
    add(store, &network, &lock)?;
    Ok(network)
}

/// The network `name` for `run`, brought up on the host; the default
/// network is created on first use.
pub fn for_container(store: &Store, name: &str, lock: &Locked) -> Result<Network> {
    if name == DEFAULT_NETWORK && !dir_of(store, name).exists() {
        let network = Network {
            name: DEFAULT_NETWORK.into(),
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET.parse().expect("a valid CIDR"),
            gateway: "10.87.0.1".parse().expect("a valid address"),
        };
        add(store, &network, lock).context(
            "creating the default network tara: give --network NAME with a network of your own",
        )?;
        return Ok(network);
    }
    let network = load(store, name)?;
    // A flush of the firewall removes the rules of every network, and
    // isolation needs those of both sides: put back all of them.
    if !firewall::network_rules_present(&network) {
        for each in list(store)? {
            firewall::add_network_rules(&each)?;
        }
    }
    bring_up(&network)?;
    Ok(network)
}

/// Checks `network` against the others and the host's routes, records it,
/// and brings it up; a failure leaves nothing of it behind.
fn add(store: &Store, network: &Network, lock: &Locked) -> Result<()> {
    if dir_of(store, &network.name).exists() {
        bail!("a network named {} exists already", network.name);
    }
    check_no_overlap(store, network)?;
    if Netlink::new()?.link_index(&network.bridge)?.is_some() {
        bail!(
            "an interface named {} exists already on the host: tara does not take it over \
             (delete it, or choose another network name)",
            network.bridge
        );
    }
    let staging = store.staging_dir(lock)?;
    std::fs::create_dir(staging.join("leases")).context("creating the leases directory")?;
    let mut json = serde_json::to_vec_pretty(network).context("serializing the network")?;
    json.push(b'\n');
    store::write_atomically(&staging.join("network.json"), &json)?;
    store.publish(&staging, &dir_of(store, &network.name), lock)?;
    if let Err(error) = bring_up(network) {
        // Best effort: the error that matters is the first one.
        let _ = tear_down(network);
        let _ = store.discard(&dir_of(store, &network.name), lock);
        return Err(error);
    }
    Ok(())
}

/// `network rm NAME`: refused while a container is attached.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let lock = store.lock()?;
    let network = load(store, name)?;
    ipam::reclaim_stale(store, &network, &ipam::running_containers(store)?, &lock)?;
    let attached = ipam::attached_names(store, &network)?;
    if !attached.is_empty() {
        bail!(
            "network {name} has containers attached: {} (stop them first)",
            attached.join(", ")
        );
    }
    tear_down(&network)?;
    store.discard(&network.dir(store), &lock)?;
    if list(store)?.is_empty() {
        firewall::remove_chains()?;
    }
    Ok(())
}

/// The host's side of a network: forwarding on, the iptables rules, then
/// `ip link add BRIDGE type bridge; ip addr add GATEWAY/PREFIX dev BRIDGE;
/// ip link set BRIDGE up`. The bridge comes last, so that a bridge that
/// exists means a network that was brought up (after a reboot, neither
/// exists). Its rules may have gone since (a reload of the host's firewall
/// removes them): [`for_container`] checks them.
pub fn bring_up(network: &Network) -> Result<()> {
    // Without forwarding, the host drops what a container sends to the
    // outside world (or to a published port's peer): the bridge only
    // connects the containers to the host itself.
    write_sysctl("net/ipv4/ip_forward", "1")?;
    let mut host = Netlink::new()?;
    if let Some(bridge) = host.link_index(&network.bridge)? {
        return host.set_up(bridge);
    }
    firewall::add_network_rules(network)?;
    let bridge = host.create_bridge(&network.bridge)?;
    host.add_address(bridge, network.with_prefix(network.gateway))?;
    // Published ports answer on 127.0.0.1 too: their DNAT sends packets
    // from a loopback address out of the bridge, which the kernel drops as
    // martians unless route_localnet is set on it.
    write_sysctl(
        &format!("net/ipv4/conf/{}/route_localnet", network.bridge),
        "1",
    )?;
    host.set_up(bridge)
}

/// Removes the bridge and the rules of `network`, whichever exist.
fn tear_down(network: &Network) -> Result<()> {
    firewall::remove_network_rules(network)?;
    let mut host = Netlink::new()?;
    if let Some(index) = host.link_index(&network.bridge)? {
        host.delete_link(index)?;
    }
    Ok(())
}

/// Writes a sysctl of the runtime's own network namespace: /proc/sys/net
/// shows the namespace of the process that opens it.
fn write_sysctl(name: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(name);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// Network names are like container names, and end up in interface names.
pub fn check_name(name: &str) -> Result<()> {
    overlay::container::check_name("network", name)
}

/// The bridge of the network `name`: `tara-NAME` when that fits in an
/// interface name, else `tara-` and 10 hex digits of the name's SHA-256
/// (two long names that differ only at the end get different bridges).
pub fn bridge_name(name: &str) -> String {
    let readable = format!("tara-{name}");
    if readable.len() <= MAX_INTERFACE_NAME {
        return readable;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("tara-{}", &hex[..MAX_INTERFACE_NAME - "tara-".len()])
}

/// An IPv4 subnet in CIDR notation, given by its network address, with
/// room for a gateway and at least one container.
pub fn parse_subnet(text: &str) -> Result<Ipv4Net> {
    let subnet: Ipv4Net = text.parse().with_context(|| {
        format!("invalid subnet {text:?}: use IPv4 CIDR notation, as 10.1.2.0/24")
    })?;
    if subnet.network() != subnet.addr() {
        bail!(
            "invalid subnet {text}: host bits are set; the network is {}",
            subnet.trunc()
        );
    }
    if subnet.prefix_len() > 30 {
        bail!("invalid subnet {text}: a /30 is the smallest with a gateway and a container");
    }
    for (reserved, what) in RESERVED {
        let reserved: Ipv4Net = reserved.parse().expect("a valid CIDR");
        if overlap(reserved, subnet) {
            bail!("invalid subnet {text}: it overlaps {reserved}, {what}");
        }
    }
    Ok(subnet)
}

/// Addresses that mean something else than a host on a LAN (RFC 6890).
const RESERVED: [(&str, &str); 5] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "the loopback addresses"),
    ("169.254.0.0/16", "the link-local addresses"),
    ("224.0.0.0/4", "the multicast addresses"),
    (
        "240.0.0.0/4",
        "reserved addresses and the broadcast address",
    ),
];

/// The gateway: `given`, which must be a host address of `subnet`, or the
/// first host address.
pub fn choose_gateway(subnet: Ipv4Net, given: Option<&str>) -> Result<Ipv4Addr> {
    let Some(text) = given else {
        return subnet
            .hosts()
            .next()
            .context("a subnet without host addresses");
    };
    let gateway: Ipv4Addr = text
        .parse()
        .with_context(|| format!("invalid gateway {text:?}: not an IPv4 address"))?;
    if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
        bail!("invalid gateway {gateway}: not a host address of {subnet}");
    }
    Ok(gateway)
}

/// The first /24 of the pool that no network and no route of the host uses.
fn free_subnet_from_pool(store: &Store) -> Result<Ipv4Net> {
    let pool: Ipv4Net = SUBNET_POOL.parse().expect("a valid CIDR");
    let taken = used_subnets(store)?;
    pool.subnets(24)
        .context("splitting the pool")?
        .find(|candidate| !taken.iter().any(|(used, _)| overlap(*used, *candidate)))
        .with_context(|| format!("every /24 of {SUBNET_POOL} is in use: give --subnet"))
}

/// The subnets of the tara networks and the routes of the host, each with
/// what uses it.
fn used_subnets(store: &Store) -> Result<Vec<(Ipv4Net, String)>> {
    let mut used: Vec<(Ipv4Net, String)> = list(store)?
        .into_iter()
        .map(|network| (network.subnet, format!("network {}", network.name)))
        .collect();
    for route in Netlink::new()?.ipv4_routes()? {
        // The default route (0.0.0.0/0) overlaps everything and says nothing.
        if route.prefix_len() > 0 {
            used.push((route, format!("a route of the host ({route})")));
        }
    }
    Ok(used)
}

/// Refuses a subnet that overlaps another network's or a route of the host:
/// the host could not tell where to send a packet for an address in both.
fn check_no_overlap(store: &Store, network: &Network) -> Result<()> {
    for (used, by) in used_subnets(store)? {
        if overlap(used, network.subnet) {
            bail!(
                "subnet {} overlaps {used}, used by {by}: choose another with --subnet",
                network.subnet
            );
        }
    }
    Ok(())
}

/// Whether two subnets share an address: one contains the other's start.
pub fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_make_readable_bridges_and_long_ones_hashed() {
        assert_eq!(bridge_name("backend"), "tara-backend");
        assert_eq!(bridge_name("1234567890"), "tara-1234567890");
        let long = bridge_name("12345678901");
        assert_eq!(long.len(), MAX_INTERFACE_NAME);
        assert!(long.starts_with("tara-"));
        assert_ne!(bridge_name("frontend-one"), bridge_name("frontend-two"));
    }

    #[test]
    fn subnets_are_network_addresses_with_room_for_two() {
        assert_eq!(
            parse_subnet("10.1.2.0/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(parse_subnet("10.1.2.0/30").unwrap().prefix_len(), 30);
        for bad in [
            "10.1.2.3/24",
            "10.1.2.0/31",
            "10.1.2.0",
            "10.1.2.300/24",
            "fd00::/64",
            "127.0.0.0/8",
            "224.0.0.0/24",
            "255.255.255.0/30",
            "0.0.0.0/0",
        ] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
        let error = parse_subnet("10.1.2.3/24").unwrap_err().to_string();
        assert!(error.contains("10.1.2.0/24"), "{error}");
    }

    #[test]
    fn the_gateway_is_a_host_address_of_the_subnet() {
        let subnet = parse_subnet("10.1.2.0/24").unwrap();
        assert_eq!(
            choose_gateway(subnet, None).unwrap().to_string(),
            "10.1.2.1"
        );
        assert_eq!(
            choose_gateway(subnet, Some("10.1.2.254"))
                .unwrap()
                .to_string(),
            "10.1.2.254"
        );
        for bad in ["10.1.3.1", "10.1.2.0", "10.1.2.255", "gateway"] {
            assert!(choose_gateway(subnet, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnets_overlap_when_one_holds_the_others_start() {
        let net = |text: &str| text.parse::<Ipv4Net>().unwrap();
        assert!(overlap(net("10.0.0.0/8"), net("10.87.0.0/16")));
        assert!(overlap(net("10.87.0.0/16"), net("10.0.0.0/8")));
        assert!(!overlap(net("10.87.0.0/16"), net("10.88.0.0/16")));
    }

    #[test]
    fn names_are_checked_like_container_names() {
        assert!(check_name("back_end.1-x").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}

//! Wiring a container to its network's bridge: a veth pair, one end on the
//! bridge, the other as the container's `eth0`.
//!
//! A veth pair is a virtual cable: what goes in at one end comes out at the
//! other. Created with its peer already in the container's network
//! namespace, it joins the two namespaces; the host's end is then enslaved
//! to the bridge, which switches frames between all its ports like a
//! hardware switch. When the container's last process exits, the kernel
//! destroys its network namespace, and with it `eth0`, and with `eth0` its
//! peer on the host: a veth never outlives its container.

use crate::netlink::Netlink;
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use nix::unistd::Pid;
use std::net::Ipv4Addr;

/// The name of the container's end of the pair, inside its namespace.
pub const CONTAINER_END: &str = "eth0";

/// The host's end of container `id`'s veth pair: `veth` and the ID's first
/// 11 hex digits, 15 bytes, the longest interface name the kernel accepts.
pub fn host_end_name(id: &str) -> String {
    format!("veth{}", &id[..11.min(id.len())])
}

/// Creates the veth pair of the container whose first process is `child`:
/// `host_end` on the host, attached to `bridge` and up; `eth0` in the
/// child's network namespace.
// ANCHOR: create_veth_pair
pub fn create_veth_pair(
    host: &mut Netlink,
    host_end: &str,
    bridge: &str,
    child: Pid,
) -> Result<()> {
    // EXERCISE 2: create the veth pair. Hint: host.create_veth_pair(host_end,
    // CONTAINER_END, child) creates both ends, the peer already in the child's namespace
    // (ip link add HOST_END type veth peer name eth0 netns PID). Netlink's other calls
    // take interface indexes: host.link_index(name) gives Option<u32> (None: no such
    // link), for the bridge and for host_end; then host.set_master(end_index,
    // bridge_index) (ip link set HOST_END master BRIDGE) and host.set_up(end_index).
    todo!("EXERCISE 2: create the veth pair")
}
// ANCHOR_END: create_veth_pair

/// Configures the container's side, through a netlink socket opened in its
/// network namespace: `lo` up, and with `eth0` given (its address with the
/// subnet's prefix, and the gateway) the address, up, and the default route.
// ANCHOR: configure_inside
pub fn configure_inside(inside: &mut Netlink, eth0: Option<(Ipv4Net, Ipv4Addr)>) -> Result<()> {
    // EXERCISE 3: configure the container's interfaces. Hint: a new network namespace
    // has only `lo`, and it is down: inside.link_index("lo") then inside.set_up(index).
    // With Some((address, gateway)): the index of CONTAINER_END, inside.add_address(
    // index, address) (ip addr add), set_up (ip link set eth0 up), and last
    // inside.add_default_route(gateway) (the gateway is reachable only once eth0 is up).
    todo!("EXERCISE 3: configure the container's interfaces")
}
// ANCHOR_END: configure_inside

/// Deletes the host's end of a container's veth pair, if it is still
/// there. The kernel deletes both ends when the container's network
/// namespace dies, but in a worker of its own, some time after the last
/// process exited: deleting it here means it is gone when `run` returns.
pub fn delete_host_end(host: &mut Netlink, name: &str) -> Result<()> {
    let Some(index) = host.link_index(name)? else {
        return Ok(());
    };
    let deleted = host.delete_link(index);
    // The kernel may have been faster, between our lookup and our request.
    if deleted.is_err() && host.link_index(name)?.is_none() {
        return Ok(());
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_end_is_named_after_the_container_in_15_bytes() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(host_end_name(id), "veth0123456789a");
        assert_eq!(host_end_name(id).len(), 15);
    }
}

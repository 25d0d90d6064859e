//! IP address management: which container has which address.
//!
//! As the CNI `host-local` plugin does it: one file per address in use,
//! `ROOT/networks/<name>/leases/<address>`, holding who uses it. A file is
//! created with O_EXCL, which fails when the file exists, so an address can
//! never be handed out twice; and the store's lock (flock) is held around
//! the whole search, so two runtimes never race for the same "first free"
//! address.
//!
//! A lease is given back when its container ends. A runtime killed with
//! SIGKILL cannot give it back: the next allocation reclaims every lease
//! whose container is gone or no longer running.

use crate::firewall;
use crate::netlink::Netlink;
use crate::network::Network;
use crate::ports::PortMapping;
use crate::wiring;
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use overlay::container;
use overlay::store::{Locked, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// What a lease file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The container's ID.
    pub container: String,
    /// Its published ports, so that their rules can be removed even after
    /// the container's runtime was killed.
    pub ports: Vec<PortMapping>,
}

/// Leases the first free address of `subnet`, other than the `gateway`:
/// creates its lease file in `leases_dir` holding `contents`, and returns it.
/// The caller holds the store's lock.
// ANCHOR: allocate
pub fn allocate(
    leases_dir: &Path,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    contents: &[u8],
) -> Result<Ipv4Addr> {
    // EXERCISE 1: lease the first free address. Hint: for each address in subnet.hosts()
    // other than the gateway, create leases_dir.join(address.to_string()) with
    // OpenOptions::new().write(true).create_new(true) (O_EXCL); an error of kind
    // AlreadyExists means taken: try the next; write `contents` into the new file and
    // return the address. When none is left, bail! with a message saying "full".
    // SOLUTION-BEGIN
    for address in subnet.hosts().filter(|address| *address != gateway) {
        let path = leases_dir.join(address.to_string());
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(address);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", path.display()));
            }
        }
    }
    bail!("no free address: {subnet} is full")
    // SOLUTION-END
}
// ANCHOR_END: allocate

/// Leases an address of `network` for the container `id` (reclaim the
/// leases of containers that are gone first: [`reclaim_stale`]).
pub fn lease(
    store: &Store,
    network: &Network,
    id: &str,
    ports: &[PortMapping],
    _lock: &Locked,
) -> Result<Ipv4Addr> {
    let lease = Lease {
        container: id.to_string(),
        ports: ports.to_vec(),
    };
    let contents = serde_json::to_vec(&lease).context("serializing the lease")?;
    allocate(
        &network.leases_dir(store),
        network.subnet,
        network.gateway,
        &contents,
    )
    .with_context(|| format!("network {}", network.name))
}

/// Gives the address back.
pub fn release(store: &Store, network: &Network, address: Ipv4Addr) -> Result<()> {
    let path = network.leases_dir(store).join(address.to_string());
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed.with_context(|| format!("removing the lease {}", path.display())),
    }
}

/// Every lease of `network`: its address, and what the file holds (None
/// when the file is unreadable, as one a runtime was killed writing).
pub fn leases(store: &Store, network: &Network) -> Result<Vec<(Ipv4Addr, Option<Lease>)>> {
    let dir = network.leases_dir(store);
    let mut leases = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Ok(address) = name.parse::<Ipv4Addr>() else {
            continue;
        };
        let lease = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        leases.push((address, lease));
    }
    leases.sort_by_key(|(address, _)| *address);
    Ok(leases)
}

/// The containers that run now, by ID.
pub type Running = HashMap<String, container::State>;

/// Reads every container's state once, for [`attached`] and
/// [`reclaim_stale`] on each network. An error (an unreadable state) is
/// passed on: a lease is never taken from a container that may run.
pub fn running_containers(store: &Store) -> Result<Running> {
    Ok(container::list(store)?
        .into_iter()
        .filter(container::is_running)
        .map(|state| (state.id.clone(), state))
        .collect())
}

/// The live leases of `network`, with their containers.
pub fn attached(
    store: &Store,
    network: &Network,
    running: &Running,
) -> Result<Vec<(Ipv4Addr, Lease, container::State)>> {
    let mut attached = Vec::new();
    for (address, lease) in leases(store, network)? {
        let Some(lease) = lease else { continue };
        if let Some(state) = running.get(&lease.container) {
            attached.push((address, lease, state.clone()));
        }
    }
    Ok(attached)
}

/// The names of the containers attached to `network` now.
pub fn attached_names(store: &Store, network: &Network) -> Result<Vec<String>> {
    Ok(attached(store, network, &running_containers(store)?)?
        .into_iter()
        .map(|(_, _, state)| state.name)
        .collect())
}

/// Removes the leases whose container is gone or stopped, with what their
/// runtime left on the host: port rules, and the veth if the container's
/// namespace still holds it.
pub fn reclaim_stale(
    store: &Store,
    network: &Network,
    running: &Running,
    _lock: &Locked,
) -> Result<()> {
    for (address, lease) in leases(store, network)? {
        let holder = lease.as_ref().map(|lease| lease.container.as_str());
        if holder.is_some_and(|id| running.contains_key(id)) {
            continue;
        }
        if let Some(lease) = &lease {
            firewall::remove_port_rules(network, address, &lease.ports)?;
            wiring::delete_host_end(
                &mut Netlink::new()?,
                &wiring::host_end_name(&lease.container),
            )?;
        }
        release(store, network, address)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lists_its_ports_in_json() {
        let lease = Lease {
            container: "c0ffee".into(),
            ports: vec!["8080:80".parse().unwrap()],
        };
        let json = serde_json::to_string(&lease).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
        assert!(json.contains("\"container\":\"c0ffee\""), "{json}");
    }
}

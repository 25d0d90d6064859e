//! A container's network, from start to end, as step 03's
//! [`Extension`]: what `run` adds to a container of step 03.
//!
//! ```text
//! runtime                                        child (waiting, then running)
//! -------                                        -----------------------------
//! before_start:  bring the network up (bridge, rules)
//!                lease an address, add the port rules,
//!                write hosts, hostname, resolv.conf
//! clone(... | CLONE_NEWNET) ─────────────────▶   a new network namespace: only lo, down
//! child_started: veth pair, host end on the
//!                bridge; lo, eth0, default route
//!                inside
//!                                                prepare_root: bind-mount the three
//!                                                files over the image's /etc/...
//! after_exit:    delete the veth (if the kernel
//!                has not yet), the port rules,
//!                give the address back
//! ```

use crate::etc_files;
use crate::firewall;
use crate::ipam;
use crate::netlink::Netlink;
use crate::network::{self, Network};
use crate::ports::PortMapping;
use crate::wiring;
use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use overlay::container::{Extension, State};
use overlay::store::{Locked, Store};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// `--network none`.
pub const NO_NETWORK: &str = "none";

/// What `run` asks of the network.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// The network's name, or [`NO_NETWORK`].
    pub network: String,
    /// `-p` mappings.
    pub ports: Vec<PortMapping>,
    /// `--hostname`, for /etc/hosts and /etc/hostname.
    pub hostname: Option<String>,
}

/// A container's place on its network, while it exists.
#[derive(Debug)]
pub struct Attachment<'a> {
    store: &'a Store,
    options: NetworkOptions,
    /// Set by `before_start`.
    joined: Option<Joined>,
    /// The container's directory, where its /etc files are.
    dir: PathBuf,
}

/// What the container took on its network.
#[derive(Debug)]
struct Joined {
    network: Network,
    address: Ipv4Addr,
    id: String,
}

impl<'a> Attachment<'a> {
    pub fn new(store: &'a Store, options: NetworkOptions) -> Result<Self> {
        if options.network == NO_NETWORK && !options.ports.is_empty() {
            bail!("-p publishes a port on a network: it cannot be used with --network none");
        }
        for (n, port) in options.ports.iter().enumerate() {
            if let Some(other) = options.ports[..n]
                .iter()
                .find(|other| port.clashes_with(other))
            {
                bail!("-p {port} and -p {other} publish the same port of the host");
            }
        }
        if let Some(hostname) = &options.hostname {
            etc_files::check_hostname(hostname)?;
        }
        Ok(Attachment {
            store,
            options,
            joined: None,
            dir: PathBuf::new(),
        })
    }

    /// Takes an address on the network, under the store's lock.
    fn join(&mut self, state: &State, lock: &Locked) -> Result<()> {
        let network = network::for_container(self.store, &self.options.network, lock)?;
        // Leases of containers killed with SIGKILL, on any network, may
        // hold ports this container wants.
        let networks = network::list(self.store)?;
        let running = ipam::running_containers(self.store)?;
        for network in &networks {
            ipam::reclaim_stale(self.store, network, &running, lock)?;
        }
        check_ports_free(self.store, &networks, &running, &self.options.ports)?;
        let address = ipam::lease(self.store, &network, &state.id, &self.options.ports, lock)?;
        // Kept before the port rules are added: if adding them fails,
        // after_exit still finds the lease to give back.
        let joined = self.joined.insert(Joined {
            network,
            address,
            id: state.id.clone(),
        });
        firewall::add_port_rules(&joined.network, address, &self.options.ports)
    }

    /// The address of the container's eth0, with its network's prefix, and
    /// the gateway.
    fn eth0(&self) -> Option<(Ipv4Net, Ipv4Addr)> {
        self.joined.as_ref().map(|joined| {
            let network = &joined.network;
            (network.with_prefix(joined.address), network.gateway)
        })
    }
}

impl Extension for Attachment<'_> {
    fn namespaces(&self) -> CloneFlags {
        // Also with --network none: a namespace with only lo, cut off.
        CloneFlags::CLONE_NEWNET
    }

    fn before_start(&mut self, state: &State, dir: &Path) -> Result<()> {
        self.dir = dir.to_path_buf();
        if self.options.network != NO_NETWORK {
            let lock = self.store.lock()?;
            self.join(state, &lock)?;
        }
        // As docker, the hostname is the short ID unless --hostname is given.
        let hostname = self
            .options
            .hostname
            .clone()
            .unwrap_or_else(|| state.id[..12].to_string());
        let address = self.joined.as_ref().map(|joined| joined.address);
        etc_files::write(dir, address, &hostname, &state.name)
    }

    // ANCHOR: child_started
    fn child_started(&self, child: Pid) -> Result<()> {
        if let Some(joined) = &self.joined {
            let mut host = Netlink::new()?;
            let host_end = wiring::host_end_name(&joined.id);
            wiring::create_veth_pair(&mut host, &host_end, &joined.network.bridge, child)?;
        }
        let mut inside = Netlink::in_namespace_of(child)?;
        wiring::configure_inside(&mut inside, self.eth0())
    }
    // ANCHOR_END: child_started

    fn prepare_root(&self, merged: &Path) -> Result<()> {
        etc_files::bind_into(&self.dir, merged)
    }

    fn after_exit(&mut self) -> Result<()> {
        let Some(joined) = self.joined.take() else {
            return Ok(());
        };
        let _lock = self.store.lock()?;
        // The veth and the port rules are both tried, whatever fails. The
        // lease goes only once both are gone: a lease left behind is how
        // the next allocation finds, and reclaims, what is left of them.
        let host_end = wiring::host_end_name(&joined.id);
        let veth =
            Netlink::new().and_then(|mut host| wiring::delete_host_end(&mut host, &host_end));
        let rules =
            firewall::remove_port_rules(&joined.network, joined.address, &self.options.ports);
        veth.and(rules)?;
        ipam::release(self.store, &joined.network, joined.address)
    }
}

/// Refuses a host port that a running container has published already:
/// the second DNAT rule would never see a packet.
fn check_ports_free(
    store: &Store,
    networks: &[Network],
    running: &ipam::Running,
    wanted: &[PortMapping],
) -> Result<()> {
    for network in networks {
        for (_, lease, state) in ipam::attached(store, network, running)? {
            for taken in &lease.ports {
                if let Some(port) = wanted.iter().find(|port| port.clashes_with(taken)) {
                    bail!(
                        "port {}/{} of the host is already published by container {} ({taken})",
                        port.host_port,
                        port.protocol.name(),
                        state.name
                    );
                }
            }
        }
    }
    Ok(())
}

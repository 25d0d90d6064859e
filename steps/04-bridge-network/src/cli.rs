//! The command line of step 04: step 03's, with `network ...` and
//! `run --network -p`. In the library, so that step 05 keeps it all.

use crate::attach::{Attachment, NetworkOptions};
use crate::ipam;
use crate::network::{self, CreateOptions, DEFAULT_NETWORK};
use crate::ports::PortMapping;
use anyhow::Result;
use clap::Subcommand;
use overlay::container;
use overlay::store::Store;
use serde::Serialize;

/// `network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network: a bridge, a subnet, and its iptables rules
    Create {
        /// The subnet in CIDR notation; a free /24 of 10.86.0.0/16 by default
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// The bridge's address, the containers' default route; the first
        /// address of the subnet by default
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// The network's name (letters, digits, _ . -); its bridge is
        /// tara-NAME, or tara- and a hash of NAME when that is too long
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls,
    /// Show a network and its containers, as JSON
    Inspect {
        /// The network's name
        name: String,
    },
    /// Remove a network no container is attached to, with its bridge and rules
    Rm {
        /// The network's name
        name: String,
    },
}

/// What step 04 adds to step 03's `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// Connect the container to this network (`none`: only a loopback
    /// interface)
    #[arg(long, value_name = "NAME|none", default_value = DEFAULT_NETWORK)]
    pub network: String,

    /// Publish a container's port on the host's addresses
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]"
    )]
    pub publish: Vec<PortMapping>,
}

impl NetworkArgs {
    /// The container's attachment to its network, for step 03's `run_with`.
    pub fn attachment<'a>(
        &self,
        store: &'a Store,
        hostname: Option<String>,
    ) -> Result<Attachment<'a>> {
        Attachment::new(
            store,
            NetworkOptions {
                network: self.network.clone(),
                ports: self.publish.clone(),
                hostname,
            },
        )
    }
}

/// Runs `network ...`, printing what it shows.
pub fn network_command(store: &Store, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create {
            subnet,
            gateway,
            name,
        } => {
            let options = CreateOptions { subnet, gateway };
            network::create(store, &name, &options)?;
            println!("{name}");
        }
        NetworkCommand::Ls => print_networks(store)?,
        NetworkCommand::Inspect { name } => {
            let mut json = serde_json::to_string_pretty(&inspect(store, &name)?)?;
            json.push('\n');
            print!("{json}");
        }
        NetworkCommand::Rm { name } => {
            network::remove(store, &name)?;
            println!("{name}");
        }
    }
    Ok(())
}

fn print_networks(store: &Store) -> Result<()> {
    let networks = network::list(store)?;
    // As wide as the longest name (network names may have 64 characters).
    let width = networks
        .iter()
        .map(|network| network.name.len())
        .max()
        .unwrap_or(0)
        .max(20);
    println!(
        "{:<width$} {:<15} {:<18} {:<15} CONTAINERS",
        "NAME", "BRIDGE", "SUBNET", "GATEWAY"
    );
    let running = ipam::running_containers(store)?;
    for network in networks {
        println!(
            "{:<width$} {:<15} {:<18} {:<15} {}",
            network.name,
            network.bridge,
            network.subnet.to_string(),
            network.gateway.to_string(),
            ipam::attached(store, &network, &running)?.len()
        );
    }
    Ok(())
}

/// `network inspect`'s JSON.
#[derive(Debug, Serialize)]
pub struct Inspected {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub containers: Vec<InspectedContainer>,
}

/// A container attached to the network.
#[derive(Debug, Serialize)]
pub struct InspectedContainer {
    pub id: String,
    pub name: String,
    pub address: String,
    pub ports: Vec<String>,
}

/// The network `name` and the containers attached to it now.
pub fn inspect(store: &Store, name: &str) -> Result<Inspected> {
    let network = network::load(store, name)?;
    let running = ipam::running_containers(store)?;
    let containers = ipam::attached(store, &network, &running)?
        .into_iter()
        .map(|(address, lease, state): (_, _, container::State)| {
            Ok(InspectedContainer {
                id: state.id,
                name: state.name,
                address: network.with_prefix(address).to_string(),
                ports: lease.ports.iter().map(ToString::to_string).collect(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Inspected {
        name: network.name,
        bridge: network.bridge,
        subnet: network.subnet.to_string(),
        gateway: network.gateway.to_string(),
        containers,
    })
}

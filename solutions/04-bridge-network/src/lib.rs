//! Step 04: a network of its own, on a docker0-style bridge.
//!
//! After step 03 a container has its own processes and files, but it still
//! shares the host's network: its interfaces, addresses, routes and ports.
//! Now each container gets a **network namespace** of its own, wired to a
//! **bridge** on the host the way docker wires its containers to `docker0`:
//!
//! ```text
//!   host network namespace                       container network namespace
//!   ----------------------                       ---------------------------
//!   eth0 (the host's way out)                    lo       127.0.0.1/8
//!     ▲  masquerade (NAT) for 10.87.0.0/16       eth0     10.87.0.2/16 ◀─┐
//!     │                                          default via 10.87.0.1   │
//!   tara0 (bridge) 10.87.0.1/16  ◀── vethXXXX ═══ a veth pair ═══════════┘
//!     ├── vethYYYY ═══ another container's eth0  (10.87.0.3/16)
//!     └── ...
//! ```
//!
//! A network ([`network`]) is a bridge with the gateway address, and
//! iptables rules ([`firewall`]) for masquerade, forwarding, published
//! ports and the isolation between networks. Each container leases an
//! address ([`ipam`]), gets a veth pair with one end on the bridge and the
//! other as its `eth0` ([`wiring`], over rtnetlink: [`netlink`]), and its own
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` ([`etc_files`]).
//! [`attach`] does all of it through step 03's [`overlay::container::Extension`]:
//! in the runtime while step 01's child waits on its sync pipe, and undone
//! when the container ends.

pub mod attach;
pub mod cli;
pub mod etc_files;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod network;
pub mod ports;
pub mod wiring;

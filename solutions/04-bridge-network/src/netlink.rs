//! rtnetlink, synchronously: what `ip link`, `ip addr` and `ip route` say to
//! the kernel, without running `ip`.
//!
//! Links, addresses and routes are not files: `ip` changes them by sending
//! messages on a netlink socket, `socket(AF_NETLINK, SOCK_DGRAM,
//! NETLINK_ROUTE)`, and so does this module. A message is a 16-byte header
//! (length, type such as `RTM_NEWLINK`, flags, sequence number, port), a
//! small fixed struct (`ifinfomsg` for links, `ifaddrmsg` for addresses,
//! `rtmsg` for routes) and attributes, each a type-length-value
//! (`IFLA_IFNAME "tara0"`, `IFA_LOCAL 10.87.0.2`, ...). The crate
//! `netlink-packet-route` turns those bytes into Rust values and back; the
//! conversation is ours, and it follows a few rules:
//!
//! * Every request carries `NLM_F_REQUEST`, and a sequence number that the
//!   kernel copies into each of its replies: checking it ensures that we never
//!   take a reply to another request for the answer to ours.
//! * With `NLM_F_ACK`, the kernel answers a request that changes something
//!   (or gets one object) with an `NLMSG_ERROR` message whose error code is 0:
//!   the acknowledgement. Without it a success would be silent, and we
//!   could not tell it from a reply that has not arrived yet.
//! * A failure comes back as `NLMSG_ERROR` too, with a *negative* errno in
//!   it: `-17` is `EEXIST`, "File exists".
//! * `NLM_F_CREATE | NLM_F_EXCL` means "create it, and fail with `EEXIST`
//!   if it is already there", as `ip link add` and `ip addr add` do.
//! * A dump (`NLM_F_DUMP`: list every route, every link) answers with many
//!   messages, several in each datagram, and ends with an `NLMSG_DONE`
//!   message instead of an acknowledgement.
//!
//! A netlink socket talks to the network namespace it was created in, for
//! its whole life: see [`Netlink::in_namespace_of`].

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// A connection to the kernel's routing subsystem (rtnetlink) of one
/// network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    /// The sequence number of the last request sent.
    sequence_number: u32,
}

impl Netlink {
    /// A socket in the runtime's own network namespace.
    pub fn new() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).context("socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE)")?;
        // Port 0 on both sides: bind lets the kernel choose our port number,
        // and connecting to port 0 (the kernel) means that only the kernel's
        // messages reach this socket.
        socket
            .bind(&SocketAddr::new(0, 0))
            .context("bind the netlink socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connect the netlink socket to the kernel")?;
        // Strict checking: the kernel refuses malformed requests instead of
        // ignoring what it does not understand, and filters dumps by the
        // fields we set (the routing table in `ipv4_routes`).
        socket
            .set_netlink_get_strict_chk(true)
            .context("setsockopt NETLINK_GET_STRICT_CHK")?;
        Ok(Self {
            socket,
            sequence_number: 0,
        })
    }

    /// A socket in the network namespace of process `pid`.
    ///
    /// Like `nsenter --target PID --net`, but only for the moment it takes
    /// to open the socket.
    pub fn in_namespace_of(pid: Pid) -> Result<Self> {
        // The rule: a netlink socket belongs for good to the network namespace
        // of the thread that created it, wherever that thread goes next. So:
        // step into the target namespace, create the socket there, and step
        // back. setns(2) moves only the calling thread: the namespace to come
        // back to is this thread's, which must be opened before leaving it.
        let home_path = "/proc/thread-self/ns/net";
        let home = File::open(home_path).with_context(|| format!("open {home_path}"))?;
        let target_path = format!("/proc/{pid}/ns/net");
        let target = File::open(&target_path).with_context(|| format!("open {target_path}"))?;
        setns(&target, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns({target_path}, CLONE_NEWNET)"))?;
        let socket = Self::new();
        // Back home even when the socket failed: everything this thread does
        // next would happen in the container's namespace otherwise.
        setns(&home, CloneFlags::CLONE_NEWNET)
            .context("setns back to the runtime's network namespace")?;
        socket
            .with_context(|| format!("a netlink socket in the network namespace of process {pid}"))
    }

    /// `ip link show NAME`: its index, `None` when there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let context = || format!("ip link show {name}");
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => match replies.as_slice() {
                [RouteNetlinkMessage::NewLink(link)] => Ok(Some(link.header.index)),
                other => Err(unexpected(other)).with_context(context),
            },
            // The kernel's answer for a name that no link has.
            Err(error) if errno(&error) == Some(Errno::ENODEV) => Ok(None),
            Err(error) => Err(error).with_context(context),
        }
    }

    /// `ip link add NAME type bridge`: creates a bridge (fails with "File
    /// exists" if a link has that name) and returns its index.
    pub fn create_bridge(&mut self, name: &str) -> Result<u32> {
        let context = || format!("ip link add {name} type bridge");
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(context)?;
        // The acknowledgement carries no index: ask for it by name.
        self.link_index(name)?
            .with_context(|| format!("{}: the new bridge is not there", context()))
    }

    /// `ip link add HOST_END type veth peer name PEER_NAME netns PID`: a
    /// pair of virtual Ethernet links, a cable with two ends. `HOST_END` is
    /// created here, and the peer directly in the network namespace of process
    /// `peer_netns`, where no name of ours can collide with its name.
    pub fn create_veth_pair(
        &mut self,
        host_end: &str,
        peer_name: &str,
        peer_netns: Pid,
    ) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsPid(peer_netns.as_raw() as u32));
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(host_end.to_string()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| {
            format!("ip link add {host_end} type veth peer name {peer_name} netns {peer_netns}")
        })?;
        Ok(())
    }

    /// `ip link set dev INDEX master MASTER`: plugs link `index` into the
    /// bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Controller(master));
        self.request(RouteNetlinkMessage::SetLink(message), 0)
            .with_context(|| format!("ip link set dev {} master {}", dev(index), dev(master)))?;
        Ok(())
    }

    /// `ip link set dev INDEX up`
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        // `change_mask` says which flags to change, `flags` their new values.
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(message), 0)
            .with_context(|| format!("ip link set dev {} up", dev(index)))?;
        Ok(())
    }

    /// `ip addr add ADDRESS/PREFIX broadcast BRD dev INDEX`: `address` holds
    /// the host's address and the prefix length (10.87.0.2/16). Afterwards
    /// `ip addr` shows `inet 10.87.0.2/16 brd 10.87.255.255 scope global`,
    /// and the kernel has added the route to the subnet through that link.
    pub fn add_address(&mut self, index: u32, address: Ipv4Net) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = address.prefix_len();
        message.header.scope = AddressScope::Universe; // "scope global"
        message.header.index = index;
        // IFA_LOCAL is the address of this host; IFA_ADDRESS is the other
        // end's on a point-to-point link, and the same one everywhere else.
        let host = IpAddr::V4(address.addr());
        message.attributes.push(AddressAttribute::Local(host));
        message.attributes.push(AddressAttribute::Address(host));
        // A /31 (a point-to-point link, RFC 3021) or a /32 has no broadcast.
        if address.prefix_len() <= 30 {
            message
                .attributes
                .push(AddressAttribute::Broadcast(address.broadcast()));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("ip addr add {address} dev {}", dev(index)))?;
        Ok(())
    }

    /// `ip route add default via GATEWAY`: in the main table, with the
    /// protocol (`boot`) and scope (`universe`: the gateway is reached through
    /// a link, the destination is anywhere) that `ip` gives such a route.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = 0; // 0.0.0.0/0: default
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("ip route add default via {gateway}"))?;
        Ok(())
    }

    /// `ip link del dev INDEX`. Deleting one end of a veth pair deletes both,
    /// wherever the other end is.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0)
            .with_context(|| format!("ip link del dev {}", dev(index)))?;
        Ok(())
    }

    /// `ip -4 route show table all`: the destinations of the IPv4 routes of
    /// every table (a default route is 0.0.0.0/0), broadcast routes left
    /// out. The `local` table holds the host's own addresses (`local
    /// 10.87.0.1`), other tables the routes of policy routing: a new
    /// network's subnet must overlap none of them, or the host would no
    /// longer know where to send packets.
    pub fn ipv4_routes(&mut self) -> Result<Vec<Ipv4Net>> {
        let context = || "ip -4 route show table all".to_string();
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        // RT_TABLE_UNSPEC: no filter on the table.
        message.header.table = RouteHeader::RT_TABLE_UNSPEC;
        let replies = self
            .request(RouteNetlinkMessage::GetRoute(message), NLM_F_DUMP)
            .with_context(context)?;
        let mut routes = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewRoute(route) = reply else {
                return Err(unexpected(&[reply])).with_context(context);
            };
            // Broadcast addresses belong to a subnet listed anyway.
            if route.header.kind == RouteType::Broadcast {
                continue;
            }
            // A default route has no destination attribute.
            let destination = route
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(*address),
                    _ => None,
                })
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let prefix = route.header.destination_prefix_length;
            routes.push(Ipv4Net::new(destination, prefix).with_context(context)?);
        }
        routes.sort();
        routes.dedup();
        Ok(routes)
    }

    /// Sends `message` with `flags` (plus `NLM_F_REQUEST`, and `NLM_F_ACK`
    /// unless it is a dump), then reads the kernel's replies until the
    /// acknowledgement, or `NLMSG_DONE` for a dump, and returns the messages
    /// before it. An `NLMSG_ERROR` with a negative errno becomes that error.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence_number = self.sequence_number.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        if flags & NLM_F_DUMP != NLM_F_DUMP {
            header.flags |= NLM_F_ACK;
        }
        header.sequence_number = self.sequence_number;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize(); // fills in the length and the message type
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .context("send a netlink request")?;

        let mut replies = Vec::new();
        loop {
            // One datagram, read whole however long it is.
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .context("receive a netlink reply")?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .context("parse a netlink reply")?;
                if reply.header.sequence_number != self.sequence_number {
                    bail!(
                        "netlink reply to request {} while waiting for request {}",
                        reply.header.sequence_number,
                        self.sequence_number
                    );
                }
                // Messages in a datagram start on 4-byte boundaries.
                let length = (reply.header.length as usize).next_multiple_of(4);
                rest = &rest[length.min(rest.len())..];
                match reply.payload {
                    NetlinkPayload::InnerMessage(message) => replies.push(message),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies), // the acknowledgement
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get()).into()),
                    },
                    // A dump that failed half-way ends with the error here.
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-done.code).into())
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    _ => {} // NLMSG_NOOP, NLMSG_OVERRUN: nothing to keep
                }
            }
        }
    }
}

/// How error messages name a link known by its index.
fn dev(index: u32) -> String {
    format!("index {index}")
}

/// The errno of an error that the kernel returned, if it is one.
fn errno(error: &anyhow::Error) -> Option<Errno> {
    let code = error.downcast_ref::<io::Error>()?.raw_os_error()?;
    Some(Errno::from_raw(code))
}

/// The error for replies that are not what the request asks for.
fn unexpected(replies: &[RouteNetlinkMessage]) -> anyhow::Error {
    let types: Vec<u16> = replies.iter().map(|reply| reply.message_type()).collect();
    anyhow::anyhow!("unexpected netlink replies (message types {types:?})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::ensure;
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::time::Duration;
    use testkit::{in_child, in_fresh_process, wait_for};

    /// Runs `check` as root in a child process with a network namespace of
    /// its own: what it creates there dies with the child.
    #[track_caller]
    fn in_private_network_namespace(check: impl FnOnce() -> Result<()>) {
        in_fresh_process(|| {
            in_child(CloneFlags::CLONE_NEWNET, || {
                check().map_err(|error| format!("{error:#}"))
            })
            .unwrap_or_else(|message| panic!("{message}"));
        });
    }

    /// The output of `command`, which must succeed.
    fn output_of(command: &mut Command) -> Result<String> {
        let output = command
            .output()
            .with_context(|| format!("run {command:?}"))?;
        ensure!(
            output.status.success(),
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `ip ARGS` in this process's network namespace.
    fn ip(args: &[&str]) -> Result<String> {
        output_of(Command::new("ip").args(args))
    }

    /// `ip ARGS` in the network namespace of `pid`.
    fn ip_in(pid: Pid, args: &[&str]) -> Result<String> {
        let pid = pid.to_string();
        output_of(
            Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip"])
                .args(args),
        )
    }

    fn net_namespace_of(process: &str) -> PathBuf {
        std::fs::read_link(format!("/proc/{process}/ns/net")).unwrap_or_default()
    }

    /// A process sleeping in a network namespace of its own, as a
    /// container would be; killed and reaped when dropped.
    struct OtherNamespace(Child);

    impl OtherNamespace {
        fn start() -> Result<Self> {
            let child = Command::new("unshare")
                .args(["--net", "sleep", "30"])
                .spawn()
                .context("spawn unshare --net sleep 30")?;
            let other = Self(child);
            let ours = net_namespace_of("thread-self");
            let pid = other.pid().to_string();
            // unshare(1) leaves our namespace a moment after it starts.
            wait_for(
                "unshare --net to leave our namespace",
                Duration::from_secs(5),
                || {
                    let theirs = net_namespace_of(&pid);
                    (theirs != PathBuf::new() && theirs != ours).then_some(())
                },
            );
            Ok(other)
        }

        fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for OtherNamespace {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn net(cidr: &str) -> Ipv4Net {
        cidr.parse().expect("a valid CIDR")
    }

    #[test]
    fn a_bridge_is_created_found_brought_up_and_given_an_address() {
        in_private_network_namespace(|| {
            let mut netlink = Netlink::new()?;
            ensure!(
                netlink.link_index("tara0")?.is_none(),
                "tara0 exists already"
            );
            let bridge = netlink.create_bridge("tara0")?;
            ensure!(
                netlink.link_index("tara0")? == Some(bridge),
                "link_index disagrees"
            );
            let link = ip(&["-o", "-d", "link", "show", "tara0"])?;
            ensure!(
                link.starts_with(&format!("{bridge}: tara0:")) && link.contains("bridge"),
                "{link}"
            );
            netlink.set_up(bridge)?;
            netlink.add_address(bridge, net("10.87.0.1/16"))?;
            let link = ip(&["-o", "link", "show", "tara0"])?;
            ensure!(
                link.contains(",UP") || link.contains("<UP"),
                "tara0 is not up: {link}"
            );
            let addresses = ip(&["-o", "addr", "show", "dev", "tara0"])?;
            ensure!(
                addresses.contains("inet 10.87.0.1/16 brd 10.87.255.255 scope global tara0"),
                "{addresses}"
            );
            let routes = ip(&["-4", "route", "show", "table", "main"])?;
            ensure!(routes.contains("10.87.0.0/16 dev tara0"), "{routes}");
            Ok(())
        });
    }

    #[test]
    fn creating_an_existing_bridge_fails_with_file_exists() {
        in_private_network_namespace(|| {
            let mut netlink = Netlink::new()?;
            netlink.create_bridge("tara0")?;
            let error = netlink
                .create_bridge("tara0")
                .expect_err("a second tara0 was created");
            let message = format!("{error:#}");
            ensure!(
                message == "ip link add tara0 type bridge: File exists (os error 17)",
                "{message}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_missing_link_has_no_index_and_cannot_be_deleted() {
        in_private_network_namespace(|| {
            let mut netlink = Netlink::new()?;
            ensure!(
                netlink.link_index("nothing0")?.is_none(),
                "nothing0 has an index"
            );
            let message = format!("{:#}", netlink.delete_link(4242).unwrap_err());
            ensure!(
                message == "ip link del dev index 4242: No such device (os error 19)",
                "{message}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_namespace_that_never_had_a_route_has_none() {
        // `ip netns add` makes such a namespace: lo down, no routing table.
        in_private_network_namespace(|| {
            let routes = Netlink::new()?.ipv4_routes()?;
            ensure!(routes.is_empty(), "{routes:?}");
            Ok(())
        });
    }

    #[test]
    fn ipv4_routes_lists_every_table_but_broadcasts() {
        in_private_network_namespace(|| {
            let mut netlink = Netlink::new()?;
            // Bringing lo up fills the `local` table: 127.0.0.0/8 and
            // 127.0.0.1 are local, 127.255.255.255 is a broadcast.
            let lo = netlink.link_index("lo")?.context("no lo")?;
            netlink.set_up(lo)?;
            let routes = netlink.ipv4_routes()?;
            ensure!(
                routes == [net("127.0.0.0/8"), net("127.0.0.1/32")],
                "{routes:?}"
            );
            let bridge = netlink.create_bridge("tara0")?;
            netlink.set_up(bridge)?;
            netlink.add_address(bridge, net("10.87.0.1/16"))?;
            let routes = netlink.ipv4_routes()?;
            let expected = [
                net("10.87.0.0/16"),
                net("10.87.0.1/32"),
                net("127.0.0.0/8"),
                net("127.0.0.1/32"),
            ];
            ensure!(routes == expected, "{routes:?}");
            Ok(())
        });
    }

    #[test]
    fn a_veth_peer_is_created_and_configured_in_another_namespace() {
        in_private_network_namespace(|| {
            let container = OtherNamespace::start()?;
            let pid = container.pid();
            let mut host = Netlink::new()?;
            let bridge = host.create_bridge("tara0")?;
            host.set_up(bridge)?;
            host.add_address(bridge, net("10.87.0.1/16"))?;

            host.create_veth_pair("veth-test0", "eth0", pid)?;
            let host_end = host.link_index("veth-test0")?.context("no veth-test0")?;
            ensure!(
                host.link_index("eth0")?.is_none(),
                "eth0 is on the host's side"
            );
            host.set_master(host_end, bridge)?;
            host.set_up(host_end)?;
            let link = ip(&["-o", "link", "show", "veth-test0"])?;
            ensure!(link.contains("master tara0"), "{link}");
            let links_inside = ip_in(pid, &["-o", "link"])?;
            ensure!(links_inside.contains(": eth0@"), "{links_inside}");

            let home = net_namespace_of("thread-self");
            let mut inside = Netlink::in_namespace_of(pid)?;
            ensure!(
                net_namespace_of("thread-self") == home,
                "we did not come back"
            );
            let eth0 = inside.link_index("eth0")?.context("no eth0 inside")?;
            inside.set_up(eth0)?;
            inside.add_address(eth0, net("10.87.0.2/16"))?;
            inside.add_default_route(Ipv4Addr::new(10, 87, 0, 1))?;
            let addresses = ip_in(pid, &["-o", "addr", "show", "dev", "eth0"])?;
            ensure!(
                addresses.contains("inet 10.87.0.2/16 brd 10.87.255.255 scope global eth0"),
                "{addresses}"
            );
            let routes = ip_in(pid, &["-4", "route"])?;
            ensure!(
                routes.contains("default via 10.87.0.1 dev eth0"),
                "{routes}"
            );
            // lo is down in there: no 127.0.0.0/8.
            let routes = inside.ipv4_routes()?;
            let expected = [net("0.0.0.0/0"), net("10.87.0.0/16"), net("10.87.0.2/32")];
            ensure!(routes == expected, "{routes:?}");
            // The host's socket still sees the host's links only.
            ensure!(
                host.link_index("eth0")?.is_none(),
                "eth0 is on the host's side"
            );
            Ok(())
        });
    }

    #[test]
    fn deleting_one_end_of_a_veth_pair_deletes_both() {
        in_private_network_namespace(|| {
            let container = OtherNamespace::start()?;
            let mut host = Netlink::new()?;
            host.create_veth_pair("veth-test0", "eth0", container.pid())?;
            let mut inside = Netlink::in_namespace_of(container.pid())?;
            ensure!(inside.link_index("eth0")?.is_some(), "no eth0 inside");
            let host_end = host.link_index("veth-test0")?.context("no veth-test0")?;
            host.delete_link(host_end)?;
            ensure!(
                host.link_index("veth-test0")?.is_none(),
                "veth-test0 is still here"
            );
            ensure!(inside.link_index("eth0")?.is_none(), "eth0 is still inside");
            Ok(())
        });
    }
}

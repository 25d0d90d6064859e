//! Published ports: `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The name iptables knows it by (`-p tcp`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `-p` mapping: connections to HOSTPORT on the host (on `host_ip`
/// only, when given) go to CONTAINERPORT in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether both claim the same port of the host: the same protocol and
    /// port, on addresses that overlap (no address means all of them).
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        let addresses_overlap = match (self.host_ip, other.host_ip) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        self.protocol == other.protocol && self.host_port == other.host_port && addresses_overlap
    }
}

impl FromStr for PortMapping {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let usage = || {
            format!("invalid port mapping {text:?}: use [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]")
        };
        let (ports, protocol) = match text.split_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => bail!("{}: the protocol is tcp or udp", usage()),
            None => (text, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [host_port, container_port] => (None, *host_port, *container_port),
            [host_ip, host_port, container_port] => {
                let ip = host_ip
                    .parse::<Ipv4Addr>()
                    .with_context(|| format!("{}: {host_ip:?} is not an IPv4 address", usage()))?;
                // 0.0.0.0, as in docker: every address of the host.
                (
                    Some(ip).filter(|ip| !ip.is_unspecified()),
                    *host_port,
                    *container_port,
                )
            }
            _ => bail!("{}", usage()),
        };
        Ok(PortMapping {
            host_ip,
            host_port: parse_port(host_port).with_context(usage)?,
            container_port: parse_port(container_port).with_context(usage)?,
            protocol,
        })
    }
}

/// A port number, 1 to 65535.
fn parse_port(text: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => bail!("{text:?} is not a port number (1 to 65535)"),
    }
}

impl fmt::Display for PortMapping {
    /// As `-p` takes it: `8080:80/tcp`, `127.0.0.1:8080:80/udp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PortMapping> {
        text.parse()
    }

    #[test]
    fn the_forms_docker_accepts_are_parsed() {
        assert_eq!(parse("8080:80").unwrap().to_string(), "8080:80/tcp");
        assert_eq!(parse("53:5353/udp").unwrap().to_string(), "53:5353/udp");
        let on_loopback = parse("127.0.0.1:8080:80/tcp").unwrap();
        assert_eq!(on_loopback.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(on_loopback.to_string(), "127.0.0.1:8080:80/tcp");
        assert_eq!(parse("0.0.0.0:8080:80").unwrap(), parse("8080:80").unwrap());
    }

    #[test]
    fn bad_mappings_are_refused_with_the_expected_form() {
        for bad in [
            "80",
            "0:80",
            "8080:65536",
            "8080:80/sctp",
            "localhost:8080:80",
            "1:2:3:4",
            "",
        ] {
            let error = format!("{:#}", parse(bad).unwrap_err());
            assert!(error.contains("HOSTPORT:CONTAINERPORT"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_port_clashes_on_the_same_protocol_and_overlapping_addresses() {
        let all = parse("8080:80").unwrap();
        assert!(all.clashes_with(&parse("127.0.0.1:8080:81").unwrap()));
        assert!(!all.clashes_with(&parse("8080:80/udp").unwrap()));
        assert!(!all.clashes_with(&parse("8081:80").unwrap()));
        let one = parse("127.0.0.1:8080:80").unwrap();
        assert!(!one.clashes_with(&parse("198.51.100.1:8080:80").unwrap()));
    }
}

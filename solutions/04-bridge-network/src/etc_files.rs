//! The container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
//!
//! They say who the container is on its network and where it finds names,
//! which the image cannot know. As docker does, the runtime writes them in
//! the container's directory in the store and bind-mounts each file over
//! the image's: the image's layers never change, and the container's
//! writable layer gets at most an empty file to mount on.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The files, by their name in the container's directory and in `/etc`.
pub const FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// docker's nameservers for a host that has none the container can reach.
const FALLBACK_NAMESERVERS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// systemd-resolved's stub resolver, and where it keeps the real servers.
const RESOLVED_STUB: &str = "127.0.0.53";
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// `/etc/hosts`: localhost, and on a network the container's address with
/// its hostname and name.
pub fn hosts(address: Option<Ipv4Addr>, hostname: &str, name: &str) -> String {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(address) = address {
        if hostname == name {
            hosts.push_str(&format!("{address}\t{hostname}\n"));
        } else {
            hosts.push_str(&format!("{address}\t{hostname} {name}\n"));
        }
    }
    hosts
}

/// Refuses a hostname that would not be one line and one word of
/// `/etc/hosts`: a newline in `--hostname` would add a line of its own
/// (`6.6.6.6 bank.example`).
pub fn check_hostname(hostname: &str) -> Result<()> {
    if hostname
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        bail!(
            "invalid hostname {hostname:?}: it goes into /etc/hosts, where spaces, # and \
             control characters do not fit"
        );
    }
    Ok(())
}

/// `/etc/resolv.conf` from the host's: without loopback nameservers, which
/// inside the container would be the container itself, and with docker's
/// fallback when none is left.
pub fn resolv_conf(host: &str) -> String {
    let mut kept = String::new();
    let mut nameservers = 0;
    for line in host.lines() {
        match nameserver_of(line) {
            Some(address) if address.is_loopback() => continue,
            Some(_) => nameservers += 1,
            None => {}
        }
        kept.push_str(line);
        kept.push('\n');
    }
    if nameservers == 0 {
        kept.push_str(FALLBACK_NAMESERVERS);
    }
    kept
}

/// The address of a `nameserver ADDRESS` line.
fn nameserver_of(line: &str) -> Option<IpAddr> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("nameserver"), Some(address)) => address.parse().ok(),
        _ => None,
    }
}

/// The host's resolv.conf; behind systemd-resolved's stub (Ubuntu's
/// default), the file with the servers the stub asks, as docker reads it.
pub fn host_resolv_conf() -> Result<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let only_the_stub = text
        .lines()
        .filter_map(nameserver_of)
        .all(|address| address.to_string() == RESOLVED_STUB);
    if only_the_stub && text.contains(RESOLVED_STUB) {
        if let Ok(upstream) = std::fs::read_to_string(RESOLVED_UPSTREAM) {
            return Ok(upstream);
        }
    }
    Ok(text)
}

/// Writes the three files into the container's directory `dir`.
pub fn write(dir: &Path, address: Option<Ipv4Addr>, hostname: &str, name: &str) -> Result<()> {
    let contents = [
        hosts(address, hostname, name),
        format!("{hostname}\n"),
        resolv_conf(&host_resolv_conf()?),
    ];
    for (file, text) in FILES.iter().zip(contents) {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// In the child, before pivot_root: bind-mounts each file of `dir` over
/// `merged/etc/FILE`. The image is untrusted: were `/etc` or the file a
/// symlink, the mount would follow it, on the host's side of the pivot, to
/// wherever it points. A symlinked file is replaced in the writable layer
/// by a plain one; a symlinked `/etc` is refused.
pub fn bind_into(dir: &Path, merged: &Path) -> Result<()> {
    let etc = merged.join("etc");
    match std::fs::symlink_metadata(&etc) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => bail!("the image's /etc is not a directory: cannot mount /etc/hosts on it"),
        Err(_) => {
            std::fs::create_dir(&etc).with_context(|| format!("creating {}", etc.display()))?
        }
    }
    for file in FILES {
        let target = etc.join(file);
        make_mount_point(&target)?;
        let source = dir.join(file);
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {} on /etc/{file}", source.display()))?;
    }
    Ok(())
}

/// Makes `target` a plain file to mount on: created empty when missing,
/// replaced when it is anything else (a symlink, a directory).
fn make_mount_point(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(metadata) if metadata.is_file() => return Ok(()),
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(target),
        Ok(_) => std::fs::remove_file(target),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("removing {} to mount on it", target.display()))?;
    std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_container_on_its_address() {
        let address = Some("10.87.0.2".parse().unwrap());
        assert_eq!(
            hosts(address, "0123456789ab", "web"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             10.87.0.2\t0123456789ab web\n"
        );
        assert!(hosts(address, "web", "web").ends_with("10.87.0.2\tweb\n"));
        assert!(!hosts(None, "web", "web").contains("web"));
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers() {
        let host = "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n\
                    nameserver ::1\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "search example.org\nnameserver 192.0.2.53\noptions edns0\n"
        );
    }

    #[test]
    fn resolv_conf_falls_back_to_dockers_nameservers() {
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}

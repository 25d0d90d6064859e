//! The kernels: Debian 12's packages, unpacked, with an uncompressed
//! `vmlinux` to boot and the modules the tests need, in load order.

use super::debian::{self, Program};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A kernel series this command can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Debian 12's own kernel.
    V6_1,
    /// The newer kernel Debian 12 also ships.
    V6_12,
}

impl Series {
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// The meta-package that always depends on the newest kernel of the
    /// series: the exact package changes with each security update.
    fn meta_package(self) -> &'static str {
        match self {
            Series::V6_1 => "linux-image-amd64",
            Series::V6_12 => "linux-image-6.12-amd64",
        }
    }

    /// `--kernel 6.1|6.12|all`.
    pub fn parse_choice(choice: &str) -> Result<Vec<Series>> {
        if choice == "all" {
            return Ok(Series::ALL.to_vec());
        }
        match Series::ALL
            .into_iter()
            .find(|series| series.name() == choice)
        {
            Some(series) => Ok(vec![series]),
            None => bail!("unknown kernel {choice:?}: choose 6.1, 6.12 or all"),
        }
    }
}

/// The modules the guest loads, by name, besides their dependencies: the
/// 9p transport for the shared directories, overlayfs for the root, and
/// what the tests need. Nothing loads a module on demand in the guest: the
/// host's root holds no modules of the guest's kernel, and init.sh's
/// stand-in for modprobe only names on the console the module the kernel
/// asked for (a `kernel-test:` line). So this list holds every module the
/// tests' commands make the kernel ask for: step 04's bridges, veth pairs
/// and iptables rules made it ask for those below, on 6.1 and 6.12.
pub const WANTED_MODULES: [&str; 20] = [
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    // Step 04: veth pairs, bridges, and iptables on bridged traffic.
    "veth",
    "bridge",
    "br_netfilter",
    // libcrc32c, which nf_tables and conntrack use, gets its CRC32C code
    // from the crypto API, which asks for a "crc32c" module: a soft
    // dependency that modules.dep does not list. Without one loaded
    // before it, libcrc32c fails to load. The generic one runs on any CPU.
    "crc32c_generic",
    // iptables-nft (Debian's iptables) talks nf_tables over nfnetlink.
    "nf_tables",
    // The nat table: base chains of type nat, with nf_nat and conntrack.
    "nft_chain_nat",
    // What iptables-nft does not translate into nf_tables expressions runs
    // as the xtables match or target through nft_compat; the kernel asks
    // for each as `ipt_NAME` when a rule first names it:
    "nft_compat",
    "xt_MASQUERADE", // -j MASQUERADE
    "xt_nat",        // -j DNAT (and SNAT)
    "xt_addrtype",   // -m addrtype --src-type/--dst-type LOCAL
    "xt_conntrack",  // -m conntrack --ctstate
    "xt_tcpudp",     // -p tcp|udp --dport
    "xt_comment",    // -m comment
    // The legacy backend (iptables-legacy), cheap to have: the filter and
    // nat tables.
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
];

/// One kernel, unpacked in the cache.
#[derive(Debug)]
pub struct Kernel {
    pub series: Series,
    /// The Debian package, e.g. linux-image-6.1.0-57-amd64.
    pub package: String,
    /// `uname -r`, e.g. 6.1.0-57-amd64.
    pub release: String,
    /// The unpacked package.
    pub root: PathBuf,
    /// The uncompressed ELF image qemu boots.
    pub vmlinux: PathBuf,
}

/// The programs that prepare a kernel.
#[derive(Debug)]
pub struct Tools {
    pub depmod: Program,
    pub xz: Program,
    pub zstd: Program,
}

impl Kernel {
    /// Downloads and unpacks the newest kernel of `series` (once), extracts
    /// its vmlinux and writes its modules.dep.
    pub fn prepare(series: Series, cache: &Path, tools: &Tools) -> Result<Kernel> {
        let package = debian::resolve_meta_package(series.meta_package())?;
        let root = cache.join("kernels").join(&package);
        debian::unpack(
            std::slice::from_ref(&package),
            &cache.join("downloads"),
            &root,
        )?;
        let release = release_of(&root)?;
        let kernel = Kernel {
            series,
            vmlinux: root.join("vmlinux"),
            package,
            release,
            root,
        };
        kernel.check_config()?;
        if !kernel.vmlinux.exists() {
            kernel.extract_vmlinux(tools)?;
        }
        if !kernel.modules_dir().join("modules.dep").exists() {
            kernel.write_modules_dep(&tools.depmod)?;
        }
        Ok(kernel)
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    fn bzimage(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    /// qemu starts an ELF vmlinux directly at its PVH entry point, without
    /// the firmware's real-mode boot protocol and without decompressing the
    /// kernel at every boot (slow under emulation): that needs CONFIG_PVH.
    fn check_config(&self) -> Result<()> {
        let path = self.root.join(format!("boot/config-{}", self.release));
        let config = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            config.lines().any(|line| line == "CONFIG_PVH=y"),
            "{} lacks CONFIG_PVH=y: qemu cannot boot its vmlinux directly",
            self.package
        );
        Ok(())
    }

    /// Takes the compressed kernel out of the bzImage and decompresses it,
    /// like the kernel's scripts/extract-vmlinux.
    fn extract_vmlinux(&self, tools: &Tools) -> Result<()> {
        let bzimage = self.bzimage();
        let image =
            std::fs::read(&bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
        let payload = compressed_payload(&image)
            .with_context(|| format!("finding the compressed kernel in {}", bzimage.display()))?;
        let compressed = self.root.join("vmlinux.compressed");
        std::fs::write(&compressed, payload.stream)
            .with_context(|| format!("writing {}", compressed.display()))?;
        let decompressor = match payload.format {
            Compression::Xz => &tools.xz,
            Compression::Zstd => &tools.zstd,
        };
        let partial = self.root.join("vmlinux.partial");
        decompress(decompressor, &compressed, &partial)?;
        let written = std::fs::metadata(&partial)
            .with_context(|| format!("reading {}", partial.display()))?
            .len();
        ensure!(
            written == u64::from(payload.uncompressed_size),
            "the decompressed kernel has {written} bytes, the bzImage announced {}",
            payload.uncompressed_size
        );
        std::fs::remove_file(&compressed)
            .with_context(|| format!("removing {}", compressed.display()))?;
        std::fs::rename(&partial, &self.vmlinux)
            .with_context(|| format!("renaming {}", partial.display()))
    }

    /// Debian's package ships no modules.dep (the system's depmod writes it
    /// when the package is installed): write it, for the unpacked tree.
    fn write_modules_dep(&self, depmod: &Program) -> Result<()> {
        let status = depmod
            .command()
            .arg("--basedir")
            .arg(&self.root)
            .arg(&self.release)
            .status()
            .context("running depmod")?;
        ensure!(status.success(), "depmod failed ({status})");
        Ok(())
    }

    /// The module files to load, dependencies first, for [`WANTED_MODULES`].
    pub fn modules_to_load(&self) -> Result<Vec<PathBuf>> {
        let dir = self.modules_dir();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))
        };
        let order = load_order(
            &read("modules.dep")?,
            &read("modules.builtin")?,
            &WANTED_MODULES,
        )
        .with_context(|| format!("reading the module dependencies of {}", self.package))?;
        Ok(order.into_iter().map(|path| dir.join(path)).collect())
    }
}

/// The release of an unpacked kernel package, from its boot/vmlinuz-RELEASE.
fn release_of(root: &Path) -> Result<String> {
    let boot = root.join("boot");
    for entry in std::fs::read_dir(&boot).with_context(|| format!("listing {}", boot.display()))? {
        let name = entry
            .with_context(|| format!("listing {}", boot.display()))?
            .file_name();
        if let Some(release) = name.to_string_lossy().strip_prefix("vmlinuz-") {
            return Ok(release.to_string());
        }
    }
    bail!("no vmlinuz-* in {}", boot.display())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
}

/// The compressed kernel inside a bzImage.
#[derive(Debug)]
pub struct Payload<'a> {
    pub format: Compression,
    /// The compressed stream alone.
    pub stream: &'a [u8],
    /// The size of vmlinux, which the kernel's build appends to the stream.
    pub uncompressed_size: u32,
}

/// Finds the compressed kernel with the bzImage's setup header (the x86
/// boot protocol, Documentation/arch/x86/boot.rst): the real-mode setup code
/// takes `setup_sects` + 1 sectors of 512 bytes, and `payload_offset` and
/// `payload_length` (protocol 2.08 and later) locate the payload after it.
pub fn compressed_payload(image: &[u8]) -> Result<Payload<'_>> {
    let u8_at = |offset: usize| image.get(offset).copied().context("truncated bzImage");
    let u32_at = |offset: usize| -> Result<u32> {
        let bytes = image.get(offset..offset + 4).context("truncated bzImage")?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    };
    ensure!(
        image.get(0x202..0x206) == Some(b"HdrS"),
        "not a bzImage (no HdrS magic)"
    );
    let version = u16::from_le_bytes([u8_at(0x206)?, u8_at(0x207)?]);
    ensure!(
        version >= 0x208,
        "boot protocol {version:#x} is older than 2.08"
    );
    // An old convention: 0 setup sectors means 4.
    let setup_sectors = match u8_at(0x1f1)? {
        0 => 4,
        sectors => usize::from(sectors),
    };
    let start = (setup_sectors + 1) * 512 + u32_at(0x248)? as usize;
    let length = u32_at(0x24c)? as usize;
    let payload = image
        .get(start..start + length)
        .context("the payload lies outside the file")?;
    ensure!(payload.len() > 4, "empty payload");
    let (stream, size) = payload.split_at(payload.len() - 4);
    let format = if stream.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else if stream.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        bail!(
            "the kernel is compressed in a format this command does not know \
             (first bytes {:02x?})",
            &stream[..stream.len().min(6)]
        );
    };
    Ok(Payload {
        format,
        stream,
        uncompressed_size: u32::from_le_bytes(size.try_into().expect("4 bytes")),
    })
}

/// `decompressor -dc < from > to`.
pub fn decompress(decompressor: &Program, from: &Path, to: &Path) -> Result<()> {
    let input = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let output = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let status = decompressor
        .command()
        .arg("-dc")
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .status()
        .with_context(|| format!("running {}", decompressor.path.display()))?;
    ensure!(
        status.success(),
        "{} -dc could not decompress {} ({status})",
        decompressor.path.display(),
        from.display()
    );
    Ok(())
}

/// The name a module is known by: its file name without `.ko` and the
/// compression suffix, with `-` read as `_` (the kernel treats them alike).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The files to insmod, in order, so that every module comes after the
/// modules it uses. modules.dep has one line per module,
/// `kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko`;
/// a module built into the kernel (modules.builtin) needs no loading.
pub fn load_order(modules_dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut dependencies: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((path, uses)) = line.split_once(':') else {
            continue;
        };
        let uses = uses.split_whitespace().map(module_name).collect();
        dependencies.insert(module_name(path), (path.to_string(), uses));
    }
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    for name in wanted {
        visit(name, &dependencies, &builtin, &mut order)?;
    }
    Ok(order)
}

/// Depth first: a module's dependencies go into `order` before it.
fn visit(
    name: &str,
    dependencies: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &[String],
    order: &mut Vec<String>,
) -> Result<()> {
    let name = name.replace('-', "_");
    let Some((path, uses)) = dependencies.get(&name) else {
        if builtin.contains(&name) {
            return Ok(());
        }
        bail!("the kernel has no module {name}, and does not build it in");
    };
    if order.contains(path) {
        return Ok(());
    }
    for dependency in uses {
        visit(dependency, dependencies, builtin, order)?;
    }
    order.push(path.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few lines of Debian 6.1's modules.dep.
    const MODULES_DEP_6_1: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/net/9p/9pnet.ko
kernel/net/9p/9pnet.ko:
kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
";

    fn position(order: &[String], name: &str) -> usize {
        order
            .iter()
            .position(|path| module_name(path) == name)
            .unwrap_or_else(|| panic!("{name} is not in {order:?}"))
    }

    #[test]
    fn dependencies_load_first() {
        let order = load_order(MODULES_DEP_6_1, "", &["virtio_pci", "9p", "br_netfilter"]).unwrap();
        assert_eq!(order.len(), 13, "{order:?}");
        assert!(position(&order, "virtio") < position(&order, "virtio_pci"));
        assert!(position(&order, "virtio_ring") < position(&order, "virtio_pci"));
        assert!(position(&order, "netfs") < position(&order, "fscache"));
        assert!(position(&order, "fscache") < position(&order, "9p"));
        assert!(position(&order, "llc") < position(&order, "stp"));
        assert!(position(&order, "stp") < position(&order, "bridge"));
        assert!(position(&order, "bridge") < position(&order, "br_netfilter"));
    }

    /// More lines of Debian 6.1's modules.dep: overlayfs, veth, netfilter.
    const MORE_MODULES_DEP_6_1: &str = "\
kernel/fs/overlayfs/overlay.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/libcrc32c.ko:
kernel/net/netfilter/nfnetlink.ko:
kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_nat.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nft_chain_nat.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nfnetlink.ko kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/x_tables.ko:
kernel/net/netfilter/nft_compat.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nfnetlink.ko kernel/net/netfilter/x_tables.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/xt_MASQUERADE.ko: kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/netfilter/x_tables.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/xt_nat.ko: kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/netfilter/x_tables.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/xt_addrtype.ko: kernel/net/netfilter/x_tables.ko
kernel/net/netfilter/xt_conntrack.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/netfilter/x_tables.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/xt_tcpudp.ko: kernel/net/netfilter/x_tables.ko
kernel/net/netfilter/xt_comment.ko: kernel/net/netfilter/x_tables.ko
kernel/net/ipv4/netfilter/ip_tables.ko: kernel/net/netfilter/x_tables.ko
kernel/net/ipv4/netfilter/iptable_filter.ko: kernel/net/ipv4/netfilter/ip_tables.ko kernel/net/netfilter/x_tables.ko
kernel/net/ipv4/netfilter/iptable_nat.ko: kernel/net/ipv4/netfilter/ip_tables.ko kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/netfilter/x_tables.ko kernel/lib/libcrc32c.ko
kernel/drivers/net/veth.ko:
";

    #[test]
    fn the_wanted_modules_load_in_order_with_crc32c_before_libcrc32c() {
        let dep = format!("{MODULES_DEP_6_1}{MORE_MODULES_DEP_6_1}");
        let order = load_order(&dep, "", &WANTED_MODULES).unwrap();
        // The wanted ones, and the dependencies they pull in.
        assert_eq!(order.len(), 36, "{order:?}");
        // The soft dependency that modules.dep does not show.
        assert!(position(&order, "crc32c_generic") < position(&order, "libcrc32c"));
        assert!(position(&order, "nfnetlink") < position(&order, "nf_tables"));
        assert!(position(&order, "nf_conntrack") < position(&order, "nf_nat"));
        assert!(position(&order, "nf_tables") < position(&order, "nft_compat"));
        assert!(position(&order, "x_tables") < position(&order, "xt_MASQUERADE"));
        assert!(position(&order, "ip_tables") < position(&order, "iptable_nat"));
    }

    #[test]
    fn each_module_loads_once() {
        let order = load_order(MODULES_DEP_6_1, "", &["9pnet_virtio", "9p", "9pnet"]).unwrap();
        let ninepnet = order.iter().filter(|path| path.ends_with("/9pnet.ko"));
        assert_eq!(ninepnet.count(), 1);
    }

    #[test]
    fn built_in_modules_are_skipped_and_unknown_ones_refused() {
        let dep = "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n\
                   kernel/net/9p/9pnet.ko.xz:\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\n";
        let order = load_order(dep, builtin, &["virtio_pci", "9pnet_virtio"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz"
            ]
        );
        let error = load_order(dep, builtin, &["overlay"]).unwrap_err();
        assert!(error.to_string().contains("no module overlay"), "{error}");
    }

    #[test]
    fn module_names_ignore_suffixes_and_dashes() {
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko"), "overlay");
        assert_eq!(
            module_name("kernel/drivers/x/some-driver.ko.zst"),
            "some_driver"
        );
    }

    /// A bzImage reduced to what the parser reads.
    fn fake_bzimage(stream: &[u8], size: u32) -> Vec<u8> {
        let mut image = vec![0u8; 3 * 512];
        image[0x1f1] = 2; // setup sectors: the payload area starts at 3 * 512
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        let length = stream.len() as u32 + 4;
        image[0x24c..0x250].copy_from_slice(&length.to_le_bytes());
        image.extend_from_slice(&[0xaa; 16]);
        image.extend_from_slice(stream);
        image.extend_from_slice(&size.to_le_bytes());
        image.extend_from_slice(b"signature and padding");
        image
    }

    #[test]
    fn the_payload_is_found_with_the_setup_header() {
        let stream = [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3];
        let image = fake_bzimage(&stream, 4242);
        let payload = compressed_payload(&image).unwrap();
        assert_eq!(payload.format, Compression::Zstd);
        assert_eq!(payload.stream, stream);
        assert_eq!(payload.uncompressed_size, 4242);
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 9];
        assert_eq!(
            compressed_payload(&fake_bzimage(&xz, 1)).unwrap().format,
            Compression::Xz
        );
    }

    #[test]
    fn other_files_are_refused() {
        assert!(compressed_payload(b"\x7fELF and so on").is_err());
        let gzip = fake_bzimage(&[0x1f, 0x8b, 8, 0], 1);
        let error = compressed_payload(&gzip).unwrap_err();
        assert!(error.to_string().contains("format"), "{error}");
    }

    #[test]
    fn kernel_choices() {
        assert_eq!(Series::parse_choice("6.1").unwrap(), [Series::V6_1]);
        assert_eq!(Series::parse_choice("all").unwrap(), Series::ALL);
        assert!(Series::parse_choice("5.10").is_err());
    }
}

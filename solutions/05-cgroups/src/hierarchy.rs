//! Where the cgroup hierarchies are, found as the kernel tells it.
//!
//! ```text
//! cgroup v2: one tree, every controller     cgroup v1: one tree per controller
//! /sys/fs/cgroup  (cgroup2)                 /sys/fs/cgroup  (a tmpfs)
//! ├── cgroup.controllers  cpu memory pids   ├── memory/  (cgroup, -o memory)
//! ├── tara/                                 │   └── tara/<id>/memory.limit_in_bytes
//! │   └── <id>/  memory.max  pids.max       ├── pids/    (cgroup, -o pids)
//! │              cpu.max     cgroup.procs   │   └── tara/<id>/pids.max
//! └── user.slice/ ...                       ├── cpu/ ...  cpuacct/ ...  freezer/ ...
//!                                           └── unified/ (cgroup2: "hybrid", with
//!                                                         few or no controllers)
//! ```
//!
//! Nothing here trusts a fixed path: `/proc/self/mountinfo` lists every
//! cgroup filesystem with its mount point and the **root** of the hierarchy
//! it shows (a container, or a bind mount, may show only a subtree), and
//! `/proc/self/cgroup` gives this process's own place in each hierarchy.

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The cgroup v1 controllers tara uses. `cpuacct` counts CPU time, and
/// `freezer` stops every process of a cgroup at once, so that none can fork
/// while they are being killed.
pub const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];

/// The cgroup v2 controllers tara enables for its containers.
pub const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Every v1 controller the kernel may have: the other options of a v1 mount
/// (`rw`, `xattr`, `name=systemd`, ...) are not controllers.
const ALL_V1_CONTROLLERS: [&str; 14] = [
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// cgroup v1 or v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// One cgroup filesystem in the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub version: Version,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy that shows at the mount point: `/`,
    /// unless only a subtree was mounted.
    pub root: String,
    /// v1: the controllers of this hierarchy (`cpu,cpuacct` may share
    /// one). v2: empty (`cgroup.controllers` lists them).
    pub controllers: Vec<String>,
}

// ANCHOR: parse_mount
/// The cgroup filesystem described by one line of `/proc/self/mountinfo`,
/// or `None` for a line of another filesystem. See proc(5):
///
/// ```text
/// 35 24 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
/// │  │  │    │ │                     │        │ │      │      └ super options
/// │  │  │    │ │                     │        │ │      └ source
/// │  │  │    │ │                     │        │ └ filesystem type
/// │  │  │    │ │                     │        └ end of the optional fields
/// │  │  │    │ └ mount point         └ mount options, then optional fields
/// │  │  │    └ root: the directory of the filesystem seen at the mount point
/// └ mount ID, parent ID, device
/// ```
pub fn parse_mount(line: &str) -> Option<CgroupMount> {
    // EXERCISE 1: find a cgroup filesystem in a mountinfo line. Hint: split at " - ";
    // before it, nth(3) is the root and nth(4) the mount point (both through unescape);
    // after it, the type and the super options, where ALL_V1_CONTROLLERS are the controllers.
    // SOLUTION-BEGIN
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut fields = mount.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let mut filesystem = filesystem.split(' ');
    let version = match filesystem.next()? {
        "cgroup2" => Version::V2,
        "cgroup" => Version::V1,
        _ => return None,
    };
    let super_options = filesystem.nth(1)?;
    let controllers = match version {
        Version::V2 => Vec::new(),
        Version::V1 => super_options
            .split(',')
            .filter(|option| ALL_V1_CONTROLLERS.contains(option))
            .map(String::from)
            .collect(),
    };
    Some(CgroupMount {
        version,
        mount_point: PathBuf::from(unescape(mount_point)),
        root: unescape(root),
        controllers,
    })
    // SOLUTION-END
}
// ANCHOR_END: parse_mount

/// mountinfo writes a space, tab, newline and backslash in a path as an
/// octal escape (`\040`): turns them back.
pub fn unescape(field: &str) -> String {
    let mut text = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        text.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|digits| u8::from_str_radix(digits, 8).ok()) {
            Some(byte) => {
                text.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                text.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    text.push_str(rest);
    text
}

/// The hierarchies this process can use, and its own cgroup in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    /// v2: the one unified hierarchy. v1: one per mount of the controllers
    /// in [`V1_CONTROLLERS`] (`cpu` and `cpuacct` may share one).
    pub hierarchies: Vec<Hierarchy>,
}

/// A hierarchy, where it is mounted, and where this process is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: CgroupMount,
    /// This process's cgroup in the hierarchy, from `/proc/self/cgroup`.
    pub own: String,
}

impl Layout {
    /// Reads this process's mount table and cgroups.
    pub fn detect() -> Result<Layout> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mounts: Vec<CgroupMount> = mountinfo.lines().filter_map(parse_mount).collect();
        let layout = Layout::choose(&mounts, &own)?;
        layout.check_filesystems()?;
        Ok(layout)
    }

    /// The layout that the cgroup mounts and a `/proc/PID/cgroup` describe.
    ///
    /// v1 wins when any of tara's controllers is mounted as a v1 hierarchy:
    /// a controller is in one hierarchy at a time, and in a hybrid layout
    /// (systemd's, or this machine's) the cgroup2 mount holds few or none.
    pub fn choose(mounts: &[CgroupMount], own_cgroups: &str) -> Result<Layout> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for controller in V1_CONTROLLERS {
            let Some(own) = own_v1_cgroup(own_cgroups, controller) else {
                continue;
            };
            let reachable = mounts.iter().find(|mount| {
                mount.version == Version::V1
                    && mount.controllers.iter().any(|name| name == controller)
                    && is_within(&own, &mount.root)
            });
            if let Some(mount) = reachable {
                if !hierarchies.iter().any(|known| known.mount == *mount) {
                    hierarchies.push(Hierarchy {
                        mount: mount.clone(),
                        own,
                    });
                }
            }
        }
        if !hierarchies.is_empty() {
            return Ok(Layout {
                version: Version::V1,
                hierarchies,
            });
        }
        let own = own_cgroups
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .context("no cgroup v1 hierarchy of memory, pids or cpu, and no cgroup2 line in /proc/self/cgroup")?;
        let mount = mounts
            .iter()
            .find(|mount| mount.version == Version::V2 && is_within(own, &mount.root))
            .with_context(|| {
                format!(
                    "no cgroup filesystem mounted that shows this process's cgroup {own} (under \
                     `ip netns exec`, /sys is mounted afresh without it: use `nsenter --net=...`)"
                )
            })?;
        Ok(Layout {
            version: Version::V2,
            hierarchies: vec![Hierarchy {
                mount: mount.clone(),
                own: own.to_string(),
            }],
        })
    }

    /// statfs(2) confirms that each mount point holds the filesystem
    /// mountinfo says (a later mount on the same path would hide it).
    fn check_filesystems(&self) -> Result<()> {
        for hierarchy in &self.hierarchies {
            let point = &hierarchy.mount.mount_point;
            let stat = statfs(point).with_context(|| format!("statfs({})", point.display()))?;
            let expected = match hierarchy.mount.version {
                Version::V1 => CGROUP_SUPER_MAGIC,
                Version::V2 => CGROUP2_SUPER_MAGIC,
            };
            if stat.filesystem_type() != expected {
                bail!(
                    "{} is not the cgroup filesystem that /proc/self/mountinfo lists there",
                    point.display()
                );
            }
        }
        Ok(())
    }
}

impl Hierarchy {
    /// The directory of the cgroup `path` (absolute in the hierarchy): the
    /// mount point plus the path below the mount's root. Forgetting the root
    /// doubles the path in a container that shows only its own subtree.
    pub fn dir_of(&self, path: &str) -> Result<PathBuf> {
        let root = self.mount.root.trim_end_matches('/');
        let below = path
            .strip_prefix(root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'));
        let below = below.with_context(|| {
            format!(
                "the cgroup {path} is outside the hierarchy mounted at {} (which shows {})",
                self.mount.mount_point.display(),
                self.mount.root
            )
        })?;
        Ok(self.mount.mount_point.join(below.trim_start_matches('/')))
    }

    /// `cpu,cpuacct`, `memory`, ...: the controllers, as v1 names the mount.
    pub fn controller_list(&self) -> String {
        self.mount.controllers.join(",")
    }
}

/// Whether the cgroup `path` is `root` or below it.
fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// This process's cgroup in the v1 hierarchy of `controller`, from
/// `/proc/self/cgroup`'s lines `ID:CONTROLLER[,CONTROLLER...]:PATH`.
fn own_v1_cgroup(own_cgroups: &str, controller: &str) -> Option<String> {
    own_cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers
            .split(',')
            .any(|name| name == controller)
            .then(|| path.to_string())
    })
}

/// Joins a cgroup path and a name below it.
pub fn join(parent: &str, name: &str) -> String {
    format!("{}/{name}", parent.trim_end_matches('/'))
}

/// Whether `dir` is the root of its hierarchy: the top cgroup, which may
/// hold processes whatever its controllers.
pub fn is_mount_root(hierarchy: &Hierarchy, dir: &Path) -> bool {
    dir == hierarchy.mount.mount_point && hierarchy.mount.root == "/"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(version: Version, point: &str, root: &str, controllers: &[&str]) -> CgroupMount {
        CgroupMount {
            version,
            mount_point: PathBuf::from(point),
            root: root.to_string(),
            controllers: controllers.iter().map(|name| name.to_string()).collect(),
        }
    }

    /// This machine's kind: systemd's hybrid layout, the memory hierarchy
    /// in a subtree.
    fn hybrid_mounts() -> Vec<CgroupMount> {
        vec![
            mount(
                Version::V1,
                "/sys/fs/cgroup/cpu,cpuacct",
                "/",
                &["cpu", "cpuacct"],
            ),
            mount(Version::V1, "/sys/fs/cgroup/memory", "/", &["memory"]),
            mount(Version::V1, "/sys/fs/cgroup/freezer", "/", &["freezer"]),
            mount(Version::V1, "/sys/fs/cgroup/pids", "/", &["pids"]),
            mount(Version::V1, "/sys/fs/cgroup/systemd", "/", &[]),
            mount(Version::V2, "/sys/fs/cgroup/unified", "/", &[]),
        ]
    }

    const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/2b2b
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn hybrid_is_v1_with_a_hierarchy_per_mount() {
        let layout = Layout::choose(&hybrid_mounts(), HYBRID_OWN).unwrap();
        assert_eq!(layout.version, Version::V1);
        let listed: Vec<(String, String)> = layout
            .hierarchies
            .iter()
            .map(|h| (h.controller_list(), h.own.clone()))
            .collect();
        assert_eq!(
            listed,
            [
                ("memory".to_string(), "/process_api/2b2b".to_string()),
                ("pids".to_string(), "/".to_string()),
                ("cpu,cpuacct".to_string(), "/".to_string()),
                ("freezer".to_string(), "/".to_string()),
            ]
        );
    }

    #[test]
    fn unified_is_v2_with_one_hierarchy() {
        let mounts = [mount(Version::V2, "/sys/fs/cgroup", "/", &[])];
        let own = "0::/user.slice/user-1000.slice/session-2.scope\n";
        let layout = Layout::choose(&mounts, own).unwrap();
        assert_eq!(layout.version, Version::V2);
        assert_eq!(layout.hierarchies.len(), 1);
        assert_eq!(layout.hierarchies[0].own, own[3..].trim_end());
    }

    #[test]
    fn a_subtree_mount_is_joined_without_doubling_the_path() {
        // What a container with a cgroup namespace, or a bind mount, shows.
        let mounts = [mount(Version::V2, "/sys/fs/cgroup", "/tara/abc", &[])];
        let layout = Layout::choose(&mounts, "0::/tara/abc\n").unwrap();
        let hierarchy = &layout.hierarchies[0];
        assert_eq!(
            hierarchy.dir_of("/tara/abc/child").unwrap(),
            Path::new("/sys/fs/cgroup/child")
        );
        assert!(hierarchy.dir_of("/other").is_err());
        assert!(hierarchy.dir_of("/tara/abcdef").is_err());
    }

    #[test]
    fn a_mount_that_does_not_show_our_cgroup_is_not_used() {
        let mounts = [mount(Version::V2, "/sys/fs/cgroup", "/elsewhere", &[])];
        assert!(Layout::choose(&mounts, "0::/tara\n").is_err());
        assert!(Layout::choose(&[], "0::/\n").is_err());
    }

    #[test]
    fn escaped_paths_are_unescaped() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/a\\b"), r"/a\\b");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
    }
}

//! The OCI bundles crun and runc run: the busybox rootfs and a
//! `config.json` made from `runc spec`'s, edited to match a step.
//!
//! `runc spec` writes a configuration for an interactive shell in five
//! namespaces (pid, network, ipc, uts, mount). The bench keeps its mounts,
//! capabilities and masked paths, the work every real runtime does, and
//! changes what makes the comparison fair: `/bin/true` without a terminal,
//! the namespaces of the step it is compared with, the shared rootfs
//! read-only, and a cgroup below the bench's parent.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// A namespace of the container: its type in the OCI spec (`pid`,
/// `network`, ...) and, to join an existing one, its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace<'a> {
    pub kind: &'a str,
    pub path: Option<&'a str>,
}

impl<'a> Namespace<'a> {
    pub const fn new(kind: &'a str) -> Self {
        Namespace { kind, path: None }
    }
}

/// What one bundle's configuration says.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    pub namespaces: &'a [Namespace<'a>],
    pub rootfs: &'a Path,
    pub cgroups_path: &'a str,
}

/// `template` (runc spec's config.json) edited for `bundle`.
pub fn config(template: &Value, bundle: &Bundle) -> Result<Value> {
    let mut config = template.clone();
    let process = object(&mut config, "process")?;
    process.insert("terminal".into(), json!(false));
    process.insert("args".into(), json!(["/bin/true"]));
    config["root"] = json!({ "path": bundle.rootfs, "readonly": true });
    let namespaces: Vec<Value> = bundle
        .namespaces
        .iter()
        .map(|namespace| match namespace.path {
            Some(path) => json!({ "type": namespace.kind, "path": path }),
            None => json!({ "type": namespace.kind }),
        })
        .collect();
    let linux = object(&mut config, "linux")?;
    linux.insert("namespaces".into(), Value::Array(namespaces));
    linux.insert("cgroupsPath".into(), json!(bundle.cgroups_path));
    // A hostname needs a UTS namespace of the container's own.
    if !bundle.namespaces.iter().any(|n| n.kind == "uts") {
        object(&mut config, "")?.remove("hostname");
    }
    Ok(config)
}

/// The object at `key` of `config` (the whole of it for ""), which must be
/// a JSON object.
fn object<'a>(config: &'a mut Value, key: &str) -> Result<&'a mut serde_json::Map<String, Value>> {
    let value = if key.is_empty() {
        config
    } else {
        config
            .get_mut(key)
            .with_context(|| format!("runc spec's config.json has no {key:?}"))?
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => bail!("{key:?} in runc spec's config.json is not an object"),
    }
}

/// Writes `runc spec`'s configuration in `dir` and reads it back.
pub fn runc_spec(dir: &Path) -> Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("config.json");
    // runc refuses to overwrite a config.json.
    let _ = std::fs::remove_file(&path);
    super::run_quietly(
        std::process::Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(dir),
    )?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes `config` as `dir/config.json`.
pub fn write(dir: &Path, config: &Value) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "ociVersion": "1.0.2-dev",
            "process": { "terminal": true, "args": ["sh"], "cwd": "/" },
            "root": { "path": "rootfs", "readonly": true },
            "hostname": "runc",
            "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc" }],
            "linux": {
                "namespaces": [
                    { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                    { "type": "uts" }, { "type": "mount" }
                ],
                "maskedPaths": ["/proc/kcore"]
            }
        })
    }

    #[test]
    fn the_namespaces_command_root_and_cgroup_are_replaced() {
        let namespaces = [
            Namespace::new("pid"),
            Namespace::new("mount"),
            Namespace::new("uts"),
            Namespace {
                kind: "network",
                path: Some("/run/netns/x"),
            },
        ];
        let bundle = Bundle {
            namespaces: &namespaces,
            rootfs: Path::new("/w/rootfs"),
            cgroups_path: "tara-bench-7/runc-a",
        };
        let config = config(&template(), &bundle).unwrap();
        assert_eq!(config["process"]["terminal"], json!(false));
        assert_eq!(config["process"]["args"], json!(["/bin/true"]));
        assert_eq!(config["process"]["cwd"], json!("/"), "the rest is kept");
        assert_eq!(
            config["root"],
            json!({ "path": "/w/rootfs", "readonly": true })
        );
        assert_eq!(
            config["linux"]["namespaces"],
            json!([
                { "type": "pid" }, { "type": "mount" }, { "type": "uts" },
                { "type": "network", "path": "/run/netns/x" }
            ])
        );
        assert_eq!(config["linux"]["cgroupsPath"], json!("tara-bench-7/runc-a"));
        assert_eq!(config["linux"]["maskedPaths"], json!(["/proc/kcore"]));
        assert_eq!(config["hostname"], json!("runc"));
    }

    #[test]
    fn without_a_uts_namespace_there_is_no_hostname() {
        let bundle = Bundle {
            namespaces: &[Namespace::new("pid"), Namespace::new("mount")],
            rootfs: Path::new("/w/rootfs"),
            cgroups_path: "/tara-bench-7/crun-a",
        };
        let config = config(&template(), &bundle).unwrap();
        assert!(config.get("hostname").is_none());
    }

    #[test]
    fn a_template_without_linux_is_an_error() {
        let bundle = Bundle {
            namespaces: &[],
            rootfs: Path::new("/r"),
            cgroups_path: "x",
        };
        let error = config(&json!({ "process": {} }), &bundle).unwrap_err();
        assert!(error.to_string().contains("linux"), "{error}");
    }
}

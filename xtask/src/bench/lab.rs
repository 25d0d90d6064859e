//! The lab: what the rows need, made before they run and removed after,
//! also when a row fails or Ctrl-C stops the bench.
//!
//! - a network namespace `tara-bench-PID`: every command of the bench runs
//!   in it, so step 04's bridge and firewall rules, and CNI's, never touch
//!   the machine's own network. Commands enter it with `nsenter --net`
//!   (`ip netns exec` would also remount /sys, hiding the cgroup mounts);
//! - under target/bench/work: the busybox rootfs, the steps' stores with
//!   their images, the OCI bundles and state directories of crun and runc,
//!   the CNI configuration and its address leases;
//! - the cgroups (see cgroups.rs): all of them in directories named
//!   `tara-bench-PID`, removed bottom-up at the end.

use super::cgroups::{self, Layout};
use super::oci::{self, Bundle, Namespace};
use super::rows::{container_id, VARIANTS};
use super::{quote, rootfs, run_quietly};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The runtimes compared with the steps.
pub const RUNTIMES: [&str; 2] = ["crun", "runc"];

/// Where the CNI plugins of Debian's and Ubuntu's
/// containernetworking-plugins are.
pub const CNI_PLUGINS: &str = "/usr/lib/cni";

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// In the lab's network namespace.
    Lab,
    /// There too, and on cgroup v1 in a mount namespace that shows crun
    /// the v1 hierarchies only, from the bench's own cgroup.
    CrunView,
}

impl Env {
    pub fn name(self) -> &'static str {
        match self {
            Env::Lab => "lab",
            Env::CrunView => "crun",
        }
    }
}

#[derive(Debug)]
pub struct Lab {
    /// `tara-bench-PID`: the network namespace and the cgroup parent.
    pub name: String,
    pub layout: Layout,
    work: PathBuf,
    netns_made: bool,
    torn_down: bool,
}

impl Lab {
    /// Makes the network namespace and an empty work directory below
    /// `bench_dir`.
    pub fn new(bench_dir: &Path) -> Result<Lab> {
        let work = bench_dir.join("work");
        // What a run killed with SIGKILL left.
        remove_work(&work)?;
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let mut lab = Lab {
            name: format!("tara-bench-{}", std::process::id()),
            layout: Layout::read()?,
            work,
            netns_made: false,
            torn_down: false,
        };
        run_quietly(Command::new("ip").args(["netns", "add", &lab.name]))?;
        lab.netns_made = true;
        run_quietly(Command::new("ip").args(["-n", &lab.name, "link", "set", "lo", "up"]))?;
        Ok(lab)
    }

    /// `argv` as a command that runs in `env`.
    pub fn command(&self, env: Env, argv: &[String]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--");
        if env == Env::CrunView && !self.layout.v2_only {
            command
                .args(["unshare", "--mount", "--propagation", "private", "--", "sh"])
                .arg(self.crun_view_script());
        }
        command.args(argv);
        command
    }

    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn rootfs(&self) -> PathBuf {
        self.work.join("rootfs")
    }

    /// The `--root` of the step's binary.
    pub fn store(&self, step: &str) -> PathBuf {
        self.work.join(format!("store-{step}"))
    }

    /// The `--root` of crun or runc: their containers' state.
    pub fn state(&self, runtime: &str) -> PathBuf {
        self.work.join(format!("{runtime}-state"))
    }

    pub fn bundle(&self, runtime: &str, variant: &str) -> PathBuf {
        self.work
            .join("bundles")
            .join(container_id(runtime, variant))
    }

    pub fn cni_script(&self) -> PathBuf {
        self.work.join("cni").join("crun-cni.sh")
    }

    fn crun_view_script(&self) -> PathBuf {
        self.work.join("crun-cgroup-view.sh")
    }

    /// Where GNU time writes what it measured.
    pub fn scratch(&self) -> PathBuf {
        self.work.join("peak-rss.txt")
    }

    /// The network namespace a CNI row's container gets, one at a time.
    fn cni_netns(&self) -> String {
        format!("{}-cni", self.name)
    }

    /// Step 05's `--cgroup-parent`: relative (below the bench's own
    /// cgroup) on v1, the bench's own at the top on v2.
    pub fn cgroup_parent(&self) -> String {
        if self.layout.v2_only {
            format!("/{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// crun's or runc's `cgroupsPath` for the container `id`.
    fn cgroups_path(&self, runtime: &str, id: &str) -> String {
        // runc reads a relative path below its own cgroup on v1; crun's
        // view (and v2) take the absolute one.
        if runtime == "runc" && !self.layout.v2_only {
            format!("{}/{id}", self.name)
        } else {
            format!("/{}/{id}", self.name)
        }
    }

    /// Everything the rows of the steps in `binaries` run.
    pub fn prepare(&self, binaries: &BTreeMap<String, PathBuf>) -> Result<()> {
        rootfs::build(&self.rootfs())?;
        for (step, binary) in binaries {
            if step.as_str() >= "03" {
                rootfs::import_images(self, step, binary)?;
            }
        }
        self.write_bundles()?;
        self.write_cni()?;
        if !self.layout.v2_only {
            self.write_crun_view()?;
        }
        Ok(())
    }

    /// A bundle per runtime and variant, and crun's for the CNI row.
    fn write_bundles(&self) -> Result<()> {
        let template = oci::runc_spec(&self.work.join("bundles").join("runc-spec"))?;
        let rootfs = self.rootfs();
        for runtime in RUNTIMES {
            for variant in &VARIANTS {
                self.write_bundle(&template, runtime, variant.id, variant.namespaces, &rootfs)?;
            }
        }
        let netns = format!("/run/netns/{}", self.cni_netns());
        let with_cni = [
            Namespace::new("pid"),
            Namespace::new("mount"),
            Namespace::new("uts"),
            Namespace {
                kind: "network",
                path: Some(&netns),
            },
        ];
        self.write_bundle(&template, "crun", "cni", &with_cni, &rootfs)
    }

    fn write_bundle(
        &self,
        template: &serde_json::Value,
        runtime: &str,
        variant: &str,
        namespaces: &[Namespace],
        rootfs: &Path,
    ) -> Result<()> {
        let cgroups_path = self.cgroups_path(runtime, &container_id(runtime, variant));
        let bundle = Bundle {
            namespaces,
            rootfs,
            cgroups_path: &cgroups_path,
        };
        oci::write(
            &self.bundle(runtime, variant),
            &oci::config(template, &bundle)?,
        )
    }

    /// The CNI network (the bridge plugin, host-local addresses, masquerade
    /// as step 04 does) and the script of its row.
    fn write_cni(&self) -> Result<()> {
        let dir = self.work.join("cni");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("bridge.conf");
        let network = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "tara-bench",
            "type": "bridge",
            "bridge": "cni-bench0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "subnet": "10.89.0.0/16",
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": dir.join("ipam"),
            },
        });
        std::fs::write(&conf, serde_json::to_string_pretty(&network)?)
            .with_context(|| format!("writing {}", conf.display()))?;
        let script = cni_script(&CniRun {
            netns: &self.cni_netns(),
            conf: &conf,
            state: &self.state("crun"),
            bundle: &self.bundle("crun", "cni"),
            id: &container_id("crun", "cni"),
        });
        std::fs::write(self.cni_script(), script)
            .with_context(|| format!("writing {}", self.cni_script().display()))
    }

    fn write_crun_view(&self) -> Result<()> {
        let staging = self.work.join("cgroup-view");
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let hierarchies = self.layout.v1_below_sys_fs_cgroup();
        let names: Vec<String> = hierarchies.iter().map(|(name, _)| name.clone()).collect();
        let script = cgroups::crun_view_script(&staging, &hierarchies, &cgroups::links_to(&names));
        let path = self.crun_view_script();
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))
    }

    /// Removes everything the lab made, in order: containers the runtimes
    /// still know, the network namespaces, the cgroups, the work
    /// directory. Goes on after a failure and reports them all.
    pub fn tear_down(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        let mut note = |result: Result<()>| {
            if let Err(error) = result {
                problems.push(format!("{error:#}"));
            }
        };
        for runtime in RUNTIMES {
            note(self.delete_containers(runtime));
        }
        note(delete_netns(&self.cni_netns()));
        if self.netns_made {
            note(delete_netns(&self.name));
        }
        for dir in cgroups::find_named(&self.layout, &self.name) {
            note(cgroups::remove_tree(&dir));
        }
        note(remove_work(&self.work));
        if !problems.is_empty() {
            bail!(
                "the bench could not remove all it made:\n  {}",
                problems.join("\n  ")
            );
        }
        let left = cgroups::find_named(&self.layout, &self.name);
        if !left.is_empty() {
            bail!("cgroups left: {left:?}");
        }
        Ok(())
    }

    /// `delete --force` for each container in the runtime's state
    /// directory: none, unless a run was interrupted.
    fn delete_containers(&self, runtime: &str) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(self.state(runtime)) else {
            return Ok(());
        };
        let env = if runtime == "crun" {
            Env::CrunView
        } else {
            Env::Lab
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let argv = [
                runtime.to_string(),
                "--root".into(),
                self.state(runtime).to_string_lossy().into_owned(),
                "delete".into(),
                "--force".into(),
                id,
            ];
            run_quietly(&mut self.command(env, &argv))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(error) = self.tear_down() {
            eprintln!("xtask bench: {error:#}");
        }
    }
}

/// Deletes the named network namespace if it exists. A CNI row's
/// namespace, made inside crun's private mount namespace, leaves only an
/// empty file behind on the host when the row fails half-way.
fn delete_netns(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    if !path.exists() {
        return Ok(());
    }
    // Fails for the empty file; what counts is that the path is gone.
    let _ = run_quietly(Command::new("ip").args(["netns", "delete", name]));
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Removes the work directory, after checking that nothing is mounted
/// below it: removing files through a mount would reach what it shows.
fn remove_work(work: &Path) -> Result<()> {
    if !work.exists() {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounted: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(work))
        .collect();
    if !mounted.is_empty() {
        bail!(
            "not removing {}: something is mounted below it ({})",
            work.display(),
            mounted.join(", ")
        );
    }
    std::fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))
}

/// What the CNI row's script needs.
#[derive(Debug)]
pub struct CniRun<'a> {
    pub netns: &'a str,
    pub conf: &'a Path,
    pub state: &'a Path,
    pub bundle: &'a Path,
    pub id: &'a str,
}

/// A script that starts one container on the CNI bridge network the way a
/// runtime stack with CNI does: a network namespace, the bridge plugin's
/// ADD (which runs host-local for the address), crun in that namespace,
/// the plugin's DEL, the namespace deleted.
pub fn cni_script(run: &CniRun) -> String {
    let path = |path: &Path| quote(&path.to_string_lossy());
    let (netns, conf) = (quote(run.netns), path(run.conf));
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask bench`: one container on a CNI bridge network.\n\
         set -eu\n\
         export CNI_PATH={CNI_PLUGINS} CNI_IFNAME=eth0 CNI_CONTAINERID={id} CNI_NETNS=/run/netns/{netns}\n\
         ip netns add {netns}\n\
         CNI_COMMAND=ADD {CNI_PLUGINS}/bridge <{conf} >/dev/null\n\
         crun --root {state} run --bundle {bundle} {id}\n\
         CNI_COMMAND=DEL {CNI_PLUGINS}/bridge <{conf}\n\
         ip netns delete {netns}\n",
        id = quote(run.id),
        state = path(run.state),
        bundle = path(run.bundle),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cni_script_adds_runs_and_deletes() {
        let script = cni_script(&CniRun {
            netns: "tara-bench-7-cni",
            conf: Path::new("/w/cni/bridge.conf"),
            state: Path::new("/w/crun-state"),
            bundle: Path::new("/w/bundles/crun-cni"),
            id: "crun-cni",
        });
        let commands: Vec<&str> = script
            .lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("export"))
            .collect();
        assert_eq!(
            commands,
            [
                "set -eu",
                "ip netns add tara-bench-7-cni",
                "CNI_COMMAND=ADD /usr/lib/cni/bridge </w/cni/bridge.conf >/dev/null",
                "crun --root /w/crun-state run --bundle /w/bundles/crun-cni crun-cni",
                "CNI_COMMAND=DEL /usr/lib/cni/bridge </w/cni/bridge.conf",
                "ip netns delete tara-bench-7-cni",
            ]
        );
        assert!(script.contains("CNI_NETNS=/run/netns/tara-bench-7-cni"));
    }
}

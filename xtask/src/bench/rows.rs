//! What is measured: one row per way of running `/bin/true`.
//!
//! Each row is one command that starts a container running `/bin/true` and
//! waits for it, so its time is the runtime's own work: namespaces, mounts,
//! cgroups, network, the exec, and the cleanup. Two rows give the floor:
//! `/bin/true` alone (a fork and an exec) and `unshare` making five
//! namespaces around it with nothing else. Each step's rows are followed by
//! crun and runc in the same namespaces, the real runtimes they are
//! compared with.

use super::lab::{Env, Lab};
use super::oci::Namespace;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The row the others are divided by in the "× floor" column.
pub const FLOOR: &str = "floor: unshare (5 namespaces)";

/// Who runs the command, which picks its colour in the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Floor,
    Step,
    Crun,
    Runc,
}

/// One command to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its name in hyperfine's results, the table and the chart.
    pub label: String,
    pub kind: Kind,
    /// The steps it belongs with; empty for the floor.
    pub steps: &'static [&'static str],
    pub command: Vec<String>,
    /// The crun row it is compared with in the "× crun" column.
    pub crun: Option<String>,
}

impl Row {
    /// crun runs in its own view of the cgroups on v1 (see cgroups.rs).
    pub fn env(&self) -> Env {
        match self.kind {
            Kind::Crun => Env::CrunView,
            _ => Env::Lab,
        }
    }
}

/// A set of namespaces a step's container lives in, and the bundle that
/// gives crun and runc the same.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Names the bundle, the container and its cgroup.
    pub id: &'static str,
    pub what: &'static str,
    pub namespaces: &'static [Namespace<'static>],
    pub steps: &'static [&'static str],
}

const PID: Namespace = Namespace::new("pid");
const MOUNT: Namespace = Namespace::new("mount");
const UTS: Namespace = Namespace::new("uts");
const NET: Namespace = Namespace::new("network");
const CGROUP: Namespace = Namespace::new("cgroup");

/// Steps 01 to 03 clone PID, mount and UTS namespaces; step 04 adds a
/// network namespace (also with `--network none`: only lo); step 05 a
/// cgroup namespace.
pub const VARIANTS: [Variant; 3] = [
    Variant {
        id: "pid-mnt-uts",
        what: "pid, mnt, uts",
        namespaces: &[PID, MOUNT, UTS],
        steps: &["01", "02", "03"],
    },
    Variant {
        id: "net",
        what: "+ net",
        namespaces: &[PID, MOUNT, UTS, NET],
        steps: &["04"],
    },
    Variant {
        id: "net-cgroupns",
        what: "+ net, cgroupns",
        namespaces: &[PID, MOUNT, UTS, NET, CGROUP],
        steps: &["05"],
    },
];

/// The label of crun's row, or runc's, for `variant`.
pub fn runtime_label(runtime: &str, variant: &Variant) -> String {
    format!("{runtime}: {}", variant.what)
}

/// The label of crun with the CNI bridge plugin.
pub const CRUN_CNI: &str = "crun + CNI bridge";

/// Every row for the steps built in `binaries` (by number, "01" to "05"),
/// in the order of the table: each step's rows, then the runtimes they are
/// compared with.
pub fn all(lab: &Lab, binaries: &BTreeMap<String, PathBuf>) -> Vec<Row> {
    let mut rows = floor_rows();
    let bin = |step: &str| {
        binaries
            .get(step)
            .map(|path| path.to_string_lossy().into_owned())
    };
    let crun_of = |index: usize| Some(runtime_label("crun", &VARIANTS[index]));
    if let Some(bin) = bin("01") {
        rows.push(step_row(
            "01 run",
            &["01"],
            &[&bin, "run", "--", "/bin/true"],
            crun_of(0),
        ));
        rows.push(step_row(
            "01 run --init",
            &["01"],
            &[&bin, "run", "--init", "--", "/bin/true"],
            crun_of(0),
        ));
    }
    if let Some(bin) = bin("02") {
        let rootfs = lab.rootfs().to_string_lossy().into_owned();
        rows.push(step_row(
            "02 run --rootfs",
            &["02"],
            &[&bin, "run", "--rootfs", &rootfs, "--", "/bin/true"],
            crun_of(0),
        ));
    }
    if let Some(bin) = bin("03") {
        let store = lab.store("03").to_string_lossy().into_owned();
        for (label, image) in [
            ("03 run, 1 layer", "busybox"),
            ("03 run, 50 layers", "busybox-50"),
        ] {
            rows.push(step_row(
                label,
                &["03"],
                &[
                    &bin,
                    "--root",
                    &store,
                    "run",
                    "--rm",
                    image,
                    "--",
                    "/bin/true",
                ],
                crun_of(0),
            ));
        }
    }
    rows.extend(runtime_rows(lab, &VARIANTS[0]));
    if let Some(bin) = bin("04") {
        let store = lab.store("04").to_string_lossy().into_owned();
        let run = [bin.as_str(), "--root", &store, "run", "--rm"];
        rows.push(step_row(
            "04 run --network none",
            &["04"],
            &[
                &run[..],
                &["--network", "none", "busybox", "--", "/bin/true"],
            ]
            .concat(),
            crun_of(1),
        ));
        rows.extend(runtime_rows(lab, &VARIANTS[1]));
        rows.push(step_row(
            "04 run, bridge",
            &["04"],
            &[&run[..], &["busybox", "--", "/bin/true"]].concat(),
            Some(CRUN_CNI.to_string()),
        ));
        rows.push(Row {
            label: CRUN_CNI.to_string(),
            kind: Kind::Crun,
            steps: &["04"],
            command: vec!["sh".into(), lab.cni_script().to_string_lossy().into_owned()],
            crun: Some(CRUN_CNI.to_string()),
        });
    } else {
        rows.extend(runtime_rows(lab, &VARIANTS[1]));
    }
    if let Some(bin) = bin("05") {
        let store = lab.store("05").to_string_lossy().into_owned();
        let parent = lab.cgroup_parent();
        let run = [
            bin.as_str(),
            "--root",
            &store,
            "run",
            "--rm",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
        ];
        rows.push(step_row(
            "05 run",
            &["05"],
            &[&run[..], &["busybox", "--", "/bin/true"]].concat(),
            crun_of(2),
        ));
        rows.push(step_row(
            "05 run --memory --pids-limit",
            &["05"],
            &[
                &run[..],
                &[
                    "--memory",
                    "64m",
                    "--pids-limit",
                    "100",
                    "busybox",
                    "--",
                    "/bin/true",
                ],
            ]
            .concat(),
            crun_of(2),
        ));
    }
    rows.extend(runtime_rows(lab, &VARIANTS[2]));
    rows
}

/// `/bin/true` alone, and in five new namespaces made by `unshare`.
fn floor_rows() -> Vec<Row> {
    let row = |label: &str, command: &[&str]| Row {
        label: label.to_string(),
        kind: Kind::Floor,
        steps: &[],
        command: command.iter().map(|arg| arg.to_string()).collect(),
        crun: None,
    };
    vec![
        row("/bin/true", &["/bin/true"]),
        row(
            FLOOR,
            &[
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--",
                "/bin/true",
            ],
        ),
    ]
}

fn step_row(
    label: &str,
    steps: &'static [&'static str],
    command: &[&str],
    crun: Option<String>,
) -> Row {
    Row {
        label: label.to_string(),
        kind: Kind::Step,
        steps,
        command: command.iter().map(|arg| arg.to_string()).collect(),
        crun,
    }
}

/// crun and runc running the bundle of `variant`.
fn runtime_rows(lab: &Lab, variant: &Variant) -> Vec<Row> {
    [("crun", Kind::Crun), ("runc", Kind::Runc)]
        .into_iter()
        .map(|(runtime, kind)| Row {
            label: runtime_label(runtime, variant),
            kind,
            steps: variant.steps,
            command: vec![
                runtime.to_string(),
                "--root".into(),
                lab.state(runtime).to_string_lossy().into_owned(),
                "run".into(),
                "--bundle".into(),
                lab.bundle(runtime, variant.id)
                    .to_string_lossy()
                    .into_owned(),
                container_id(runtime, variant.id),
            ],
            crun: Some(runtime_label("crun", variant)),
        })
        .collect()
}

/// The container's ID in the runtime's state directory.
pub fn container_id(runtime: &str, variant: &str) -> String {
    format!("{runtime}-{variant}")
}

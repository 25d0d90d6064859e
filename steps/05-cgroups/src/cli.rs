//! The command line of step 05: step 04's, with limits on `run`, and
//! `stats` and `inspect`.

use crate::cgroup::{self, DEFAULT_PARENT};
use crate::confine::Confinement;
use crate::hierarchy::{Layout, Version};
use crate::limits::{self, human_bytes, Limits, Swap};
use crate::record;
use anyhow::{Context, Result};
use network::cli::NetworkArgs;
use overlay::cli::RunArgs;
use overlay::container;
use overlay::store::Store;
use serde::Serialize;
use std::path::PathBuf;

/// What step 05 adds to `run`. The values are taken as text and checked
/// here, so that a bad one is reported on one line, as every other error.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Memory limit: bytes, or a number with b, k, m, g or t (e.g. 64m)
    #[arg(short = 'm', long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,

    /// Memory plus swap (as docker counts it); -1 for unlimited swap.
    /// Twice --memory by default
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,

    /// The most processes (and threads) the container may have at a time
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,

    /// CPUs' worth of time, e.g. 0.5: a quota of 50 ms per 100 ms
    #[arg(long, value_name = "FLOAT", allow_hyphen_values = true)]
    pub cpus: Option<String>,

    /// A relative CPU weight, 2 to 262144 (1024 by default; cgroup v2's
    /// cpu.weight as runc maps it)
    #[arg(short = 'c', long, value_name = "N", allow_hyphen_values = true)]
    pub cpu_shares: Option<String>,

    /// The cgroup the container's cgroup is made in: from the top of the
    /// hierarchy when it starts with /, else below the runtime's own cgroup
    /// (on cgroup v2 only when the runtime runs in the root cgroup)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PARENT)]
    pub cgroup_parent: String,
}

impl LimitArgs {
    /// The limits, each checked, then all together.
    pub fn limits(&self) -> Result<Limits> {
        fn flag<T>(
            name: &str,
            value: &Option<String>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>> {
            value
                .as_deref()
                .map(|text| parse(text).map_err(|error| anyhow::anyhow!("--{name} {error}")))
                .transpose()
        }
        let limits = Limits {
            memory: flag("memory", &self.memory, limits::parse_size)?,
            memory_swap: flag("memory-swap", &self.memory_swap, limits::parse_swap)?,
            pids: flag("pids-limit", &self.pids_limit, limits::parse_pids)?,
            cpus: flag("cpus", &self.cpus, limits::parse_cpus)?,
            cpu_shares: flag("cpu-shares", &self.cpu_shares, limits::parse_shares)?,
        };
        limits.check(online_cpus()?)?;
        cgroup::check_parent(&self.cgroup_parent)?;
        Ok(limits)
    }
}

/// The CPUs the kernel runs tasks on now.
fn online_cpus() -> Result<usize> {
    let count = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .context("sysconf(_SC_NPROCESSORS_ONLN)")?
        .context("the number of online CPUs is unknown")?;
    Ok(count as usize)
}

// ANCHOR: run
/// `run` with limits and a network: step 04's attachment and this step's
/// cgroup, as one extension of step 03's container.
pub fn run(store: &Store, limits: &LimitArgs, network: &NetworkArgs, run: RunArgs) -> Result<i32> {
    let checked = limits.limits()?;
    let options = run.options();
    let layout = Layout::detect()?;
    let confinement = Confinement::new(layout, limits.cgroup_parent.clone(), checked);
    let attachment = network.attachment(store, options.hostname.clone())?;
    let mut both = (confinement, attachment);
    let code = container::run_with(store, &options, &mut both)?;
    let oom_kills = both.0.oom_kills();
    if oom_kills > 0 {
        pid::cli::report(&out_of_memory(code, oom_kills, both.0.limits()));
    }
    Ok(code)
}
// ANCHOR_END: run

/// The line `run` prints when the kernel killed the container, or some of
/// its processes, for lack of memory.
fn out_of_memory(code: i32, oom_kills: u64, limits: &Limits) -> String {
    let limit = match (limits.memory, limits.memory_swap) {
        (Some(memory), Some(Swap::Total(total))) if total > memory => format!(
            "its memory limit of {} (--memory) and {} of swap (--memory-swap {})",
            human_bytes(memory),
            human_bytes(total - memory),
            human_bytes(total)
        ),
        (Some(memory), _) => format!("its memory limit of {} (--memory)", human_bytes(memory)),
        (None, _) => "the memory limit of its cgroup parent".to_string(),
    };
    // SIGKILL is how the OOM killer ends a process: 128 + 9.
    if code == 128 + 9 {
        format!("the container was killed by the kernel's out-of-memory (OOM) killer: it reached {limit}")
    } else {
        let processes = if oom_kills == 1 {
            "process"
        } else {
            "processes"
        };
        format!(
            "warning: the kernel's out-of-memory (OOM) killer ended {oom_kills} {processes} of the \
             container: it reached {limit}"
        )
    }
}

/// `inspect`'s JSON.
#[derive(Debug, Serialize)]
pub struct Inspected {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: String,
    pub running: bool,
    pub exit_code: Option<i32>,
    /// `None` for a container made by step 03 or 04.
    pub cgroup: Option<InspectedCgroup>,
}

/// The cgroup part of `inspect`.
#[derive(Debug, Serialize)]
pub struct InspectedCgroup {
    /// 1 or 2.
    pub version: u8,
    /// Its directories (one per hierarchy on v1).
    pub paths: Vec<PathBuf>,
    pub limits: Limits,
}

/// The container `wanted` (a name or an ID prefix).
pub fn inspect(store: &Store, wanted: &str) -> Result<Inspected> {
    let state = container::find(store, wanted)?;
    let cgroup = record::read(store, &state.id)?.map(|record| InspectedCgroup {
        version: match record.cgroup.version {
            Version::V1 => 1,
            Version::V2 => 2,
        },
        paths: record
            .cgroup
            .dirs
            .iter()
            .map(|dir| dir.path.clone())
            .collect(),
        limits: record.limits,
    });
    Ok(Inspected {
        running: container::is_running(&state),
        id: state.id,
        name: state.name,
        image: state.image,
        command: state.command,
        created: state.created,
        exit_code: state.exit_code,
        cgroup,
    })
}

/// Prints `inspect`'s JSON.
pub fn print_inspect(store: &Store, wanted: &str) -> Result<()> {
    let mut json = serde_json::to_string_pretty(&inspect(store, wanted)?)?;
    json.push('\n');
    print!("{json}");
    Ok(())
}

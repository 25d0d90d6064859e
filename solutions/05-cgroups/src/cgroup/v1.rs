//! cgroup v1: one tree per controller (or per group of controllers), so a
//! container's cgroup is a directory in each: `memory/tara/<id>`,
//! `pids/tara/<id>`, `cpu,cpuacct/tara/<id>`, `freezer/tara/<id>`. No
//! controllers to enable, no rule against processes in inner cgroups.

use super::{keyed_value, kill_each, read, read_number, write, CgroupDir, LimitFile, Usage};
use crate::limits::{Limits, CPU_PERIOD_US};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// v1 writes "no limit" as a huge number (a page-aligned `i64::MAX`).
const UNLIMITED_ABOVE: u64 = 1 << 62;

/// Makes the cgroup's directory in one hierarchy, and its parents.
pub fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir -p {}", dir.display()))
}

/// The v1 files for `limits`, in the order the kernel accepts them: the
/// memory limit before memory+swap (which may never be below it), the
/// period before the quota.
pub fn limit_files(limits: &Limits) -> Vec<LimitFile> {
    let mut files = Vec::new();
    if let Some(memory) = limits.memory {
        files.push(LimitFile::new("memory", "memory.limit_in_bytes", memory));
        // memsw counts memory plus swap, as docker's --memory-swap does.
        let memsw = limits
            .swap_only()
            .map_or("-1".to_string(), |swap| (memory + swap).to_string());
        files.push(LimitFile::new(
            "memory",
            "memory.memsw.limit_in_bytes",
            memsw,
        ));
    }
    if let Some(pids) = limits.pids {
        files.push(LimitFile::new("pids", "pids.max", pids));
    }
    if let Some(quota) = limits.cpu_quota_us() {
        files.push(LimitFile::new("cpu", "cpu.cfs_period_us", CPU_PERIOD_US));
        files.push(LimitFile::new("cpu", "cpu.cfs_quota_us", quota));
    }
    if let Some(shares) = limits.cpu_shares {
        files.push(LimitFile::new("cpu", "cpu.shares", shares));
    }
    files
}

/// What the cgroup has used, from the directories of three hierarchies.
pub fn usage(cpuacct: &Path, memory: &Path, pids: &Path) -> Result<Usage> {
    let current = read_number(&memory.join("memory.usage_in_bytes"))?;
    let cache = keyed_value(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
    let limit = read_number(&memory.join("memory.limit_in_bytes"))?;
    Ok(Usage {
        cpu_ns: read_number(&cpuacct.join("cpuacct.usage"))?,
        memory: current.saturating_sub(cache),
        memory_limit: (limit < UNLIMITED_ABOVE).then_some(limit),
        pids: read_number(&pids.join("pids.current"))?,
        oom_kills: oom_kills(memory)?,
    })
}

/// `oom_kill` in `memory.oom_control` (Linux 4.13).
pub fn oom_kills(memory: &Path) -> Result<u64> {
    keyed_value(&memory.join("memory.oom_control"), "oom_kill")
}

/// v1 has no `cgroup.kill`. Killing PIDs one by one races with fork (a
/// child born after the list was read survives), so the freezer stops
/// them all first, then they are killed, then thawed to let them die.
pub fn kill_all(dirs: &[CgroupDir]) -> Result<()> {
    let freezer = dirs
        .iter()
        .find(|dir| dir.controllers.iter().any(|c| c == "freezer"))
        .filter(|dir| dir.path.exists());
    let Some(freezer) = freezer else {
        for dir in dirs {
            kill_each(&dir.path)?;
        }
        return Ok(());
    };
    // Freezing a cgroup freezes the cgroups below it too.
    let state = freezer.path.join("freezer.state");
    let frozen = write(&state, "FROZEN").and_then(|()| wait_until_frozen(&state));
    let killed = kill_each(&freezer.path);
    let thawed = write(&state, "THAWED");
    // Removed meanwhile (by another command): nothing is left to kill.
    if !freezer.path.exists() {
        return Ok(());
    }
    frozen.and(killed).and(thawed)
}

fn wait_until_frozen(state: &Path) -> Result<()> {
    let start = Instant::now();
    while read(state)? != "FROZEN" {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("{} did not reach FROZEN", state.display());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

//! cgroup v2: one tree, one directory per cgroup, every controller in it.
//!
//! A controller works in a cgroup only when its parent lists it in
//! `cgroup.subtree_control`, and the parent's parent, up to the top. And
//! v2's "no internal processes" rule: a cgroup (except the root) that
//! enables controllers for its children may hold no process itself, so
//! processes live in the leaves.

use super::{keyed_value, kill_each, read, read_number, write, LimitFile, Usage};
use crate::hierarchy::{is_mount_root, Hierarchy, V2_CONTROLLERS};
use crate::limits::{Limits, CPU_PERIOD_US};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Makes the cgroup `dir`: its parents where missing, each with tara's
/// controllers enabled for its children, then `dir` itself.
pub fn create(hierarchy: &Hierarchy, dir: &Path) -> Result<()> {
    for ancestor in super::ancestors_below_mount(hierarchy, dir)? {
        // Another runtime may make the same parent at the same moment.
        match std::fs::create_dir(&ancestor) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(error).with_context(|| format!("mkdir {}", ancestor.display()));
            }
            _ => {}
        }
        enable_controllers(hierarchy, &ancestor)?;
    }
    std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))
}

/// Writes `+memory`, `+pids`, `+cpu` (those not enabled yet, among those
/// the cgroup has) to `cgroup.subtree_control`, one at a time, so that an
/// error names the controller.
fn enable_controllers(hierarchy: &Hierarchy, dir: &Path) -> Result<()> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let enabled = read(&dir.join("cgroup.subtree_control"))?;
    let missing = V2_CONTROLLERS
        .iter()
        .filter(|name| available.split(' ').any(|c| c == **name))
        .filter(|name| !enabled.split(' ').any(|c| c == **name));
    let control = dir.join("cgroup.subtree_control");
    for name in missing {
        match std::fs::write(&control, format!("+{name}")) {
            Err(error)
                if error.raw_os_error() == Some(libc_ebusy()) && !is_mount_root(hierarchy, dir) =>
            {
                bail!(
                    "cannot enable {name} in {}: it holds processes, and cgroup v2 lets only a \
                     cgroup without processes share controllers with its children (\"no \
                     internal processes\"); choose a --cgroup-parent elsewhere, e.g. /tara",
                    dir.display()
                )
            }
            result => {
                result.with_context(|| format!("writing \"+{name}\" to {}", control.display()))?
            }
        }
    }
    Ok(())
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

// ANCHOR: limit_files
/// The v2 files for `limits`.
pub fn limit_files(limits: &Limits) -> Vec<LimitFile> {
    // EXERCISE 2: the limits as cgroup v2 files. Hint: memory.max, memory.swap.max
    // (limits.swap_only(), or "max"), pids.max, cpu.max ("{cpu_quota_us} {CPU_PERIOD_US}"),
    // cpu.weight (limits.cpu_weight()); LimitFile::new(controller, file, value).
    todo!("EXERCISE 2: the limits as cgroup v2 files")
}
// ANCHOR_END: limit_files

/// What the cgroup `dir` has used.
pub fn usage(dir: &Path) -> Result<Usage> {
    let current = read_number(&dir.join("memory.current"))?;
    let cache = keyed_value(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    let limit = read(&dir.join("memory.max"))?;
    Ok(Usage {
        cpu_ns: keyed_value(&dir.join("cpu.stat"), "usage_usec")? * 1000,
        memory: current.saturating_sub(cache),
        memory_limit: limit.parse().ok(),
        pids: read_number(&dir.join("pids.current"))?,
        oom_kills: oom_kills(dir)?,
    })
}

/// `oom_kill` in `memory.events`: it counts the cgroup's descendants too.
pub fn oom_kills(dir: &Path) -> Result<u64> {
    keyed_value(&dir.join("memory.events"), "oom_kill")
}

/// `cgroup.kill` (Linux 5.14): the kernel sends SIGKILL to every process
/// of the cgroup and its descendants, new forks included. Without it, each
/// process is killed by its PID.
pub fn kill_all(dir: &Path) -> Result<()> {
    let kill_file = dir.join("cgroup.kill");
    if !kill_file.exists() {
        return kill_each(dir);
    }
    match write(&kill_file, "1") {
        // Removed meanwhile (by another command): nothing is left to kill.
        Err(_) if !dir.exists() => Ok(()),
        written => written,
    }
}

//! What the store keeps of a container's cgroup: `containers/<id>/cgroup.json`,
//! written before the cgroup is made. A runtime killed with SIGKILL cannot
//! remove its container's cgroup; the next command finds the record of a
//! container that no longer runs, and removes what is left.

use crate::cgroup::Cgroup;
use crate::limits::Limits;
use anyhow::{bail, Context, Result};
use overlay::container::{self, State};
use overlay::store::{self, Store};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const FILE: &str = "cgroup.json";

/// A container's cgroup and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub cgroup: Cgroup,
    pub limits: Limits,
}

fn path(store: &Store, id: &str) -> PathBuf {
    store.containers_dir().join(id).join(FILE)
}

/// Writes the record into the container's directory `dir`.
pub fn write(dir: &Path, record: &Record) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(record).context("serializing the cgroup record")?;
    json.push(b'\n');
    store::write_atomically(&dir.join(FILE), &json)
}

/// The record of container `id`; `None` for a container made without one
/// (by step 03 or 04).
pub fn read(store: &Store, id: &str) -> Result<Option<Record>> {
    let path = path(store, id);
    match std::fs::read_to_string(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        read => {
            let text = read.with_context(|| format!("reading {}", path.display()))?;
            let record = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            Ok(Some(record))
        }
    }
}

/// Removes the cgroups of containers that are not running: what a runtime
/// killed with SIGKILL left. Under the store's lock, so that two commands
/// do not freeze, kill and remove the same cgroup at once.
pub fn reclaim_stale(store: &Store) -> Result<()> {
    let stale: Vec<(State, Record)> = stopped_with_cgroup(store)?;
    if stale.is_empty() {
        return Ok(());
    }
    let _lock = store.lock()?;
    for (state, record) in stale {
        let named_by_id = record
            .cgroup
            .dirs
            .iter()
            .all(|dir| dir.path.file_name().is_some_and(|name| *name == *state.id));
        if !named_by_id {
            bail!(
                "the cgroup record of container {} names directories that are not its own",
                state.name
            );
        }
        record
            .cgroup
            .kill_and_remove()
            .with_context(|| format!("removing the cgroup of container {}", state.name))?;
    }
    Ok(())
}

/// The containers that do not run and whose cgroup is still there.
fn stopped_with_cgroup(store: &Store) -> Result<Vec<(State, Record)>> {
    let mut stopped = with_records(store, false)?;
    stopped.retain(|(_, record)| record.cgroup.exists());
    Ok(stopped)
}

/// The running containers that have a cgroup, with it.
pub fn running(store: &Store) -> Result<Vec<(State, Record)>> {
    with_records(store, true)
}

/// The containers that run (or do not), with their records; those made
/// without one (by step 03 or 04) are left out.
fn with_records(store: &Store, running: bool) -> Result<Vec<(State, Record)>> {
    let mut found = Vec::new();
    for state in container::list(store)? {
        if container::is_running(&state) != running {
            continue;
        }
        if let Some(record) = read(store, &state.id)? {
            found.push((state, record));
        }
    }
    Ok(found)
}

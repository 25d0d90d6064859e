//! `stats`: what each container uses, read from its cgroup, as
//! `docker stats` shows it.

use crate::cgroup::{machine_memory, Cgroup, Usage};
use crate::limits::human_bytes;
use crate::record;
use anyhow::{bail, Result};
use overlay::container::{self, State};
use overlay::store::Store;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// CPU % is the CPU time used over this much wall-clock time.
const SAMPLE: Duration = Duration::from_millis(500);

/// One container's line.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: String,
    pub name: String,
    /// 100 % is one CPU busy all the time.
    pub cpu_percent: f64,
    pub usage: Usage,
    /// The memory limit, or the machine's memory when there is none.
    pub memory_limit: u64,
}

/// `stats [--no-stream] [CONTAINER...]`.
pub fn stats(store: &Store, no_stream: bool, wanted: &[String]) -> Result<()> {
    let clear_screen = !no_stream && std::io::stdout().is_terminal();
    // The containers named on the command line must run at first; one that
    // ends later is left out of the next tables, and stats ends with the last.
    let mut containers = containers(store, wanted)?;
    loop {
        let lines = measure(&containers, SAMPLE)?;
        let mut out = std::io::stdout().lock();
        if clear_screen {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{}", table(&lines))?;
        out.flush()?;
        if no_stream || (!wanted.is_empty() && lines.is_empty()) {
            return Ok(());
        }
        containers = if wanted.is_empty() {
            running_with_cgroups(store)?
        } else {
            containers.retain(|(state, _)| lines.iter().any(|line| state.id.starts_with(&line.id)));
            containers
        };
    }
}

/// The containers asked for (all running ones when none is named), with
/// their cgroups.
fn containers(store: &Store, wanted: &[String]) -> Result<Vec<(State, Cgroup)>> {
    if wanted.is_empty() {
        return running_with_cgroups(store);
    }
    let mut found = Vec::new();
    for name in wanted {
        let state = container::find(store, name)?;
        if !container::is_running(&state) {
            bail!("container {} is not running", state.name);
        }
        let Some(record) = record::read(store, &state.id)? else {
            bail!(
                "container {} has no cgroup: it was not started by this step",
                state.name
            );
        };
        found.push((state, record.cgroup));
    }
    Ok(found)
}

fn running_with_cgroups(store: &Store) -> Result<Vec<(State, Cgroup)>> {
    let running = record::running(store)?;
    Ok(running.into_iter().map(|(s, r)| (s, r.cgroup)).collect())
}

/// Reads every cgroup twice, `interval` apart. A container that ends
/// meanwhile is left out.
pub fn measure(containers: &[(State, Cgroup)], interval: Duration) -> Result<Vec<Line>> {
    let start = Instant::now();
    let before: Vec<Option<Usage>> = containers.iter().map(|(_, c)| c.usage().ok()).collect();
    std::thread::sleep(interval);
    let elapsed = start.elapsed().as_nanos().max(1) as f64;
    let machine = machine_memory()?;
    let mut lines = Vec::new();
    for ((state, cgroup), before) in containers.iter().zip(before) {
        let (Some(before), Ok(after)) = (before, cgroup.usage()) else {
            continue;
        };
        let used = after.cpu_ns.saturating_sub(before.cpu_ns) as f64;
        lines.push(Line {
            id: state.id[..12].to_string(),
            name: state.name.clone(),
            cpu_percent: used / elapsed * 100.0,
            memory_limit: after.memory_limit.unwrap_or(machine).min(machine),
            usage: after,
        });
    }
    Ok(lines)
}

/// The table, a header and a line per container.
pub fn table(lines: &[Line]) -> String {
    let width = lines
        .iter()
        .map(|line| line.name.len())
        .max()
        .unwrap_or(0)
        .max(20);
    let mut text = format!(
        "{:<12}   {:<width$}   {:>7}   {:>21}   {:>7}   {:>5}   OOM KILLS\n",
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
    );
    for line in lines {
        let memory = format!(
            "{} / {}",
            human_bytes(line.usage.memory),
            human_bytes(line.memory_limit)
        );
        let memory_percent = line.usage.memory as f64 / line.memory_limit.max(1) as f64 * 100.0;
        text.push_str(&format!(
            "{:<12}   {:<width$}   {:>6.2}%   {:>21}   {:>6.2}%   {:>5}   {}\n",
            line.id,
            line.name,
            line.cpu_percent,
            memory,
            memory_percent,
            line.usage.pids,
            line.usage.oom_kills
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_usage_against_the_limit() {
        let line = Line {
            id: "0123456789ab".into(),
            name: "web".into(),
            cpu_percent: 19.876,
            usage: Usage {
                cpu_ns: 0,
                memory: 8 << 20,
                memory_limit: Some(32 << 20),
                pids: 3,
                oom_kills: 1,
            },
            memory_limit: 32 << 20,
        };
        let table = table(&[line]);
        let rows: Vec<&str> = table.lines().collect();
        assert!(rows[0].starts_with("CONTAINER ID"), "{table}");
        assert!(rows[0].ends_with("OOM KILLS"), "{table}");
        let fields: Vec<&str> = rows[1].split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "0123456789ab",
                "web",
                "19.88%",
                "8MiB",
                "/",
                "32MiB",
                "25.00%",
                "3",
                "1"
            ]
        );
    }
}

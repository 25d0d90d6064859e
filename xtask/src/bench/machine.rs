//! The machine the numbers come from: they mean little without it.

use super::run_quietly;
use anyhow::{Context, Result};
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// UTC, YYYY-MM-DD.
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    /// v2, v1, or both side by side.
    pub cgroups: &'static str,
    /// The versions of crun, runc and hyperfine.
    pub tools: Vec<String>,
    /// The 1-minute load average when the bench started, and when it ended:
    /// other work on the machine makes the times longer and noisier.
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    /// What is known at the start; `load_after` is set at the end.
    pub fn read(cgroups: &'static str) -> Result<Machine> {
        let date = run_quietly(Command::new("date").args(["-u", "+%Y-%m-%d"]))?;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading /proc/sys/kernel/osrelease")?;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let tools = ["crun", "runc", "hyperfine"]
            .iter()
            .map(|tool| version(tool))
            .collect::<Result<Vec<String>>>()?;
        Ok(Machine {
            date: date.trim().to_string(),
            kernel: kernel.trim().to_string(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpu_model(&cpuinfo),
            cgroups,
            tools,
            load_before: load_average(),
            load_after: String::new(),
        })
    }

    /// One sentence for the terminal and the page.
    pub fn describe(&self) -> String {
        format!(
            "{}: Linux {}, {} CPUs ({}), cgroup {}; {}; load average {} at the start, {} at the end",
            self.date,
            self.kernel,
            self.cpus,
            self.cpu_model,
            self.cgroups,
            self.tools.join(", "),
            self.load_before,
            self.load_after
        )
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split(' ').next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// "crun 1.8.1" from "crun version 1.8.1\ncommit: ...".
fn version(tool: &str) -> Result<String> {
    let output = run_quietly(Command::new(tool).arg("--version"))?;
    let first = output.lines().next().unwrap_or(tool);
    Ok(first.replacen(" version", "", 1).trim().to_string())
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "CPU model unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n";
        assert_eq!(cpu_model(cpuinfo), "AMD EPYC 7B13");
        assert_eq!(cpu_model(""), "CPU model unknown");
    }
}

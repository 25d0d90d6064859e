//! What `run` may limit, as docker's flags spell it, checked before any
//! cgroup is made: `--memory 64m`, `--memory-swap 128m`, `--pids-limit 100`,
//! `--cpus 0.5`, `--cpu-shares 512`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The CPU time a quota is counted over: 100 ms, docker's and the kernel's
/// default period.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The smallest quota the kernel accepts: 1 ms per period.
const MIN_CPU_QUOTA_US: u64 = 1_000;

/// docker's smallest `--memory`: below it, the runtime itself and the
/// container's first process do not fit.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// cgroup v1's range for `cpu.shares`.
const SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;

/// The limits of one container. `None`: not limited (the cgroup parent's
/// limits still apply).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// `--memory`: bytes of memory.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap, as docker counts it.
    pub memory_swap: Option<Swap>,
    /// `--pids-limit`: processes (and threads) at a time.
    pub pids: Option<u64>,
    /// `--cpus`: CPUs' worth of time, e.g. 0.5.
    pub cpus: Option<f64>,
    /// `--cpu-shares`: a relative weight (v1's unit; 1024 is the default).
    pub cpu_shares: Option<u64>,
}

/// `--memory-swap`: memory plus swap, or unlimited swap (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Swap {
    Total(u64),
    Unlimited,
}

impl Limits {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks what one flag alone cannot: the flags together, and the CPUs
    /// this machine has.
    pub fn check(&self, online_cpus: usize) -> Result<()> {
        if let Some(memory) = self.memory {
            if memory < MIN_MEMORY {
                bail!(
                    "--memory {}: the smallest memory limit is 6m",
                    human_bytes(memory)
                );
            }
        }
        match (self.memory_swap, self.memory) {
            (Some(_), None) => bail!("--memory-swap needs --memory: it is memory plus swap"),
            (Some(Swap::Total(total)), Some(memory)) if total < memory => bail!(
                "--memory-swap {} is less than --memory {}: it counts memory plus swap",
                human_bytes(total),
                human_bytes(memory)
            ),
            _ => {}
        }
        if let Some(cpus) = self.cpus {
            if cpus > online_cpus as f64 {
                bail!("--cpus {cpus}: this machine has {online_cpus} CPUs");
            }
        }
        Ok(())
    }

    /// The swap a container may use besides its memory: `None` for no swap
    /// limit of its own. As docker: `--memory` alone allows as much swap
    /// again.
    pub fn swap_only(&self) -> Option<u64> {
        let memory = self.memory?;
        match self.memory_swap {
            None => Some(memory),
            Some(Swap::Total(total)) => Some(total - memory),
            Some(Swap::Unlimited) => None,
        }
    }

    /// `--cpus` as the CPU time per [`CPU_PERIOD_US`] the kernel allows the
    /// cgroup, in microseconds: 0.5 CPU is 50 ms of every 100 ms.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpus
            .map(|cpus| (cpus * CPU_PERIOD_US as f64).round() as u64)
    }

    /// `--cpu-shares` as cgroup v2's `cpu.weight` (1 to 10000, default 100),
    /// mapped as runc (since 1.3.2) and crun (since 1.23) map it: on a log
    /// scale that keeps the defaults together, 2 → 1, 1024 → 100,
    /// 262144 → 10000. (The straight line they used before took the
    /// default 1024 to 39, below every container without the flag.)
    pub fn cpu_weight(&self) -> Option<u64> {
        self.cpu_shares.map(|shares| {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            // Rounded first, so that 10^2.0000000000000004 is 100, not 101.
            let weight = (10f64.powf(exponent) * 1e6).round() / 1e6;
            (weight.ceil() as u64).clamp(1, 10_000)
        })
    }
}

/// Parses a size as docker does: bytes, or a number with `b`, `k`, `m`,
/// `g` or `t` (powers of 1024, any case, then an optional `i` and `b`):
/// `512`, `64m`, `1.5g`, `64MB`, `64MiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let letter = unit.strip_suffix('b').unwrap_or(unit);
    let letter = letter
        .strip_suffix('i')
        .filter(|l| !l.is_empty())
        .unwrap_or(letter);
    let multiplier: u64 = match letter {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: use bytes, or k, m, g or t"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use bytes, or k, m, g or t"))?;
    let bytes = value * multiplier as f64;
    if bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?}: a size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// `--memory-swap`: a size, or `-1` for unlimited swap.
pub fn parse_swap(text: &str) -> Result<Swap, String> {
    if text.trim() == "-1" {
        return Ok(Swap::Unlimited);
    }
    parse_size(text).map(Swap::Total)
}

/// `--pids-limit`: a count of at least 1.
pub fn parse_pids(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(format!(
            "{text:?}: the limit is a number of processes, 1 or more"
        )),
    }
}

/// `--cpus`: at least 0.01 (the kernel's smallest quota, 1 ms per 100 ms).
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let smallest = MIN_CPU_QUOTA_US as f64 / CPU_PERIOD_US as f64;
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus >= smallest => Ok(cpus),
        _ => Err(format!(
            "{text:?}: CPUs are a number from {smallest}, e.g. 0.5"
        )),
    }
}

/// `--cpu-shares`: cgroup v1's range, 2 to 262144.
pub fn parse_shares(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(shares) if SHARES_RANGE.contains(&shares) => Ok(shares),
        _ => Err(format!(
            "{text:?}: shares are a number from {} to {}",
            SHARES_RANGE.start(),
            SHARES_RANGE.end()
        )),
    }
}

/// Bytes as `docker stats` shows them: `1.5MiB`, `31.25GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_or_powers_of_1024() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512b"), Ok(512));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "12XB", "", "m", "-1", "-5m", "0", "0m", "1..5m", "64 m", "1e9", "64i", "1p",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn swap_is_a_size_or_minus_one() {
        assert_eq!(parse_swap("-1"), Ok(Swap::Unlimited));
        assert_eq!(parse_swap("1g"), Ok(Swap::Total(1 << 30)));
        assert!(parse_swap("-2").is_err());
    }

    #[test]
    fn counts_cpus_and_shares_have_ranges() {
        assert_eq!(parse_pids("100"), Ok(100));
        for bad in ["0", "-1", "x", "1.5"] {
            assert!(parse_pids(bad).is_err(), "{bad:?} was taken");
        }
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("0.01"), Ok(0.01));
        for bad in ["0", "-1", "0.001", "NaN", "inf", "x"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} was taken");
        }
        assert_eq!(parse_shares("1024"), Ok(1024));
        for bad in ["0", "1", "262145", "-2"] {
            assert!(parse_shares(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn limits_are_checked_together() {
        let swap_alone = Limits {
            memory_swap: Some(Swap::Total(1 << 30)),
            ..Limits::default()
        };
        assert!(swap_alone.check(2).is_err());
        let swap_below_memory = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(Swap::Total(32 << 20)),
            ..Limits::default()
        };
        assert!(swap_below_memory.check(2).is_err());
        let tiny = Limits {
            memory: Some(1 << 20),
            ..Limits::default()
        };
        assert!(tiny.check(2).is_err());
        let too_many_cpus = Limits {
            cpus: Some(2.5),
            ..Limits::default()
        };
        assert!(too_many_cpus.check(2).is_err());
        assert!(too_many_cpus.check(4).is_ok());
    }

    #[test]
    fn swap_is_what_comes_on_top_of_memory() {
        let mut limits = Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        };
        assert_eq!(limits.swap_only(), Some(64 << 20), "docker's default");
        limits.memory_swap = Some(Swap::Total(64 << 20));
        assert_eq!(limits.swap_only(), Some(0));
        limits.memory_swap = Some(Swap::Unlimited);
        assert_eq!(limits.swap_only(), None);
    }

    #[test]
    fn cpus_become_a_quota_and_shares_a_weight() {
        let limits = Limits {
            cpus: Some(0.2),
            cpu_shares: Some(1024),
            ..Limits::default()
        };
        assert_eq!(limits.cpu_quota_us(), Some(20_000));
        assert_eq!(limits.cpu_weight(), Some(100), "the defaults meet");
        let bounds = |shares| Limits {
            cpu_shares: Some(shares),
            ..Limits::default()
        };
        assert_eq!(bounds(2).cpu_weight(), Some(1));
        assert_eq!(bounds(512).cpu_weight(), Some(59));
        assert_eq!(bounds(2048).cpu_weight(), Some(174));
        assert_eq!(bounds(262_144).cpu_weight(), Some(10_000));
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536 * 1024), "1.5MiB");
        assert_eq!(human_bytes(32 << 20), "32MiB");
    }
}

//! Step 05: limits on memory, processes and CPU, with cgroups.
//!
//! After step 04 a container has its own processes, files and network,
//! but it can still take all of the machine's memory, fork until no PID is
//! left, or keep every CPU busy. A **control group** (cgroup) is a set of
//! processes the kernel counts and limits together; its children are born
//! into it. Each container now gets one, `/tara/<id>`:
//!
//! ```text
//!   runtime: make /tara/<id>, write memory.max, pids.max, cpu.max
//!       │    clone, then write the child's PID to /tara/<id>/cgroup.procs
//!       ▼
//!   container (PID 1 and every process it forks): counted in /tara/<id>
//!       memory above memory.max   → reclaimed, then the OOM killer (exit 137)
//!       a fork above pids.max     → fork fails with EAGAIN
//!       CPU above cpu.max's quota → throttled until the next period
//! ```
//!
//! Where the hierarchies are mounted, and which version, is found in the
//! mount table ([`hierarchy`]). [`cgroup`] makes, limits, joins, reads and
//! removes a cgroup, with cgroup v2 ([`cgroup::v2`]) and v1 ([`cgroup::v1`])
//! side by side. [`confine`] does it for a container through step 03's
//! [`overlay::container::Extension`], together with step 04's network;
//! [`inside`] gives the container a cgroup namespace and its own cgroup,
//! read-only, at `/sys/fs/cgroup`. [`record`] keeps the cgroup's place in
//! the store, so that a runtime killed with SIGKILL leaves nothing for long.

pub mod cgroup;
pub mod cli;
pub mod confine;
pub mod hierarchy;
pub mod inside;
pub mod limits;
pub mod record;
pub mod stats;

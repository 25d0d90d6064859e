//! A container's cgroup, from start to end, as step 03's [`Extension`]:
//!
//! ```text
//! runtime                                         child (waiting, then running)
//! -------                                         -----------------------------
//! before_start:  record, make the cgroup
//!                (/tara/<id>), write the limits
//! clone ───────────────────────────────────────▶  waits on the sync pipe
//! child_started: write the child's PID to
//!                cgroup.procs: it is in, before
//!                it runs anything of its own
//!                                                 finish_root: unshare a cgroup
//!                                                 namespace; mount the cgroup
//!                                                 read-only at /sys/fs/cgroup
//!                                                 exec the command: its forks are
//!                                                 born in the cgroup
//! after_exit:    count the OOM kills, kill
//!                what is left, rmdir
//! ```

use crate::cgroup::Cgroup;
use crate::hierarchy::Layout;
use crate::inside;
use crate::limits::Limits;
use crate::record::{self, Record};
use anyhow::Result;
use nix::unistd::Pid;
use overlay::container::{Extension, State};
use std::path::Path;

/// A container's place in the cgroup tree, while it exists.
#[derive(Debug)]
pub struct Confinement {
    layout: Layout,
    parent: String,
    limits: Limits,
    /// Set by `before_start`.
    cgroup: Option<Cgroup>,
    /// The OOM kills counted at the end, for `run`'s message.
    oom_kills: u64,
}

impl Confinement {
    pub fn new(layout: Layout, parent: String, limits: Limits) -> Self {
        Confinement {
            layout,
            parent,
            limits,
            cgroup: None,
            oom_kills: 0,
        }
    }

    /// How many of the container's processes the kernel killed for lack of
    /// memory (known once the container has ended).
    pub fn oom_kills(&self) -> u64 {
        self.oom_kills
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Extension for Confinement {
    fn before_start(&mut self, state: &State, dir: &Path) -> Result<()> {
        let cgroup = Cgroup::plan(&self.layout, &self.parent, &state.id)?;
        // Recorded first: if the runtime dies from here on, the next
        // command finds the record and removes the cgroup.
        let record = Record {
            cgroup: cgroup.clone(),
            limits: self.limits.clone(),
        };
        record::write(dir, &record)?;
        let cgroup = self.cgroup.insert(cgroup);
        cgroup.create(&self.layout)?;
        cgroup.set_limits(&self.limits)
    }

    // ANCHOR: child_started
    fn child_started(&self, child: Pid) -> Result<()> {
        match &self.cgroup {
            Some(cgroup) => cgroup.join(child),
            None => Ok(()),
        }
    }
    // ANCHOR_END: child_started

    fn finish_root(&self) -> Result<()> {
        match &self.cgroup {
            Some(cgroup) => inside::enter_namespace_and_mount(cgroup),
            None => Ok(()),
        }
    }

    fn after_exit(&mut self) -> Result<()> {
        let Some(cgroup) = self.cgroup.take() else {
            return Ok(());
        };
        // Read before the cgroup goes: its counters go with it.
        self.oom_kills = cgroup.oom_kills().unwrap_or(0);
        cgroup.kill_and_remove()
    }
}

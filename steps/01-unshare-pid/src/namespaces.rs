//! Creating the child in new namespaces.
//!
//! A namespace wraps one global resource so that the processes inside see
//! their own instance of it. Each process's namespaces are listed in
//! `/proc/PID/ns/`: two processes share a namespace exactly when the links
//! there point to the same inode.

use anyhow::{bail, Context, Result};
use nix::sched::{clone, CloneFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::path::PathBuf;

/// The child gets its own stack: clone(2) starts it on the memory we pass,
/// in a copy of our address space (no CLONE_VM), so the copy in the parent
/// can be freed as soon as clone returns.
const CHILD_STACK_SIZE: usize = 1024 * 1024;

/// The namespaces a container of this step lives in.
// ANCHOR: namespaces
pub fn container_namespaces() -> CloneFlags {
    // EXERCISE 1: choose the namespaces. Hint: a new PID namespace (the command becomes
    // PID 1), a new mount namespace (so /proc can be remounted without the host seeing
    // it) and a new UTS namespace (so the hostname can change); see
    // CloneFlags::CLONE_NEW*.
    todo!("EXERCISE 1: choose the namespaces")
}
// ANCHOR_END: namespaces

/// Starts `child` as a new process in the namespaces `flags` asks for and
/// returns its PID as the parent sees it.
// ANCHOR: spawn
pub fn spawn_in_namespaces(flags: CloneFlags, child: impl FnMut() -> isize) -> Result<Pid> {
    let mut stack = vec![0u8; CHILD_STACK_SIZE];
    // EXERCISE 2: clone the child into the new namespaces. Hint: nix::sched::clone takes
    // the callback (boxed), the stack, the flags, and the signal the kernel sends us when
    // the child exits: pass Some(Signal::SIGCHLD as i32), or waitpid will not see the
    // child. It is an unsafe fn: write down in a // SAFETY: comment why calling it here
    // is sound.
    todo!("EXERCISE 2: clone the child into the new namespaces")
}
// ANCHOR_END: spawn

/// The namespace kinds this crate knows, with their `/proc/PID/ns` names.
const KINDS: [(CloneFlags, &str); 6] = [
    (CloneFlags::CLONE_NEWPID, "pid_for_children"),
    (CloneFlags::CLONE_NEWNS, "mnt"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWNET, "net"),
    (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
];

/// The mount and UTS namespaces must be new before the child mounts /proc or
/// sets the hostname: in the host's namespaces both would change the host.
const REQUIRED: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWUTS);

/// Refuses to let the child go on unless it really has the namespaces it was
/// asked for (and at least PID, mount and UTS): a safety net for the
/// exercises, since mounting /proc in the host's mount namespace would hide
/// the host's own /proc.
pub fn ensure_isolated(child: Pid, flags: CloneFlags) -> Result<()> {
    if !flags.contains(REQUIRED) {
        bail!(
            "refusing to start: the container must get new PID, mount and UTS namespaces, \
             but only {flags:?} were requested (see container_namespaces)"
        );
    }
    for (flag, name) in KINDS.iter().filter(|(flag, _)| flags.contains(*flag)) {
        // The child's *own* PID namespace shows as "pid" in its /proc entry;
        // ours, for comparison, is where our children would be born.
        let theirs = if *flag == CloneFlags::CLONE_NEWPID {
            "pid"
        } else {
            name
        };
        let ours = namespace_id(Pid::this(), name)?;
        if namespace_id(child, theirs)? == ours {
            bail!("refusing to start: the child still shares the host's {name} namespace ({ours})");
        }
    }
    Ok(())
}

/// The identity of a namespace: the target of `/proc/PID/ns/NAME`,
/// for example `mnt:[4026531841]`.
pub fn namespace_id(pid: Pid, name: &str) -> Result<String> {
    let link = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
    let target =
        std::fs::read_link(&link).with_context(|| format!("readlink {}", link.display()))?;
    Ok(target.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_without_the_required_namespaces_is_refused() {
        let error = ensure_isolated(Pid::this(), CloneFlags::CLONE_NEWUTS).unwrap_err();
        assert!(
            error.to_string().contains("new PID, mount and UTS"),
            "{error}"
        );
    }

    #[test]
    fn our_own_namespaces_are_readable() {
        let id = namespace_id(Pid::this(), "mnt").unwrap();
        assert!(id.starts_with("mnt:["), "{id}");
    }
}

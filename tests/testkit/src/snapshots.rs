//! insta settings shared by the acceptance tests.
//!
//! All steps' tests live side by side in `tests/`, and each is compiled into
//! two crates (the student's and the solution's) under the same name,
//! `acceptance`. So each step keeps its snapshots in a folder of its own,
//! `tests/snapshots/NN-topic/`, without a module prefix: the student's crate
//! is compared with exactly the snapshots the solution produced.

/// Settings for the snapshots of step `step` (for example "01-unshare-pid"),
/// with the redactions every step needs: PIDs, inode numbers, temp paths.
pub fn snapshot_settings(step: &str) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(format!("snapshots/{step}"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    // Temp directories of the sandboxes: /tmp/.tmpAbC123 and friends.
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[SANDBOX]");
    // Namespace and other inode numbers: mnt:[4026531841].
    settings.add_filter(r"\[\d{6,}\]", "[INODE]");
    settings
}

/// Adds a filter that replaces the PID `pid` (as a whole number) with
/// `[label]`, for output that shows PIDs as the host sees them.
pub fn redact_pid(settings: &mut insta::Settings, pid: i32, label: &str) {
    settings.add_filter(&format!(r"\b{pid}\b"), format!("[{label}]"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_inodes_and_pids_are_redacted() {
        let mut settings = snapshot_settings("00-testkit");
        redact_pid(&mut settings, 4242, "RUNTIME");
        settings.bind(|| {
            insta::assert_snapshot!(
                "/tmp/.tmpAb12Cd/rootfs mnt:[4026531841] pid 4242, not 42420",
                @"[SANDBOX]/rootfs mnt:[INODE] pid [RUNTIME], not 42420"
            );
        });
    }
}

//! A step's binary driven against a store of the test's own, for the
//! acceptance tests of step 03 on: `BINARY --root ROOT ARGS...`, marked by
//! the sandbox, and from step 04 on run in the test's host network
//! namespace. Each test file wraps it (`Deref`) and adds what its step
//! needs.

use crate::exercises::run_to_end;
use crate::finished::Finished;
use crate::netns::HostNetns;
use crate::rootfs::busybox_rootfs;
use crate::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary of the crate under test, with a store in the sandbox.
#[derive(Debug)]
pub struct StoreCli<'a> {
    sandbox: &'a Sandbox,
    host: Option<&'a HostNetns>,
    binary: PathBuf,
    root: PathBuf,
}

impl<'a> StoreCli<'a> {
    /// `package`: the crate's binary, `env!("CARGO_PKG_NAME")` in the test.
    pub fn new(sandbox: &'a Sandbox, package: &str) -> Self {
        StoreCli {
            sandbox,
            host: None,
            binary: assert_cmd::cargo::cargo_bin(package),
            root: sandbox.join("root"),
        }
    }

    /// The same, with every command run in `host`, the test's network
    /// namespace.
    pub fn in_host(sandbox: &'a Sandbox, package: &str, host: &'a HostNetns) -> Self {
        StoreCli {
            host: Some(host),
            ..StoreCli::new(sandbox, package)
        }
    }

    /// The store's directory, `--root`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sandbox(&self) -> &'a Sandbox {
        self.sandbox
    }

    /// The binary with `--root ROOT ARGS...`, marked by the sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut binary = Command::new(&self.binary);
        binary.arg("--root").arg(&self.root).args(args);
        let mut command = match self.host {
            Some(host) => host.wrap(&binary),
            None => binary,
        };
        self.sandbox.mark(&mut command);
        command
    }

    /// Runs `ARGS...` to its end.
    pub fn run(&self, args: &[&str]) -> Finished {
        run_to_end(self.command(args))
    }

    /// Runs `ARGS...`, which must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).success().stdout_text()
    }

    /// Imports `source` (a directory or an archive) as the image `name`.
    pub fn import(&self, name: &str, source: &Path) {
        self.ok(&["image", "import", name, source.to_str().unwrap()]);
    }

    /// Imports testkit's busybox root filesystem as `busybox`.
    pub fn import_busybox(&self) {
        self.import("busybox", &busybox_rootfs());
    }

    /// The directory of the container named `name`.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        let containers = self.root.join("containers");
        std::fs::read_dir(&containers)
            .expect("the containers directory")
            .map(|entry| entry.unwrap().path())
            .find(|dir| {
                let state = std::fs::read_to_string(dir.join("state.json")).unwrap_or_default();
                let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
                state["name"] == name
            })
            .unwrap_or_else(|| panic!("no container named {name} in {}", containers.display()))
    }

    /// The ID of the container named `name`: the name of its directory.
    pub fn container_id(&self, name: &str) -> String {
        let dir = self.container_dir(name);
        dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The directory of the image's top layer.
    pub fn top_layer(&self, image: &str) -> PathBuf {
        let record = std::fs::read_to_string(self.root.join(format!("images/{image}.json")))
            .expect("the image's record");
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        let diff_ids = record["config"]["rootfs"]["diff_ids"].as_array().unwrap();
        let top = diff_ids.last().unwrap().as_str().unwrap();
        let hex = top.strip_prefix("sha256:").unwrap();
        self.root.join("layers/sha256").join(hex).join("diff")
    }
}

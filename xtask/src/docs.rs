//! `cargo xtask docs`: the API docs, offline.

use anyhow::Result;
use std::path::Path;

/// Builds the docs and, with `serve`, serves them on `address`.
pub fn run(_root: &Path, _serve: bool, _address: &str) -> Result<()> {
    anyhow::bail!("not yet written")
}

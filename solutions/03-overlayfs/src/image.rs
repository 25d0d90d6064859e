//! Images: a name, and an OCI config that lists the image's layers.
//!
//! An image is nothing but a list of layers, bottom first (the config's
//! `rootfs.diff_ids`), and the settings a container starts with (its
//! `Entrypoint`, `Cmd`, `Env` and `WorkingDir`). Each `RUN` of a Dockerfile
//! adds one layer, and `image history` shows them: that is why chaining
//! commands in one `RUN` keeps an image small.

use crate::archive::{self, Imported, SourceKind};
use crate::layer::{self, Layer};
use crate::store::{self, Locked, Store};
use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Arch, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Docker refuses images deeper than this; so do we (and the overlay's
/// option string must fit in one page).
pub const MAX_LAYERS: usize = 128;

/// An image as the store keeps it, in `images/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// Its name, as given to `image import` or `commit`.
    pub name: String,
    /// When it was imported or committed, RFC 3339.
    pub created: String,
    /// The OCI image configuration: layers, history, and how to run it.
    pub config: ImageConfiguration,
}

impl Image {
    /// Its ID: the SHA-256 of its configuration, as docker's image IDs.
    pub fn id(&self) -> Result<String> {
        let bytes = serde_json::to_vec(&self.config).context("serializing the image config")?;
        Ok(format!("{:x}", Sha256::digest(bytes)))
    }

    /// Its layers' diff IDs, bottom first.
    pub fn layers(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }
}

/// Refuses names that could not be a file name under `images/`.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c));
    if !valid {
        bail!(
            "invalid image name {name:?}: use letters, digits and _ . - : (at most 128, \
             starting with a letter or digit)"
        );
    }
    Ok(())
}

fn record_path(store: &Store, name: &str) -> PathBuf {
    store.images_dir().join(format!("{name}.json"))
}

/// The image `name`.
pub fn load(store: &Store, name: &str) -> Result<Image> {
    check_name(name)?;
    let path = record_path(store, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("no such image: {name} (see `image ls`; `image import` brings one in)")
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Every image in the store, by name.
pub fn list(store: &Store) -> Result<Vec<Image>> {
    let dir = store.images_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    names.iter().map(|name| load(store, name)).collect()
}

/// Saves `image` under its name (replacing an image of that name).
pub fn save(store: &Store, image: &Image, _lock: &Locked) -> Result<()> {
    if image.layers().len() > MAX_LAYERS {
        bail!(
            "{} would have {} layers; at most {MAX_LAYERS} are supported (as docker): \
             squash some of them",
            image.name,
            image.layers().len()
        );
    }
    let mut json = serde_json::to_vec_pretty(image).context("serializing the image")?;
    json.push(b'\n');
    store::write_atomically(&record_path(store, &image.name), &json)
}

/// `image import [--parent PARENT] NAME SOURCE`.
pub fn import(store: &Store, name: &str, source: &Path, parent: Option<&str>) -> Result<Image> {
    check_name(name)?;
    let lock = store.lock()?;
    let imported = import_locked(store, name, source, parent, &lock);
    if imported.is_err() {
        // Whatever was unpacked goes, and so do the layers published before
        // a later one failed: a failed import leaves the store as it was.
        store.discard_staging(&lock)?;
        remove_unused_layers(store, &lock)?;
    }
    imported
}

fn import_locked(
    store: &Store,
    name: &str,
    source: &Path,
    parent: Option<&str>,
    lock: &Locked,
) -> Result<Image> {
    let kind = archive::detect(source)?;
    // The parent first: nothing is unpacked for an image that cannot be made.
    if parent.is_some() && is_whole_image(kind) {
        bail!("--parent stacks one layer (a directory or a layer tarball), not a whole image");
    }
    let parent = parent.map(|parent| load(store, parent)).transpose()?;
    if let Some(parent) = &parent {
        if parent.layers().len() >= MAX_LAYERS {
            bail!(
                "{} has {} layers already: one more would make {}, and at most {MAX_LAYERS} are \
                 supported (as docker)",
                parent.name,
                parent.layers().len(),
                parent.layers().len() + 1
            );
        }
    }
    let imported = match kind {
        SourceKind::Directory => single_layer(layer::import_dir(store, lock, source)?),
        SourceKind::LayerTar => {
            let file = std::fs::File::open(source)
                .with_context(|| format!("opening {}", source.display()))?;
            single_layer(layer::import_layer(store, lock, file)?)
        }
        SourceKind::OciLayout => archive::import_oci_layout(store, lock, source)?,
        SourceKind::OciArchive | SourceKind::DockerArchive => {
            archive::import_archive(store, lock, source, kind)?
        }
    };
    let config = match parent {
        None if imported.layers.len() == 1 && !is_whole_image(kind) => new_config(
            &imported.layers,
            &format!("tara image import {}", source.display()),
        )?,
        None => imported.config,
        Some(parent) => stack(
            &parent.config,
            &imported.layers[0],
            &format!(
                "tara image import --parent {} {}",
                parent.name,
                source.display()
            ),
        )?,
    };
    let image = Image {
        name: name.to_string(),
        created: now(),
        config,
    };
    save(store, &image, lock)?;
    Ok(image)
}

fn is_whole_image(kind: SourceKind) -> bool {
    matches!(
        kind,
        SourceKind::OciLayout | SourceKind::OciArchive | SourceKind::DockerArchive
    )
}

fn single_layer(layer: Layer) -> Imported {
    Imported {
        config: ImageConfiguration::default(),
        layers: vec![layer],
    }
}

/// The config of a new one-layer image, made by `created_by`.
fn new_config(layers: &[Layer], created_by: &str) -> Result<ImageConfiguration> {
    let diff_ids: Vec<String> = layers.iter().map(|layer| layer.diff_id.clone()).collect();
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .context("building the config's rootfs")?;
    let history = HistoryBuilder::default()
        .created(now())
        .created_by(created_by)
        .build()
        .context("building the config's history")?;
    ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .created(now())
        .rootfs(rootfs)
        .history(vec![history])
        .build()
        .context("building the image config")
}

/// `base`'s config with `layer` on top, made by `created_by`.
pub fn stack(
    base: &ImageConfiguration,
    layer: &Layer,
    created_by: &str,
) -> Result<ImageConfiguration> {
    let mut config = base.clone();
    let mut diff_ids = config.rootfs().diff_ids().clone();
    diff_ids.push(layer.diff_id.clone());
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .context("building the config's rootfs")?;
    config.set_rootfs(rootfs);
    let mut history = config.history().clone();
    history.push(
        HistoryBuilder::default()
            .created(now())
            .created_by(created_by)
            .build()
            .context("building the config's history")?,
    );
    config.set_history(history);
    config.set_created(Some(now()));
    Ok(config)
}

/// `image rm NAME`: refused while a container uses the image; then the
/// layers that no other image or container uses are removed too.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let lock = store.lock()?;
    load(store, name)?;
    let users = crate::container::using_image(store, name)?;
    if let Some(user) = users.first() {
        bail!(
            "image {name} is used by container {user}{}: remove the container first (`rm`)",
            if users.len() > 1 { " and others" } else { "" }
        );
    }
    let path = record_path(store, name);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    remove_unused_layers(store, &lock)
}

/// Removes every layer that no image and no container lists: after `image
/// rm`, `rm`, or an import that failed after it had published some layers.
pub fn remove_unused_layers(store: &Store, lock: &Locked) -> Result<()> {
    let mut used: BTreeSet<String> = list(store)?
        .iter()
        .flat_map(|image| image.layers().to_vec())
        .collect();
    for container in crate::container::list(store)? {
        used.extend(container.layers);
    }
    for diff_id in store.layer_ids()? {
        if !used.contains(&diff_id) {
            layer::unlink_short_name(store, &diff_id)?;
            store.discard(&store.layer_dir(&diff_id)?, lock)?;
        }
    }
    Ok(())
}

/// Each layer's diff ID with the history entry that made it, bottom first
/// (history entries marked `empty_layer` made no layer).
pub fn layer_history(image: &Image) -> Vec<(String, String)> {
    let mut made_by = image
        .config
        .history()
        .iter()
        .filter(|entry| !entry.empty_layer().unwrap_or(false))
        .map(|entry| entry.created_by().clone().unwrap_or_default());
    image
        .layers()
        .iter()
        .map(|diff_id| (diff_id.clone(), made_by.next().unwrap_or_default()))
        .collect()
}

/// `image save NAME FILE`.
pub fn save_archive(store: &Store, name: &str, file: &Path) -> Result<()> {
    let _lock = store.lock()?;
    let image = load(store, name)?;
    crate::save::save_oci_archive(store, name, &image.config, image.layers(), file)
}

/// The size in bytes of the layer `diff_id`, as recorded at import.
pub fn layer_size(store: &Store, diff_id: &str) -> Result<u64> {
    let path = store.layer_dir(diff_id)?.join("size");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {}", path.display()))
}

/// Now, as RFC 3339 (UTC, whole seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// How long ago the RFC 3339 time `then` was, as docker says it.
pub fn ago(then: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(then) else {
        return "unknown".into();
    };
    let seconds = SystemTime::now()
        .duration_since(then)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    match seconds {
        0 => "Less than a second ago".into(),
        1 => "1 second ago".into(),
        2..=59 => format!("{seconds} seconds ago"),
        60..=119 => "About a minute ago".into(),
        120..=3599 => format!("{} minutes ago", seconds / 60),
        3600..=7199 => "About an hour ago".into(),
        7200..=172_799 => format!("{} hours ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// A size as docker prints it: 1000-based units, four significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let integer_digits = if size >= 100.0 {
        3
    } else if size >= 10.0 {
        2
    } else {
        1
    };
    let text = format!("{size:.decimals$}", decimals = 4 - integer_digits);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_file_names_safely() {
        for good in ["busybox", "alpine:3.20", "my-image_2.0"] {
            check_name(good).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
    }
}

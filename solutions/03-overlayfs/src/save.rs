//! `image save`: an image written out as an OCI image-layout archive, which
//! skopeo, umoci and podman read.
//!
//! The layers are tarred again from their directories in the store
//! (overlay whiteouts turned back into OCI ones by [`crate::layer::write_layer`]),
//! uncompressed, so each layer's blob digest is its diff id. The archive is
//! deterministic: its own entries are root's and dated 0.

use crate::archive::{hash_file, sha256_digest, LAYOUT_VERSION};
use crate::layer;
use crate::store::{self, Store};
use anyhow::{Context, Result};
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, OciLayoutBuilder, PlatformBuilder, ANNOTATION_REF_NAME,
};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Writes `file`, an OCI image layout archive of the image with `config`
/// and `layers` (diff ids, bottom first), its manifest named `name` (the
/// annotation org.opencontainers.image.ref.name) in index.json.
///
/// Each layer is tarred again from its directory in the store, uncompressed:
/// the bytes need not be those that were imported (gzip, another order, ...),
/// so the digests and the config's diff ids are those of what is written.
/// `file` is written atomically: beside it under a temporary name, then
/// renamed.
pub fn save_oci_archive(
    store: &Store,
    name: &str,
    config: &ImageConfiguration,
    layers: &[String],
    file: &Path,
) -> Result<()> {
    let partial = beside(file, "partial")?;
    let scratch = beside(file, "layer")?;
    let written = write_oci_archive(store, name, config, layers, &partial, &scratch);
    // The scratch file may not exist: nothing to report if removing it fails.
    let _ = fs::remove_file(&scratch);
    if let Err(error) = written {
        let _ = fs::remove_file(&partial);
        return Err(error.context(format!("writing {}", file.display())));
    }
    fs::rename(&partial, file)
        .with_context(|| format!("rename({}, {})", partial.display(), file.display()))
}

/// A temporary path beside `file` (so that rename(2) stays on one
/// filesystem): `.NAME.RANDOM.suffix`.
fn beside(file: &Path, suffix: &str) -> Result<PathBuf> {
    let name = file.file_name().context("the archive needs a file name")?;
    let name = format!(
        ".{}.{}.{suffix}",
        name.to_string_lossy(),
        store::random_hex(8)?
    );
    Ok(file.with_file_name(name))
}

fn write_oci_archive(
    store: &Store,
    name: &str,
    config: &ImageConfiguration,
    layers: &[String],
    partial: &Path,
    scratch: &Path,
) -> Result<()> {
    let out = File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(out));
    let layout = OciLayoutBuilder::default()
        .image_layout_version(LAYOUT_VERSION)
        .build()?;
    append_bytes(&mut tar, "oci-layout", &serde_json::to_vec(&layout)?)?;
    append_directory(&mut tar, "blobs/")?;
    append_directory(&mut tar, "blobs/sha256/")?;
    let mut descriptors: Vec<Descriptor> = Vec::new();
    for (position, diff_id) in layers.iter().enumerate() {
        // A layer used twice (an image that adds the same files twice) is
        // one blob: an archive holds each name once.
        let earlier = layers[..position].iter().position(|other| other == diff_id);
        let descriptor = match earlier {
            Some(earlier) => descriptors[earlier].clone(),
            None => append_layer(&mut tar, store, diff_id, scratch)?,
        };
        descriptors.push(descriptor);
    }
    let config = with_diff_ids(config, &descriptors);
    let config_descriptor = append_json_blob(&mut tar, MediaType::ImageConfig, &config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(descriptors)
        .build()?;
    let manifest_descriptor = append_json_blob(&mut tar, MediaType::ImageManifest, &manifest)?;
    let index = index_of(manifest_descriptor, name, &config)?;
    append_bytes(&mut tar, "index.json", &serde_json::to_vec(&index)?)?;
    let out = tar.into_inner().context("finishing the archive")?;
    let file = out.into_inner().map_err(|error| error.into_error())?;
    // On disk before the rename makes it visible.
    file.sync_all()
        .with_context(|| format!("fsync {}", partial.display()))
}

/// Tars the layer `diff_id` again into `scratch` to learn its digest and
/// size, then appends it as a blob.
fn append_layer<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &Store,
    diff_id: &str,
    scratch: &Path,
) -> Result<Descriptor> {
    let diff = store.layer_dir(diff_id)?.join("diff");
    let out = File::create(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut out = BufWriter::new(out);
    layer::write_layer(&diff, &mut out).with_context(|| format!("archiving {}", diff.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", scratch.display()))?;
    let (digest, size) = hash_file(scratch)?;
    let file = File::open(scratch).with_context(|| format!("opening {}", scratch.display()))?;
    append_file(tar, &blob_name(&digest)?, size, file)?;
    Ok(Descriptor::new(
        MediaType::ImageLayer,
        size,
        Digest::from_str(&digest)?,
    ))
}

/// The config with the diff ids of the layers as written (uncompressed:
/// a layer's diff id is its blob's digest).
fn with_diff_ids(config: &ImageConfiguration, layers: &[Descriptor]) -> ImageConfiguration {
    let mut config = config.clone();
    let diff_ids = layers
        .iter()
        .map(|layer| layer.digest().to_string())
        .collect();
    config.rootfs_mut().set_diff_ids(diff_ids);
    config
}

/// index.json: the manifest, with its name and the platform it runs on.
fn index_of(
    mut manifest: Descriptor,
    name: &str,
    config: &ImageConfiguration,
) -> Result<ImageIndex> {
    let platform = PlatformBuilder::default()
        .architecture(config.architecture().clone())
        .os(config.os().clone())
        .build()?;
    manifest.set_platform(Some(platform));
    let annotations = HashMap::from([(ANNOTATION_REF_NAME.to_owned(), name.to_owned())]);
    manifest.set_annotations(Some(annotations));
    Ok(ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()?)
}

fn append_json_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    media_type: MediaType,
    value: &impl serde::Serialize,
) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(value)?;
    let digest = sha256_digest(&bytes);
    append_bytes(tar, &blob_name(&digest)?, &bytes)?;
    Ok(Descriptor::new(
        media_type,
        bytes.len() as u64,
        Digest::from_str(&digest)?,
    ))
}

pub(crate) fn blob_name(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", store::digest_hex(digest)?))
}

pub(crate) fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<()> {
    append_file(tar, path, bytes.len() as u64, bytes)
}

/// The archive's own entries are owned by root, mode 0644 (0755 for
/// directories), dated 0: the same image gives the same archive.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut header = archive_header(tar::EntryType::Regular, 0o644);
    header.set_size(size);
    tar.append_data(&mut header, path, data)
        .with_context(|| format!("adding {path} to the archive"))
}

fn append_directory<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut header = archive_header(tar::EntryType::Directory, 0o755);
    tar.append_data(&mut header, path, io::empty())
        .with_context(|| format!("adding {path} to the archive"))
}

pub(crate) fn archive_header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header
}

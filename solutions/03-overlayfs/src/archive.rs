//! Whole images in: OCI image layouts and archives, `docker save` archives.
//! (`image save`, the way out, is in [`crate::save`].)
//!
//! An OCI image layout is a directory of content-addressed blobs, each named
//! by the SHA-256 of its bytes, and an index that points into them:
//!
//! ```text
//! oci-layout           {"imageLayoutVersion": "1.0.0"}
//! index.json           the manifests, each with its digest (and a ref name)
//! blobs/sha256/<hex>   the manifest: the config's and the layers' digests
//!                      the config: Env, Cmd, ... and rootfs.diff_ids
//!                      the layers: tar archives, often gzip-compressed
//! ```
//!
//! A digest names one content only, so every blob is checked against the
//! digest it was asked for. A layer has two: the digest of its blob (maybe
//! compressed), in the manifest, and its *diff id*, the digest of the
//! uncompressed tar, in the config; the store names layers by diff id.
//!
//! `skopeo copy ... oci-archive:FILE` writes a layout as one tar file.
//! `docker save` writes an older format: a `manifest.json` listing the
//! config file and the layer tars by their paths in the archive.

use crate::image::MAX_LAYERS;
use crate::layer::{self, for_each_entry, HashingReader, Layer};
use crate::store::{self, Locked, Store};
use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde::Deserialize;
use sha2::Sha256;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// What `image import NAME SOURCE` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory: a root filesystem, imported as one layer.
    Directory,
    /// A directory holding an OCI image layout.
    OciLayout,
    /// A tar archive (maybe gzip) of a root filesystem: one layer.
    LayerTar,
    /// A tar archive of an OCI image layout.
    OciArchive,
    /// A `docker save` archive.
    DockerArchive,
}

/// An imported image: its config and its layers, bottom first.
#[derive(Debug)]
pub struct Imported {
    /// The image's configuration (environment, command, ...).
    pub config: ImageConfiguration,
    /// Its layers, the bottom one first.
    pub layers: Vec<Layer>,
}

/// One image of a `docker save` archive's `manifest.json`. (Docker's own
/// format, which OCI's types do not describe.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveImage {
    /// The path of the image's config in the archive.
    pub config: String,
    /// Its names, such as "busybox:latest" (none for an untagged image).
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The paths of its layer tars in the archive, bottom first.
    pub layers: Vec<String>,
}

/// The version of the layout format we read and write.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";

/// The largest JSON document of an image we read: index.json, a manifest,
/// a config (a few KiB; a config with a long history, some 100 KiB). A larger
/// one is refused before it is read: it would be held in memory whole.
const MAX_JSON: u64 = 4 << 20;

/// How deep indexes may nest: a layout's index.json may point to the index
/// of a multi-platform image, which points to the manifests. Each level is a
/// recursive call: a chain of thousands of indexes would overflow the stack.
const MAX_INDEX_DEPTH: usize = 4;

/// Tells sources apart: a directory with an `oci-layout` file is an OCI
/// layout, any other directory a plain directory. A file must be a tar
/// archive (maybe gzip), whose entries decide: an `oci-layout` makes it an
/// OCI archive, a `manifest.json` (of `docker save`) a docker archive, and
/// anything else a layer.
pub fn detect(source: &Path) -> Result<SourceKind> {
    let metadata = fs::metadata(source).with_context(|| format!("stat {}", source.display()))?;
    if metadata.is_dir() {
        return Ok(match source.join("oci-layout").is_file() {
            true => SourceKind::OciLayout,
            false => SourceKind::Directory,
        });
    }
    let file = File::open(source).with_context(|| format!("opening {}", source.display()))?;
    detect_archive(file).with_context(|| format!("{} is not a tar archive", source.display()))
}

fn detect_archive(file: File) -> Result<SourceKind> {
    let (mut entries, mut oci_layout, mut manifest_json) = (0, false, false);
    let no_setup = |_: &mut tar::Archive<_>| {};
    for_each_entry(
        layer::uncompressed(BufReader::new(file))?,
        no_setup,
        |entry| {
            let path = entry.path()?;
            entries += 1;
            oci_layout |= is_top_level(&path, "oci-layout");
            manifest_json |= is_top_level(&path, "manifest.json");
            Ok(())
        },
    )?;
    Ok(match (entries, oci_layout, manifest_json) {
        (0, _, _) => bail!("no entries"),
        // Docker 25 and later write both: the OCI layout is the standard.
        (_, true, _) => SourceKind::OciArchive,
        (_, false, true) => SourceKind::DockerArchive,
        (_, false, false) => SourceKind::LayerTar,
    })
}

/// Is `path` (of an archive entry) the file `name` at the archive's top?
fn is_top_level(path: &Path, name: &str) -> bool {
    let mut components = path.components().filter(|c| *c != Component::CurDir);
    components.next() == Some(Component::Normal(name.as_ref())) && components.next().is_none()
}

/// Imports an OCI image layout directory: index.json, then its manifest
/// (the only one; of several, the first for this machine's platform, else
/// the first), the config and the layers. Every blob is checked against its
/// digest, and the layers' diff ids against the config's `rootfs.diff_ids`.
pub fn import_oci_layout(store: &Store, lock: &Locked, dir: &Path) -> Result<Imported> {
    check_layout_version(dir)?;
    let index: ImageIndex = read_json(&file_in(dir, "index.json")?)?;
    let manifest = find_manifest(dir, &index, 1)?;
    check_layer_count(manifest.layers().len())?;
    let config = parse_config(&read_blob(dir, manifest.config())?)?;
    // Every blob is checked before any is unpacked: a corrupt image leaves
    // nothing in the store.
    let blobs = manifest
        .layers()
        .iter()
        .map(|descriptor| verified_layer_blob(dir, descriptor))
        .collect::<Result<Vec<_>>>()?;
    let layers = blobs
        .iter()
        .map(|blob| import_layer_file(store, lock, blob))
        .collect::<Result<Vec<_>>>()?;
    check_diff_ids(&config, &layers)?;
    Ok(Imported { config, layers })
}

fn check_layout_version(dir: &Path) -> Result<()> {
    let path = file_in(dir, "oci-layout")?;
    let layout: oci_spec::image::OciLayout = read_json(&path)?;
    let version = layout.image_layout_version();
    if version.split('.').next() != Some("1") {
        bail!(
            "{}: unsupported image layout version {version}",
            path.display()
        );
    }
    Ok(())
}

/// The manifest the index points to; through a nested index (a
/// multi-platform image), to the manifest for this machine.
/// `depth` counts the indexes read so far, index.json included.
fn find_manifest(dir: &Path, index: &ImageIndex, depth: usize) -> Result<ImageManifest> {
    let descriptor = choose_manifest(index)?;
    let blob = read_blob(dir, descriptor)?;
    if is_index(descriptor.media_type()) {
        if depth == MAX_INDEX_DEPTH {
            bail!("the indexes nest deeper than {MAX_INDEX_DEPTH} levels");
        }
        return find_manifest(dir, &parse_json(&blob, descriptor)?, depth + 1);
    }
    parse_json(&blob, descriptor)
}

/// The only manifest of an index; of several, the first for this machine's
/// platform (linux/amd64 on a PC), else the first.
fn choose_manifest(index: &ImageIndex) -> Result<&Descriptor> {
    let manifests = index.manifests();
    let for_this_machine = |descriptor: &&Descriptor| {
        descriptor.platform().as_ref().is_some_and(|platform| {
            *platform.os() == Os::default() && *platform.architecture() == Arch::default()
        })
    };
    manifests
        .iter()
        .find(for_this_machine)
        .or(manifests.first())
        .context("the image index lists no manifest")
}

fn is_index(media_type: &MediaType) -> bool {
    const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    *media_type == MediaType::ImageIndex || media_type.to_string() == DOCKER_MANIFEST_LIST
}

/// The path of a layer's blob, checked against its digest.
fn verified_layer_blob(dir: &Path, descriptor: &Descriptor) -> Result<PathBuf> {
    let media_type = descriptor.media_type().to_string();
    if media_type.ends_with("zstd") {
        bail!(
            "layer {}: {media_type} is not supported (tar and tar+gzip are)",
            descriptor.digest()
        );
    }
    let path = blob_path(dir, descriptor)?;
    check_blob_length(descriptor, &path)?;
    let (digest, size) = hash_file(&path)?;
    check_blob(descriptor, &digest, size)?;
    Ok(path)
}

/// At most [`MAX_LAYERS`] layers, checked before any is read: the store
/// would refuse a bigger image anyway, after unpacking all of it.
fn check_layer_count(count: usize) -> Result<()> {
    if count > MAX_LAYERS {
        bail!("the image has {count} layers: at most {MAX_LAYERS} are supported (as docker)");
    }
    Ok(())
}

/// `blobs/<algorithm>/<hex>`: only sha256 digests are supported.
fn blob_path(dir: &Path, descriptor: &Descriptor) -> Result<PathBuf> {
    let hex = store::digest_hex(descriptor.digest().as_ref())?;
    file_in(dir, &format!("blobs/sha256/{hex}"))
}

/// The file `name` (a relative path, maybe read from the image) in `dir`,
/// where it must stay once symbolic links are resolved: `docker save`
/// archives link their layers to each other, but a link to /etc/shadow
/// would import the host's file into the image.
fn file_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let relative = layer::contained_path(Path::new(name))
        .with_context(|| format!("the image names the file {name}"))?;
    let path = dir.join(relative);
    let resolved = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    if !resolved.starts_with(&dir) {
        bail!("{name} leads out of the image, to {}", resolved.display());
    }
    Ok(resolved)
}

/// Reads a JSON blob (an index, a manifest, a config), checked against its
/// descriptor: its size, before it is read, then its digest.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let path = blob_path(dir, descriptor)?;
    check_blob_length(descriptor, &path)?;
    let bytes = read_json_file(&path)?;
    check_blob(descriptor, &sha256_digest(&bytes), bytes.len() as u64)?;
    Ok(bytes)
}

/// Compares the length of the blob file `path` with its descriptor's size,
/// before a byte of it is read.
fn check_blob_length(descriptor: &Descriptor, path: &Path) -> Result<()> {
    let metadata = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    check_size(descriptor, metadata.len())
}

fn check_blob(descriptor: &Descriptor, digest: &str, size: u64) -> Result<()> {
    let expected = descriptor.digest().as_ref();
    if digest != expected {
        bail!("blob {expected} is corrupt: its content has the digest {digest}");
    }
    check_size(descriptor, size)
}

fn check_size(descriptor: &Descriptor, size: u64) -> Result<()> {
    if size != descriptor.size() {
        bail!(
            "blob {} has {size} bytes, its descriptor says {}",
            descriptor.digest(),
            descriptor.size()
        );
    }
    Ok(())
}

/// "sha256:HEX" and the size of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hashing = HashingReader::new(BufReader::new(file));
    let size = io::copy(&mut hashing, &mut io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((hashing.digest()?, size))
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_json_file(path)?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// The bytes of `path`, a JSON document: at most [`MAX_JSON`], checked
/// before reading (and the reading stops there, should the file grow).
fn read_json_file(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    if length > MAX_JSON {
        bail!(
            "{} has {length} bytes: an image's JSON documents may have at most {} MiB",
            path.display(),
            MAX_JSON >> 20
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_JSON)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], descriptor: &Descriptor) -> Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        let (media_type, digest) = (descriptor.media_type(), descriptor.digest());
        format!("parsing the blob {digest} as {media_type}")
    })
}

/// Parses an image config, OCI's or docker's (a superset: the fields OCI
/// does not know are ignored). `history` is optional in the specification,
/// but oci-spec 0.7 requires it: a config without one gets an empty one.
fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    let mut json: serde_json::Value =
        serde_json::from_slice(bytes).context("parsing the image config")?;
    if let Some(object) = json.as_object_mut() {
        object
            .entry("history")
            .or_insert_with(|| serde_json::json!([]));
    }
    serde_json::from_value(json).context("parsing the image config")
}

/// The layers must be the ones the config names, in its order: the config
/// is what the image's ID (its digest) covers.
fn check_diff_ids(config: &ImageConfiguration, layers: &[Layer]) -> Result<()> {
    let expected = config.rootfs().diff_ids();
    if expected.len() != layers.len() {
        bail!(
            "the config lists {} layers (rootfs.diff_ids), the manifest {}",
            expected.len(),
            layers.len()
        );
    }
    for (position, (expected, layer)) in expected.iter().zip(layers).enumerate() {
        if *expected != layer.diff_id {
            bail!(
                "layer {position}: the config expects the diff id {expected}, \
                 the layer's content has {}",
                layer.diff_id
            );
        }
    }
    Ok(())
}

/// Imports an archive of an OCI layout (`skopeo copy ... oci-archive:FILE`)
/// or a `docker save` archive: unpacks it into a staging directory (files,
/// directories and symbolic links, with the same path checks as layers),
/// then imports from there. Of several images in a docker archive, the first is
/// imported.
pub fn import_archive(
    store: &Store,
    lock: &Locked,
    file: &Path,
    kind: SourceKind,
) -> Result<Imported> {
    if !matches!(kind, SourceKind::OciArchive | SourceKind::DockerArchive) {
        bail!("{} is not an image archive but a {kind:?}", file.display());
    }
    let staging = store.staging_dir(lock)?;
    unpack_archive(file, &staging).with_context(|| format!("unpacking {}", file.display()))?;
    let imported = match kind {
        SourceKind::OciArchive => import_oci_layout(store, lock, &staging),
        _ => import_docker_save(store, lock, &staging),
    };
    let imported = imported.with_context(|| format!("importing {}", file.display()))?;
    store::remove_path(&staging)?;
    Ok(imported)
}

fn unpack_archive(file: &Path, dir: &Path) -> Result<()> {
    let reader = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let no_setup = |_: &mut tar::Archive<_>| {};
    for_each_entry(
        layer::uncompressed(BufReader::new(reader))?,
        no_setup,
        |entry| {
            let path = entry
                .path()
                .context("reading an entry's path")?
                .into_owned();
            unpack_plain_entry(entry, &path, dir)
                .with_context(|| format!("unpacking the archive's entry {}", path.display()))
        },
    )
}

/// Unpacks a file, a directory or a symbolic link (`docker save` links a
/// layer used twice); an image archive needs nothing else. Links are read
/// through only by [`file_in`], which keeps them inside.
fn unpack_plain_entry<R: Read>(entry: &mut tar::Entry<R>, path: &Path, dir: &Path) -> Result<()> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() {
        return Ok(());
    }
    let relative = layer::contained_path(path)?;
    let Some(name) = relative.file_name() else {
        return Ok(()); // "./"
    };
    let destination = layer::create_parents(dir, relative.parent())?.join(name);
    if kind.is_dir() {
        if !destination.is_dir() {
            fs::create_dir(&destination)
                .with_context(|| format!("mkdir {}", destination.display()))?;
        }
    } else if kind.is_file() || kind.is_contiguous() {
        // A later entry replaces an earlier one. Never open an earlier one
        // to write: it may be a symbolic link, and we would write where it
        // points.
        store::remove_path(&destination)?;
        let mut file = File::create_new(&destination)
            .with_context(|| format!("creating {}", destination.display()))?;
        io::copy(entry, &mut file).with_context(|| format!("writing {}", destination.display()))?;
    } else if kind.is_symlink() {
        entry
            .unpack(&destination)
            .with_context(|| format!("writing {}", destination.display()))?;
    } else {
        bail!("refusing an entry of type {kind:?}: an image archive holds files, directories and links");
    }
    Ok(())
}

/// Imports the first image of an unpacked `docker save` archive. Its layers
/// are checked against the diff ids of its config.
fn import_docker_save(store: &Store, lock: &Locked, dir: &Path) -> Result<Imported> {
    let images: Vec<DockerSaveImage> = read_json(&file_in(dir, "manifest.json")?)?;
    let image = images.first().context("manifest.json lists no image")?;
    check_layer_count(image.layers.len())?;
    let config = parse_config(&read_json_file(&file_in(dir, &image.config)?)?)?;
    let layers = image
        .layers
        .iter()
        .map(|layer_path| import_layer_file(store, lock, &file_in(dir, layer_path)?))
        .collect::<Result<Vec<_>>>()?;
    check_diff_ids(&config, &layers)?;
    Ok(Imported { config, layers })
}

fn import_layer_file(store: &Store, lock: &Locked, path: &Path) -> Result<Layer> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    layer::import_layer(store, lock, BufReader::new(file))
        .with_context(|| format!("importing the layer {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::save::{append_bytes, archive_header, blob_name};
    use crate::store::new_store;
    use oci_spec::image::{Digest, ImageIndexBuilder, ImageManifestBuilder};
    use std::io::Write;
    use std::str::FromStr;

    /// A tar with these (path, contents) files.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            append_bytes(&mut tar, path, contents).unwrap();
        }
        tar.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(bytes).unwrap();
        gzip.finish().unwrap()
    }

    #[test]
    fn detect_tells_sources_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            detect(&path)
        };
        let oci = tar_of(&[("oci-layout", b"{}"), ("index.json", b"{}")]);
        assert_eq!(file("oci.tar", &oci).unwrap(), SourceKind::OciArchive);
        let docker = tar_of(&[("abc/layer.tar", b""), ("./manifest.json", b"[]")]);
        assert_eq!(
            file("docker.tar.gz", &gzip(&docker)).unwrap(),
            SourceKind::DockerArchive
        );
        let layer = tar_of(&[("etc/manifest.json", b""), ("bin/sh", b"")]);
        assert_eq!(file("layer.tar", &layer).unwrap(), SourceKind::LayerTar);
        assert_eq!(
            file("layer.tgz", &gzip(&layer)).unwrap(),
            SourceKind::LayerTar
        );

        let error = file(
            "notes.txt",
            b"not a tar, surely not, no no".repeat(30).as_slice(),
        );
        assert!(format!("{:#}", error.unwrap_err()).contains("not a tar archive"));
        assert!(file("empty", b"").is_err());

        assert_eq!(detect(dir.path()).unwrap(), SourceKind::Directory);
        fs::write(dir.path().join("oci-layout"), "{}").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), SourceKind::OciLayout);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let digest = sha256_digest(b"{}");
        let path = dir.path().join(blob_name(&digest).unwrap());
        fs::write(&path, "{}").unwrap();
        let descriptor = Descriptor::new(
            MediaType::ImageConfig,
            2,
            Digest::from_str(&digest).unwrap(),
        );
        assert_eq!(read_blob(dir.path(), &descriptor).unwrap(), b"{}");

        fs::write(&path, "[]").unwrap();
        let error = format!("{:#}", read_blob(dir.path(), &descriptor).unwrap_err());
        assert!(
            error.contains(&format!("blob {digest} is corrupt")),
            "{error}"
        );
        let too_long = Descriptor::new(
            MediaType::ImageConfig,
            3,
            Digest::from_str(&digest).unwrap(),
        );
        fs::write(&path, "{}").unwrap();
        assert!(read_blob(dir.path(), &too_long).is_err());
    }

    #[test]
    fn a_docker_save_manifest_and_config_parse() {
        let manifest = r#"[{"Config":"7b1a.json","RepoTags":["busybox:latest"],
            "Layers":["3d2a/layer.tar","blobs/sha256/00aa"]}, {"Config":"x.json",
            "RepoTags":null,"Layers":[]}]"#;
        let images: Vec<DockerSaveImage> = serde_json::from_str(manifest).unwrap();
        assert_eq!(images[0].config, "7b1a.json");
        assert_eq!(
            images[0].repo_tags.as_deref(),
            Some(&["busybox:latest".to_owned()][..])
        );
        assert_eq!(images[0].layers, ["3d2a/layer.tar", "blobs/sha256/00aa"]);
        assert_eq!(images[1].repo_tags, None);

        // Docker's image JSON, trimmed: no history, fields OCI does not know.
        let config = r#"{"architecture":"amd64","os":"linux","docker_version":"24.0.7",
            "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Volumes":null,"OnBuild":null,
            "Entrypoint":null,"Image":"sha256:00"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let config = parse_config(config.as_bytes()).unwrap();
        let cmd = config.config().as_ref().unwrap().cmd().clone();
        assert_eq!(cmd, Some(vec!["sh".to_owned()]));
        assert_eq!(config.rootfs().diff_ids(), &["sha256:aa".to_owned()]);
    }

    #[test]
    fn the_diff_ids_must_be_those_of_the_config() {
        let config = r#"{"architecture":"amd64","os":"linux",
            "rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#;
        let config = parse_config(config.as_bytes()).unwrap();
        let layer = |diff_id: &str| Layer {
            diff_id: diff_id.to_owned(),
            size: 0,
        };
        assert!(check_diff_ids(&config, &[layer("sha256:a")]).is_ok());
        let error = check_diff_ids(&config, &[layer("sha256:b")]).unwrap_err();
        assert!(
            error.to_string().contains("expects the diff id sha256:a"),
            "{error}"
        );
        assert!(check_diff_ids(&config, &[]).is_err());
    }

    #[test]
    fn an_image_archive_holds_only_files_directories_and_links_inside() {
        let (dir, store) = new_store();
        let lock = store.lock().unwrap();
        let import = |build: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
            let mut tar = tar::Builder::new(Vec::new());
            build(&mut tar);
            let file = dir.path().join("saved.tar");
            fs::write(&file, tar.into_inner().unwrap()).unwrap();
            let imported = import_archive(&store, &lock, &file, SourceKind::DockerArchive);
            format!("{:#}", imported.unwrap_err())
        };
        let error = import(&|tar| {
            let mut header = archive_header(tar::EntryType::Symlink, 0o777);
            tar.append_link(&mut header, "manifest.json", "/etc/passwd")
                .unwrap();
        });
        assert!(
            error.contains("manifest.json leads out of the image"),
            "{error}"
        );
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("cron");
        let error = import(&|tar| {
            let mut header = archive_header(tar::EntryType::Symlink, 0o777);
            tar.append_link(&mut header, "a", &target).unwrap();
            append_bytes(tar, "a", b"written through the link?").unwrap();
        });
        assert!(error.contains("manifest.json"), "{error}");
        assert!(!target.exists(), "nothing written through the link");
        let error = import(&|tar| {
            let mut header = archive_header(tar::EntryType::Fifo, 0o644);
            tar.append_data(&mut header, "manifest.json", io::empty())
                .unwrap();
        });
        assert!(
            error.contains("entry manifest.json: refusing an entry of type Fifo"),
            "{error}"
        );
    }

    /// Writes `bytes` as a blob of `dir` (an OCI layout), and describes it.
    fn write_blob(dir: &Path, media_type: MediaType, bytes: &[u8]) -> Descriptor {
        let digest = sha256_digest(bytes);
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join(blob_name(&digest).unwrap()), bytes).unwrap();
        let size = bytes.len() as u64;
        Descriptor::new(media_type, size, Digest::from_str(&digest).unwrap())
    }

    fn index_of_one(manifest: Descriptor) -> ImageIndex {
        ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![manifest])
            .build()
            .unwrap()
    }

    #[test]
    fn a_huge_long_name_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(600 << 20);
        header.set_cksum();
        // The long name never ends: 600 MiB announced, 2 MiB there.
        let mut bytes = header.as_bytes().to_vec();
        bytes.resize(2 << 20, b'a');
        let path = dir.path().join("bomb.tar.gz");
        fs::write(&path, gzip(&bytes)).unwrap();
        let error = format!("{:#}", detect(&path).unwrap_err());
        assert!(error.contains("take more than 1 MiB"), "{error}");
        let error = format!("{:#}", unpack_archive(&path, dir.path()).unwrap_err());
        assert!(error.contains("take more than 1 MiB"), "{error}");
    }

    #[test]
    fn json_blobs_are_bounded_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let descriptor = write_blob(dir.path(), MediaType::ImageConfig, b"{}");
        let path = blob_path(dir.path(), &descriptor).unwrap();
        File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_len(3 << 20)
            .unwrap();
        let error = format!("{:#}", read_blob(dir.path(), &descriptor).unwrap_err());
        assert!(
            error.contains("has 3145728 bytes, its descriptor says 2"),
            "{error}"
        );
        // A descriptor may lie too.
        let big = Descriptor::new(MediaType::ImageConfig, 5 << 20, descriptor.digest().clone());
        File::create(&path).unwrap().set_len(5 << 20).unwrap();
        let error = format!("{:#}", read_blob(dir.path(), &big).unwrap_err());
        assert!(error.contains("may have at most 4 MiB"), "{error}");
        let index = dir.path().join("index.json");
        File::create(&index).unwrap().set_len(5 << 20).unwrap();
        let error = format!("{:#}", read_json::<ImageIndex>(&index).unwrap_err());
        assert!(error.contains("may have at most 4 MiB"), "{error}");
    }

    #[test]
    fn indexes_nest_at_most_four_deep() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_blob(dir.path(), MediaType::ImageConfig, b"{}");
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(config)
            .layers(vec![])
            .build()
            .unwrap();
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut top = write_blob(dir.path(), MediaType::ImageManifest, &json);
        for depth in 1..=5 {
            let found = find_manifest(dir.path(), &index_of_one(top.clone()), 1);
            match depth {
                ..=4 => assert_eq!(found.unwrap(), manifest, "depth {depth}"),
                _ => {
                    let error = format!("{:#}", found.unwrap_err());
                    assert!(error.contains("nest deeper than 4"), "{error}");
                }
            }
            let json = serde_json::to_vec(&index_of_one(top)).unwrap();
            top = write_blob(dir.path(), MediaType::ImageIndex, &json);
        }
    }

    #[test]
    fn images_of_more_than_128_layers_are_refused_before_any_is_read() {
        let (_store_dir, store) = new_store();
        let lock = store.lock().unwrap();
        let missing = |position: usize| {
            let digest = format!("sha256:{position:064x}");
            Descriptor::new(MediaType::ImageLayer, 1, Digest::from_str(&digest).unwrap())
        };
        let dir = tempfile::tempdir().unwrap();
        let config = write_blob(dir.path(), MediaType::ImageConfig, b"{}");
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(config)
            .layers((0..129).map(missing).collect::<Vec<_>>())
            .build()
            .unwrap();
        let json = serde_json::to_vec(&manifest).unwrap();
        let manifest = write_blob(dir.path(), MediaType::ImageManifest, &json);
        let index = serde_json::to_vec(&index_of_one(manifest)).unwrap();
        fs::write(dir.path().join("index.json"), index).unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let imported = import_oci_layout(&store, &lock, dir.path());
        let error = format!("{:#}", imported.unwrap_err());
        assert!(error.contains("has 129 layers: at most 128"), "{error}");

        let layers: Vec<String> = (0..129).map(|n| format!("{n}/layer.tar")).collect();
        let images = serde_json::json!([{"Config": "config.json", "Layers": layers}]);
        fs::write(dir.path().join("manifest.json"), images.to_string()).unwrap();
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        let imported = import_docker_save(&store, &lock, dir.path());
        let error = format!("{:#}", imported.unwrap_err());
        assert!(error.contains("has 129 layers: at most 128"), "{error}");
    }
}

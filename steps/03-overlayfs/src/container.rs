//! Containers: an image's layers plus a writable layer of their own.
//!
//! `run` creates `containers/<id>/` with an empty `upper/` and `work/`, and
//! starts the command with step 01's runtime. In the child, inside its new
//! mount namespace, the overlay of the image's layers and `upper/` is
//! mounted on `merged/`, and step 02 pivots into it. The overlay belongs to
//! the container's mount namespace: when the container's last process
//! exits, the kernel unmounts it, even if the runtime was killed.
//!
//! The container is kept when its command exits (docker's "Exited (N)"), so
//! that `diff` can show what it changed and `commit` can turn its upper
//! directory into a new image layer; `rm` (or `run --rm`) removes it.

use crate::image::{self, Image};
use crate::layer;
use crate::overlay;
use crate::store::{self, Store};
use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a container is, and how it is doing: `containers/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// 64 random hex digits; the first 12 name it in `ps`.
    pub id: String,
    /// A name unique in the store: `--name`, or generated.
    pub name: String,
    /// The image it was created from, by name (for `ps` and `image rm`).
    pub image: String,
    /// That image's layers, bottom first, and its config, as they were
    /// when the container was created: the image name may later be given to
    /// another image, but the container keeps running, diffing and
    /// committing on top of its own layers.
    pub layers: Vec<String>,
    pub config: oci_spec::image::ImageConfiguration,
    /// The command it runs.
    pub command: Vec<String>,
    /// When it was created, RFC 3339.
    pub created: String,
    /// The runtime's PID while it runs, with the start time that tells it
    /// apart from a later process that got the same PID.
    pub runtime: Option<(i32, u64)>,
    /// The exit code, once it has exited.
    pub exit_code: Option<i32>,
    /// When it exited, RFC 3339.
    pub finished: Option<String>,
}

/// What `run` was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub image: String,
    pub command: Vec<String>,
    pub name: Option<String>,
    pub remove: bool,
    pub read_only: bool,
    pub init: bool,
    pub hostname: Option<String>,
}

fn dir_of(store: &Store, id: &str) -> PathBuf {
    store.containers_dir().join(id)
}

/// What a later step adds to the life of a container: step 04 its network,
/// step 05 its cgroup. Step 03 itself adds nothing ([`NoExtension`]); every
/// method has a default that does nothing.
pub trait Extension {
    /// The namespaces the container needs besides step 01's.
    fn namespaces(&self) -> CloneFlags {
        CloneFlags::empty()
    }

    /// In the runtime, once the container is in the store (`dir`) and before
    /// its child is cloned: take what it needs (an address, a cgroup).
    fn before_start(&mut self, _state: &State, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// In the runtime, while the child waits on step 01's sync pipe.
    fn child_started(&self, _child: Pid) -> Result<()> {
        Ok(())
    }

    /// In the child, once the overlay is mounted on `merged` and before
    /// step 02 pivots into it.
    fn prepare_root(&self, _merged: &Path) -> Result<()> {
        Ok(())
    }

    /// In the child, in its new root, once step 02 has mounted /proc, /sys
    /// and /dev, just before the command is started.
    fn finish_root(&self) -> Result<()> {
        Ok(())
    }

    /// In the runtime, when the container has ended, or failed to start at
    /// any point after `before_start` was called: give back all it took.
    fn after_exit(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Step 03's containers: nothing besides the overlay.
#[derive(Debug, Default)]
pub struct NoExtension;

impl Extension for NoExtension {}

/// Two extensions as one: step 05 adds its cgroup to step 04's network.
/// Each hook runs the first one's, then the second one's; `after_exit` runs
/// both, whatever the first returns.
impl<A: Extension, B: Extension> Extension for (A, B) {
    fn namespaces(&self) -> CloneFlags {
        self.0.namespaces() | self.1.namespaces()
    }

    fn before_start(&mut self, state: &State, dir: &Path) -> Result<()> {
        self.0.before_start(state, dir)?;
        self.1.before_start(state, dir)
    }

    fn child_started(&self, child: Pid) -> Result<()> {
        self.0.child_started(child)?;
        self.1.child_started(child)
    }

    fn prepare_root(&self, merged: &Path) -> Result<()> {
        self.0.prepare_root(merged)?;
        self.1.prepare_root(merged)
    }

    fn finish_root(&self) -> Result<()> {
        self.0.finish_root()?;
        self.1.finish_root()
    }

    fn after_exit(&mut self) -> Result<()> {
        let first = self.0.after_exit();
        let second = self.1.after_exit();
        first.and(second)
    }
}

/// `run IMAGE [-- CMD...]`: creates the container, runs it to its end and
/// returns the exit code. A container the runtime could not start (no
/// child was made) is removed again; one whose child failed before exec
/// (exit code 125) is kept, as docker keeps it, for `ps -a` and `rm`.
pub fn run(store: &Store, options: &RunOptions) -> Result<i32> {
    run_with(store, options, &mut NoExtension)
}

/// `run`, with what a later step adds to the container.
pub fn run_with(store: &Store, options: &RunOptions, extension: &mut dyn Extension) -> Result<i32> {
    // A signal (Ctrl-C, `kill`) must not kill the runtime half-way through
    // creating or cleaning up, leaving a container directory, an address or
    // a firewall rule behind: the signals step 01 forwards are blocked from
    // here to the end. One that arrives before the child runs waits, and
    // step 01 then stops the child before its command starts (exit code
    // 128+N); one that arrives during the cleanup finds the container gone
    // already, and is dropped.
    let previous_mask = pid::signals::block_supervised_signals()?;
    let result = create_start_and_clean_up(store, options, extension);
    pid::signals::finish_supervision(&previous_mask)?;
    result
}

fn create_start_and_clean_up(
    store: &Store,
    options: &RunOptions,
    extension: &mut dyn Extension,
) -> Result<i32> {
    let state = create(store, options)?;
    let dir = dir_of(store, &state.id);
    let started = extension
        .before_start(&state, &dir)
        .and_then(|()| start(store, &state, options, &*extension));
    // Given back on every path, before the container's directory goes.
    let given_back = extension.after_exit();
    if options.remove || started.is_err() {
        let lock = store.lock()?;
        store.discard(&dir, &lock)?;
    } else if let Ok(code) = &started {
        record_exit(&dir, *code)?;
    }
    let code = started?;
    given_back?;
    Ok(code)
}

/// Makes `containers/<id>/` (in `tmp/`, then renamed into place) with its
/// empty upper, work and merged directories and its state.
fn create(store: &Store, options: &RunOptions) -> Result<State> {
    let lock = store.lock()?;
    let image = image::load(store, &options.image)?;
    let command = command_for(&image, &options.command)?;
    let name = match &options.name {
        Some(name) => {
            check_name("container", name)?;
            if list(store)?.iter().any(|state| state.name == *name) {
                bail!("the container name {name:?} is already in use: `rm` it, or choose another");
            }
            name.clone()
        }
        None => generated_name(store)?,
    };
    let state = State {
        id: store::random_hex(32)?,
        name,
        image: options.image.clone(),
        layers: image.layers().to_vec(),
        config: image.config.clone(),
        command,
        created: image::now(),
        runtime: Some((std::process::id() as i32, own_start_time()?)),
        exit_code: None,
        finished: None,
    };
    let staging = store.staging_dir(&lock)?;
    for dir in ["upper", "work", "merged"] {
        let path = staging.join(dir);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    write_state(&staging, &state)?;
    store.publish(&staging, &dir_of(store, &state.id), &lock)?;
    Ok(state)
}

/// The command to run: CMD when given, else the image's Entrypoint + Cmd.
fn command_for(image: &Image, given: &[String]) -> Result<Vec<String>> {
    let settings = image.config.config().clone().unwrap_or_default();
    let entrypoint = settings.entrypoint().clone().unwrap_or_default();
    let cmd = if given.is_empty() {
        settings.cmd().clone().unwrap_or_default()
    } else {
        given.to_vec()
    };
    let command = [entrypoint, cmd].concat();
    if command.is_empty() {
        bail!(
            "no command: the image {} has no Entrypoint or Cmd; give one after the image name",
            image.name
        );
    }
    Ok(command)
}

/// Runs the container's command with the overlay as its root.
fn start(
    store: &Store,
    state: &State,
    options: &RunOptions,
    extension: &dyn Extension,
) -> Result<i32> {
    let dir = dir_of(store, &state.id);
    let relative = |name: &str| Path::new("containers").join(&state.id).join(name);
    let lowers: Vec<PathBuf> = state
        .layers
        .iter()
        .map(|diff_id| Ok(Path::new("l").join(layer::short_name(diff_id)?)))
        .collect::<Result<_>>()?;
    let mount_options = overlay::mount_options(&lowers, &relative("upper"), &relative("work"));
    overlay::check_options_fit(&mount_options)?;
    // As docker, the container's hostname is its short ID by default.
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| state.id[..12].into());
    let settings = state.config.config().clone().unwrap_or_default();
    let image_env = settings.env().clone().unwrap_or_default();
    let root = ContainerRoot {
        store_root: store.root().to_path_buf(),
        mount_options,
        merged: dir.join("merged"),
        rootfs: mount_ns::Rootfs::new(&dir.join("merged"), options.read_only)?,
        env: container_environment(&image_env, &hostname)?,
        working_dir: settings.working_dir().clone(),
        extension,
    };
    let mut spec = pid::Spec::new(state.command.clone());
    spec.namespaces |= extension.namespaces();
    spec.init = options.init;
    spec.hostname = Some(hostname);
    pid::run(&spec, &root)
}

/// The container's root filesystem: the overlay, then step 02's pivot.
struct ContainerRoot<'a> {
    store_root: PathBuf,
    mount_options: String,
    merged: PathBuf,
    rootfs: mount_ns::Rootfs,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    extension: &'a dyn Extension,
}

impl pid::Hooks for ContainerRoot<'_> {
    /// Runs in the child, in its new mount namespace, before exec.
    // ANCHOR: prepare_filesystem
    fn prepare_filesystem(&self) -> Result<()> {
        // Private first, so that the overlay never shows up on the host.
        mount_ns::root::make_mounts_private()?;
        overlay::mount_overlay(&self.store_root, &self.mount_options, &self.merged)?;
        self.extension.prepare_root(&self.merged)?;
        self.rootfs.prepare_filesystem()?;
        self.extension.finish_root()?;
        apply_image_settings(&self.env, self.working_dir.as_deref())
    }
    // ANCHOR_END: prepare_filesystem

    /// Runs in the runtime while the child waits.
    fn child_started(&self, child: Pid) -> Result<()> {
        self.extension.child_started(child)
    }
}

/// The command's whole environment, as docker builds it: a PATH (the
/// image's, or step 02's default), HOSTNAME and HOME, then the image's
/// `Env`. Nothing of the host's environment: it describes the host.
fn container_environment(image_env: &[String], hostname: &str) -> Result<Vec<(String, String)>> {
    let mut env = vec![
        ("PATH".to_string(), mount_ns::CONTAINER_PATH.to_string()),
        ("HOSTNAME".to_string(), hostname.to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    for variable in image_env {
        let (key, value) = variable
            .split_once('=')
            .filter(|(key, _)| !key.is_empty() && !variable.contains('\0'))
            .with_context(|| format!("the image's Env has {variable:?}, not KEY=VALUE"))?;
        env.retain(|(existing, _)| existing != key);
        env.push((key.to_string(), value.to_string()));
    }
    Ok(env)
}

/// The container's environment and the image's `WorkingDir`, in the child.
fn apply_image_settings(env: &[(String, String)], working_dir: Option<&str>) -> Result<()> {
    // The child is single-threaded, so changing the environment is sound.
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    for (key, value) in env {
        std::env::set_var(key, value);
    }
    if let Some(dir) = working_dir.filter(|dir| !dir.is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating WorkingDir {dir}"))?;
        nix::unistd::chdir(dir).with_context(|| format!("chdir({dir}), the WorkingDir"))?;
    }
    Ok(())
}

fn write_state(dir: &Path, state: &State) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(state).context("serializing the state")?;
    json.push(b'\n');
    store::write_atomically(&dir.join("state.json"), &json)
}

fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn record_exit(dir: &Path, code: i32) -> Result<()> {
    let mut state = read_state(dir)?;
    state.runtime = None;
    state.exit_code = Some(code);
    state.finished = Some(image::now());
    write_state(dir, &state)
}

/// Every container, oldest first.
pub fn list(store: &Store) -> Result<Vec<State>> {
    let dir = store.containers_dir();
    let mut states = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        states.push(read_state(&entry?.path())?);
    }
    states.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(states)
}

/// The names of the containers made from the image `name`.
pub fn using_image(store: &Store, name: &str) -> Result<Vec<String>> {
    Ok(list(store)?
        .into_iter()
        .filter(|state| state.image == name)
        .map(|state| state.name)
        .collect())
}

/// The container named `wanted`, or whose ID starts with it (as docker, a
/// prefix must match one container only).
pub fn find(store: &Store, wanted: &str) -> Result<State> {
    let all = list(store)?;
    if let Some(named) = all.iter().find(|state| state.name == wanted) {
        return Ok(named.clone());
    }
    let matching: Vec<&State> = all
        .iter()
        .filter(|state| !wanted.is_empty() && state.id.starts_with(wanted))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no such container: {wanted}"),
        _ => bail!("{wanted} is the start of several container IDs: give more of it"),
    }
}

/// Whether the container's runtime is still running.
pub fn is_running(state: &State) -> bool {
    state
        .runtime
        .is_some_and(|(pid, start)| start_time(pid).is_ok_and(|now| now == start))
}

/// `ps`'s STATUS column.
pub fn status(state: &State) -> String {
    match (state.exit_code, &state.finished) {
        (Some(code), Some(finished)) => format!("Exited ({code}) {}", image::ago(finished)),
        _ if is_running(state) => "Running".into(),
        // The runtime was killed before it could record the exit code.
        _ => "Dead".into(),
    }
}

/// `rm CONTAINER`.
pub fn remove(store: &Store, wanted: &str) -> Result<()> {
    let lock = store.lock()?;
    let state = find(store, wanted)?;
    if is_running(&state) {
        bail!(
            "container {} is running: stop it first (its runtime is PID {})",
            state.name,
            state.runtime.map_or(0, |(pid, _)| pid)
        );
    }
    store.discard(&dir_of(store, &state.id), &lock)?;
    // Its image may have been removed or replaced since: its layers may be
    // unused now.
    image::remove_unused_layers(store, &lock)
}

/// How a path differs from the image, as `docker diff` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `A`: not in the image.
    Added,
    /// `C`: in the image, and changed (for a directory: something in it).
    Changed,
    /// `D`: in the image, deleted.
    Deleted,
}

impl Change {
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// What the entry `path` of the upper directory (`metadata` is its
/// symlink_metadata) says about `relative`, its path in the container,
/// given the image's layer directories `lowers`.
// ANCHOR: change_of
pub fn change_of(metadata: &std::fs::Metadata, relative: &Path, lowers: &[PathBuf]) -> Change {
    // EXERCISE 5: classify a change of the upper directory. Hint: a whiteout, a
    // character device whose rdev() is 0 (FileTypeExt and MetadataExt are imported),
    // is Deleted; otherwise the path is Changed when any lower directory has something
    // at `relative` (symlink_metadata(lower.join(relative)).is_ok()), Added when none has.
    todo!("EXERCISE 5: classify a change of the upper directory")
}
// ANCHOR_END: change_of

/// `diff CONTAINER`: every change of the upper directory, sorted by path.
pub fn diff(store: &Store, wanted: &str) -> Result<Vec<(Change, PathBuf)>> {
    let state = find(store, wanted)?;
    let lowers: Vec<PathBuf> = state
        .layers
        .iter()
        .map(|diff_id| Ok(store.layer_dir(diff_id)?.join("diff")))
        .collect::<Result<_>>()?;
    let upper = dir_of(store, &state.id).join("upper");
    let mut changes = Vec::new();
    layer::walk_sorted(&upper, Path::new(""), &mut |relative, metadata| {
        let change = change_of(metadata, relative, &lowers);
        changes.push((change, Path::new("/").join(relative)));
        // Nothing below a deleted directory is of interest.
        Ok(change != Change::Deleted)
    })?;
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(changes)
}

/// `commit CONTAINER NEWIMAGE`: the container's upper directory becomes a
/// new layer on top of its image's.
pub fn commit(store: &Store, wanted: &str, new_image: &str) -> Result<Image> {
    image::check_name(new_image)?;
    let lock = store.lock()?;
    let committed = commit_locked(store, wanted, new_image, &lock);
    // Done or failed, the tar written under tmp/ goes.
    store.discard_staging(&lock)?;
    committed
}

fn commit_locked(
    store: &Store,
    wanted: &str,
    new_image: &str,
    lock: &store::Locked,
) -> Result<Image> {
    let state = find(store, wanted)?;
    if is_running(&state) {
        bail!(
            "container {} is running: its upper directory changes while it runs; commit it \
             once it has exited",
            state.name
        );
    }
    if state.layers.len() >= image::MAX_LAYERS {
        bail!(
            "{}'s image has {} layers already: a commit would make {}, and at most {} are \
             supported",
            state.name,
            state.layers.len(),
            state.layers.len() + 1,
            image::MAX_LAYERS
        );
    }
    let upper = dir_of(store, &state.id).join("upper");
    let staging = store.staging_dir(lock)?;
    let tar_path = staging.join("layer.tar");
    let tar = std::fs::File::create(&tar_path)
        .with_context(|| format!("creating {}", tar_path.display()))?;
    layer::write_layer(&upper, std::io::BufWriter::new(tar))?;
    let tar = std::fs::File::open(&tar_path)
        .with_context(|| format!("opening {}", tar_path.display()))?;
    let new_layer = layer::import_layer(store, lock, std::io::BufReader::new(tar))?;
    let created_by = format!("tara commit {} {new_image}", state.name);
    let image = Image {
        name: new_image.to_string(),
        created: image::now(),
        config: image::stack(&state.config, &new_layer, &created_by)?,
    };
    image::save(store, &image, lock)?;
    Ok(image)
}

/// Refuses names that are not like docker's container (and network) names:
/// `what` says which kind of name it is.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        bail!("invalid {what} name {name:?}: use letters, digits and _ . - (at most 64)");
    }
    Ok(())
}

/// A name like docker's `brave_turing`, not yet used in the store.
fn generated_name(store: &Store) -> Result<String> {
    const ADJECTIVES: [&str; 16] = [
        "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "jolly", "keen", "kind",
        "lucid", "merry", "nimble", "quiet", "sharp", "witty",
    ];
    const NAMES: [&str; 16] = [
        "babbage", "curie", "dijkstra", "euler", "gauss", "hopper", "kay", "knuth", "lamport",
        "liskov", "lovelace", "noether", "ritchie", "shannon", "thompson", "turing",
    ];
    let taken: Vec<String> = list(store)?.into_iter().map(|state| state.name).collect();
    for attempt in 0..64u32 {
        let random = store::random_hex(2)?;
        let number = u16::from_str_radix(&random, 16).context("a random number")? as usize;
        let mut name = format!("{}_{}", ADJECTIVES[number % 16], NAMES[(number / 16) % 16]);
        if attempt >= 32 {
            name.push_str(&format!("_{attempt}"));
        }
        if !taken.contains(&name) {
            return Ok(name);
        }
    }
    bail!("could not find a free container name: give one with --name")
}

/// The start time of process `pid` (field 22 of /proc/PID/stat, in clock
/// ticks since boot): with the PID, it names one process for good.
fn start_time(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count after it.
    let after_name = stat.rsplit_once(") ").context("parsing /proc/PID/stat")?.1;
    after_name
        .split(' ')
        .nth(19)
        .context("no start time in /proc/PID/stat")?
        .parse()
        .context("parsing the start time")
}

fn own_start_time() -> Result<u64> {
    start_time(std::process::id() as i32)
}

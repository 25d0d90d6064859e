//! The command line of step 03, in the library so that later steps' binaries
//! keep every command of this one and add their own (`RunArgs` flattened
//! into theirs, `StoreCommand` flattened into their subcommands).

use crate::container::{self, RunOptions};
use crate::image;
use crate::store::Store;
use anyhow::Result;
use clap::Subcommand;
use pid::cli::parse_hostname;
use std::path::PathBuf;

/// The commands on images and containers that later steps keep as they are.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// List containers (running ones; all with -a)
    Ps {
        /// Show all containers, also those that have exited
        #[arg(short, long)]
        all: bool,
    },
    /// Remove a container that is not running (by name or ID prefix)
    Rm { container: String },
    /// Show what a container changed: A added, C changed, D deleted
    Diff { container: String },
    /// Make a new image of a container's image plus its changes
    Commit {
        container: String,
        new_image: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a directory, a layer tarball, an OCI image layout (or an
    /// archive of one) or a `docker save` archive as image NAME
    Import {
        /// Put the new layer on top of this image's layers
        #[arg(long, value_name = "IMAGE")]
        parent: Option<String>,
        name: String,
        source: PathBuf,
    },
    /// List images
    #[command(alias = "list")]
    Ls,
    /// Show an image's layers, top first
    History { name: String },
    /// Remove an image no container uses (its layers too, unless shared)
    Rm { name: String },
    /// Write an image as an OCI image-layout archive (skopeo, umoci, podman)
    Save { name: String, file: PathBuf },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A name for the container (unique); generated when absent
    #[arg(long)]
    pub name: Option<String>,

    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,

    /// Mount the container's root read-only (/tmp stays writable, as a tmpfs)
    #[arg(long)]
    pub read_only: bool,

    /// Run a tiny init as PID 1 that forwards signals and reaps orphans
    #[arg(long)]
    pub init: bool,

    /// Hostname inside the container (its short ID by default)
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// The image to run
    pub image: String,

    /// The command and its arguments (after `--`); the image's Entrypoint
    /// and Cmd when absent
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    /// What `run` is asked for.
    pub fn options(self) -> RunOptions {
        RunOptions {
            image: self.image,
            command: self.command,
            name: self.name,
            remove: self.rm,
            read_only: self.read_only,
            init: self.init,
            hostname: self.hostname,
        }
    }
}

/// Runs one of the store's commands, printing what it shows.
pub fn store_command(store: &Store, command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Image(command) => image_command(store, command),
        StoreCommand::Ps { all } => print_containers(store, all),
        StoreCommand::Rm { container } => {
            container::remove(store, &container)?;
            println!("{container}");
            Ok(())
        }
        StoreCommand::Diff { container } => {
            for (change, path) in container::diff(store, &container)? {
                println!("{} {}", change.letter(), path.display());
            }
            Ok(())
        }
        StoreCommand::Commit {
            container,
            new_image,
        } => {
            let image = container::commit(store, &container, &new_image)?;
            println!("{}", image.id()?);
            Ok(())
        }
    }
}

fn image_command(store: &Store, command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Import {
            parent,
            name,
            source,
        } => {
            let image = image::import(store, &name, &source, parent.as_deref())?;
            println!("{}", image.id()?);
        }
        ImageCommand::Ls => print_images(store)?,
        ImageCommand::History { name } => print_history(store, &name)?,
        ImageCommand::Rm { name } => image::remove(store, &name)?,
        ImageCommand::Save { name, file } => image::save_archive(store, &name, &file)?,
    }
    Ok(())
}

fn print_images(store: &Store) -> Result<()> {
    println!(
        "{:<24} {:<12} {:>6} {:>10}  CREATED",
        "NAME", "ID", "LAYERS", "SIZE"
    );
    for image in image::list(store)? {
        let size: u64 = image
            .layers()
            .iter()
            .map(|diff_id| image::layer_size(store, diff_id))
            .sum::<Result<u64>>()?;
        println!(
            "{:<24} {:<12} {:>6} {:>10}  {}",
            image.name,
            &image.id()?[..12],
            image.layers().len(),
            image::human_size(size),
            image::ago(&image.created)
        );
    }
    Ok(())
}

fn print_history(store: &Store, name: &str) -> Result<()> {
    let image = image::load(store, name)?;
    println!("{:<19} {:>10}  CREATED BY", "LAYER", "SIZE");
    for (diff_id, created_by) in image::layer_history(&image).iter().rev() {
        let size = image::layer_size(store, diff_id)?;
        println!(
            "{:<19} {:>10}  {created_by}",
            &diff_id[..19],
            image::human_size(size)
        );
    }
    Ok(())
}

fn print_containers(store: &Store, all: bool) -> Result<()> {
    println!(
        "{:<12}  {:<20} {:<16} {:<24} {:<32} CREATED",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS"
    );
    for state in container::list(store)? {
        if !all && !container::is_running(&state) {
            continue;
        }
        println!(
            "{:<12}  {:<20} {:<16} {:<24} {:<32} {}",
            &state.id[..12],
            state.name,
            state.image,
            format!("{:?}", shorten(&state.command.join(" "), 20)),
            container::status(&state),
            image::ago(&state.created)
        );
    }
    Ok(())
}

/// At most `max` characters, with "…" when cut (as docker's COMMAND column).
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(['…']).collect()
    }
}

/// The store at `root`, or the error on one line and exit code 125.
pub fn open_store_or_exit(root: &std::path::Path) -> Store {
    Store::open(root).unwrap_or_else(|error| pid::cli::exit_with(Err(error)))
}

/// Rust programs start with SIGPIPE ignored, so a write to a closed pipe
/// fails, and println! panics on it: `image ls | head -1` would print a
/// panic. Listing commands die quietly of SIGPIPE instead, as C programs do.
/// (The container's command gets every signal reset before exec anyway.)
pub fn die_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no Rust code as a handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

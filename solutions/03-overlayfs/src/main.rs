//! `solution-03-overlayfs [--root DIR] image|run|ps|rm|diff|commit ...`

use anyhow::Result;
use clap::{Parser, Subcommand};
use pid::cli::{exit_with, parse_hostname, parse_or_exit};
use solution_03_overlayfs::container::{self, RunOptions};
use solution_03_overlayfs::image;
use solution_03_overlayfs::store::{Store, DEFAULT_ROOT};
use std::path::PathBuf;

/// Step 03 of the tara workshop: images made of layers, and containers that
/// copy on write, with overlayfs.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    image import busybox ./rootfs              a directory becomes a one-layer image\n  \
    run --name box busybox -- sh -c 'echo hi > /hello'\n  \
    diff box                                   A /hello\n  \
    commit box busybox-hello                   the container's changes become a layer\n  \
    run --rm busybox-hello -- cat /hello       hi\n\n\
    Exit status: CMD's own, 128+N if a signal N killed it, 126 if CMD is not executable,\n\
    127 if it is not found in the image, 125 for an error of the runtime itself (for\n\
    example a missing image). Needs root."
)]
struct Cli {
    /// Where images, layers and containers are kept
    #[arg(long, global = true, env = "TARA_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run a command in a new container of IMAGE and wait for it
    Run(RunArgs),
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
enum ImageCommand {
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
struct RunArgs {
    /// A name for the container (unique); generated when absent
    #[arg(long)]
    name: Option<String>,

    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,

    /// Mount the container's root read-only (/tmp stays writable, as a tmpfs)
    #[arg(long)]
    read_only: bool,

    /// Run a tiny init as PID 1 that forwards signals and reaps orphans
    #[arg(long)]
    init: bool,

    /// Hostname inside the container (its short ID by default)
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    hostname: Option<String>,

    /// The image to run
    image: String,

    /// The command and its arguments (after `--`); the image's Entrypoint
    /// and Cmd when absent
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    command: Vec<String>,
}

fn run(store: &Store, args: RunArgs) -> Result<i32> {
    let options = RunOptions {
        image: args.image,
        command: args.command,
        name: args.name,
        remove: args.rm,
        read_only: args.read_only,
        init: args.init,
        hostname: args.hostname,
    };
    container::run(store, &options)
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

/// Rust programs start with SIGPIPE ignored, so a write to a closed pipe
/// fails, and println! panics on it: `image ls | head -1` would print a
/// panic. Listing commands die quietly of SIGPIPE instead, as C programs do.
/// (The container's command gets every signal reset before exec anyway.)
fn die_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no Rust code as a handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() {
    die_quietly_on_a_closed_pipe();
    let cli: Cli = parse_or_exit();
    let done = |result: Result<()>| exit_with(result.map(|()| 0));
    let store = match Store::open(&cli.root) {
        Ok(store) => store,
        Err(error) => exit_with(Err(error)),
    };
    match cli.command {
        Command::Run(args) => exit_with(run(&store, args)),
        Command::Image(command) => done(image_command(&store, command)),
        Command::Ps { all } => done(print_containers(&store, all)),
        Command::Rm { container } => done(container::remove(&store, &container).map(|()| {
            println!("{container}");
        })),
        Command::Diff { container } => done(container::diff(&store, &container).map(|changes| {
            for (change, path) in changes {
                println!("{} {}", change.letter(), path.display());
            }
        })),
        Command::Commit {
            container,
            new_image,
        } => done(
            container::commit(&store, &container, &new_image)
                .and_then(|image| image.id())
                .map(|id| println!("{id}")),
        ),
    }
}

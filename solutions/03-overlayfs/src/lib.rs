//! Step 03: images made of layers, containers that copy on write.
//!
//! Step 02 gave a container a root filesystem: a directory of the host. Now
//! the root is what `docker run` uses: an **overlayfs** that stacks the
//! read-only layers of an image and puts on top a writable layer of the
//! container's own.
//!
//! ```text
//!   merged/  (the container's /)   what the container sees: the union
//!      ▲
//!   upper/   (containers/<id>)     what the container wrote, copied up on change
//!   lower 3  (layers/sha256/...)   the image's layers, read-only, shared by
//!   lower 2                        every container and image that uses them
//!   lower 1
//! ```
//!
//! The runtime imports images into a store ([`store`]) of content-addressed
//! layers ([`layer`], [`whiteout`], [`archive`], [`save`]) and images
//! ([`image`]); it runs a container ([`container`]) with the overlay mounted
//! in the container's own mount namespace ([`overlay`]), then step 02's
//! pivot_root into it.

pub mod archive;
pub mod cli;
pub mod container;
pub mod image;
pub mod layer;
pub mod overlay;
pub mod save;
pub mod store;
pub mod whiteout;

//! Where haven-relay keeps sealed blobs.
//!
//! The gateway speaks S3; everything below it speaks [`Store`]: buckets, streamed objects with
//! their metadata, listings and multipart uploads. Each backend implements the trait, and later
//! wrappers (mirroring, quotas) will implement it too, so the gateway never knows which one it has.
//! This crate knows nothing of HTTP or S3 wire formats.

pub mod blobs;
pub mod chunks;
pub mod clock;
mod conditions;
pub mod digest;
mod error;
pub mod fs;
mod index;
pub mod mirror;
mod model;
mod names;
pub mod no_storage;
pub mod rclone;
pub mod spec;
mod store;
mod upload_area;
pub mod upload_expiry;

pub use error::{InvalidArgument, Result, Setup, StoreError, Unavailable};
pub use model::*;
pub use store::{ByteStream, Store};

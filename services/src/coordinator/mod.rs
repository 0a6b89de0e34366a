//! The coordinator's machine side (the scheduler and build execution come
//! with the rest of the build-farm issue).
//!
//! - [`reverse`]: the reverse pool: buildlets that dial in and register.
//! - [`client`]: a client of one buildlet over a held connection.
//! - [`source`]: a commit's tree as the tarball a build starts from.

pub mod client;
pub mod reverse;
pub mod source;

//! The coordinator's machine side (the scheduler and build execution come
//! with the rest of the build-farm issue).
//!
//! - [`reverse`]: the reverse pool: buildlets that dial in and register.
//! - [`client`]: a client of one buildlet over a held connection.

pub mod client;
pub mod reverse;

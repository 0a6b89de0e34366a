//! The build farm: what it is configured to build and where.
//!
//! - [`env`]: host types and builders, loaded from the `env/` directory.
pub mod env;

//! Every almanac daemon and tool, behind the one `almanac` binary.
//!
//! Layout:
//! - [`cli`]: the command line (`almanac log ...`), parsed with clap.
//! - [`codec`]: mutations in protobuf JSON and text format.
//! - [`sample`]: deterministic, realistic sample mutations.
//!
//! Architecture Invariant: this is the only crate with a runtime, network,
//! `anyhow` or process-level concerns. Libraries below it (`almanac-log`,
//! `almanac-projections`, `almanac-proto`) stay free of them.

pub mod cli;
pub mod codec;
pub mod sample;

//! Every almanac daemon and tool, behind the one `almanac` binary.
//!
//! Layout:
//! - [`buildlet`]: the worker server on build machines: tarballs in and
//!   out, commands run with streamed output (Go's `cmd/buildlet`, listen
//!   mode).
//! - [`cli`]: the command line (`almanac log ...`), parsed with clap.
//! - [`codec`]: mutations in protobuf JSON and text format.
//! - [`coordinator`]: the build farm's coordinator (so far: the reverse
//!   pool and the buildlet client).
//! - [`farm`]: the build farm's configuration (host types and builders
//!   from `env/`).
//! - [`form`]: Go-compatible form encoding shared by the HTTP daemons.
//! - [`history`]: a deterministic generator of Go-shaped histories.
//! - [`ingest`]: GitHub, Gerrit and git sync into the log.
//! - [`maintnerd`]: the log's server: `/logs`, gRPC LogService and
//!   MaintnerService, health, reflection, `/metrics`.
//! - [`pubsubhelper`]: GitHub webhooks and Gerrit events as a long-poll
//!   feed (`/waitevent`, `/recent`) that wakes maintnerd's syncers.
//! - [`sample`]: deterministic sample mutations for demos and benchmarks.
//!
//! Architecture Invariant: this is the only crate with a runtime, network,
//! `anyhow` or process-level concerns. Libraries below it (`almanac-log`,
//! `almanac-projections`, `almanac-proto`) stay free of them.

pub mod buildlet;
pub mod cli;
pub mod codec;
pub mod coordinator;
pub mod farm;
pub mod form;
pub mod history;
pub(crate) mod http_get;
pub mod ingest;
pub mod maintnerd;
pub mod pubsubhelper;
pub mod sample;

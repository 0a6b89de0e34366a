//! The coordinator: the build farm's scheduler and build runner, whose
//! queue, machine pool and builds are folds of the log (spec/coordinator.md).
//!
//! - [`run`]: the process: fold the log, start decisions and executions.
//! - `decide`: one round of decisions, and the loop that records them.
//! - [`discovery`]: which work exists (post-submit commits, trybot CLs).
//! - [`execute`]: one build on its machine.
//! - [`machines`]: the machines reachable now (reverse and listen mode).
//! - [`reverse`]: the reverse pool: buildlets that dial in and register.
//! - [`client`]: a client of one buildlet over a held connection.
//! - [`source`]: a commit's tree as the tarball a build starts from.
//! - [`blobs`]: build logs by content hash.
//! - [`gerrit`]: trybot results posted to Gerrit.
//! - [`config`]: the builders and host types as the log records them.
//! - [`status`] and `http`: the farmer pages, `/metrics`, `/reverse`.
//! - [`upstream`]: the log, in process or over maintnerd's gRPC.

pub mod blobs;
pub mod client;
pub mod config;
mod decide;
pub mod discovery;
mod execute;
pub mod gerrit;
mod http;
pub mod machines;
pub mod reverse;
pub mod run;
pub mod source;
pub mod status;
pub mod upstream;

pub use run::{Config, Coordinator};

//! Network clients of the mutation log.
//!
//! - [`netsource`]: maintner's `/logs` protocol (Go's netsource algorithm):
//!   index, Range downloads, SHA-224 checks, long-polls and split detection,
//!   into a godata-layout cache directory.
//! - [`grpc`]: `almanac.log.v1.LogService`: [`LogClient`] for appends, head
//!   and raw streams; [`Subscription`] for a stream that resumes across
//!   server restarts with no gap and no duplicate.
//! - [`tls`]: the system's roots plus an optional CA file, for `https://`
//!   servers; verification is never off.
//! - [`mirror`]: writes streamed records into a cache directory so that it
//!   stays byte-identical to the server's segments.
//!
//! Architecture Invariant: a cache directory written here is a log
//! directory in the godata layout; nothing here knows what a mutation means.
#![warn(missing_docs)]

pub mod grpc;
pub mod mirror;
pub mod netsource;
pub mod tls;

pub use grpc::{ClientError, LogClient, Subscription};
pub use mirror::{Mirror, MirrorError, Mirrored};
pub use netsource::{NetError, NetOptions, NetSource, SyncProgress, Synced};

//! The mutation log: maintner's record framing in a segmented, durable,
//! followable log directory.
//!
//! A log is a directory of segments named as Go's godata cache names them
//! (`NNNN.<sha224>.mutlog` sealed, `NNNN.growing.mutlog` growing). Records use
//! maintner's `REC@<hex offset>+<hex len>=<payload>` framing with offsets
//! restarting at 0 in each segment, so Go's tools read our logs and we read
//! theirs. A record's [`Position`] is its byte offset in the concatenation of
//! all segments.
//!
//! Layout:
//! - [`framing`]: the reclog format, byte for byte, with Go's error texts.
//! - [`segment`]: segment file names and the directory layout.
//! - [`table`]: positions, the segment table, read-only [`Snapshot`]s.
//! - [`log`]: [`Log`], the single writer: lock, recovery, appends, reads.
//! - [`append`]: the writer thread and its group commit.
//! - [`read`] and [`follow`]: reading from a position, and following live.
//! - [`scan`]: walking one segment file's records.
//! - [`serve`]: what serving needs: the `/logs` index with the growing
//!   segment's running hash, and bounded reads of a segment's durable bytes.
//! - [`index`]: the sled index of sealed segments (derived, rebuildable).
//! - [`verify`], [`repair`], [`import`]: the maintenance operations.
//! - [`mapped`]: read-only memory maps of segments (the project's only
//!   `unsafe`, argued there).
//! - [`quote`]: Go's `%q`, for error texts and dumps.
//!
//! Architecture Invariant: this crate knows framing, ordering and
//! durability, never domain semantics (it decodes payloads only to verify
//! them and to index their times). It is append-only: no API changes or
//! deletes an acknowledged record; only `repair`, run by an operator with the
//! writer stopped, cuts a log, and it keeps a copy of what it cuts.
//!
//! Architecture Invariant: an append is acknowledged only after its bytes are
//! fsynced. Readers and followers never see bytes that are not durable.
//!
//! API Boundary: the on-disk format is Go's. Never change the framing or the
//! file names.
//!
//! The crate runs no async runtime: the writer is a thread, and followers
//! are futures woken by a `tokio::sync::watch` channel, usable from any
//! executor.
#![warn(missing_docs)]

pub mod append;
pub mod follow;
pub mod framing;
pub mod import;
pub mod index;
pub mod lock;
pub mod log;
pub mod mapped;
pub mod quote;
pub mod read;
pub mod repair;
pub mod scan;
pub mod segment;
pub mod serve;
pub mod table;
pub mod verify;

pub use crate::follow::Follower;
pub use crate::log::{Log, Options, Recovery};
pub use crate::read::{Reader, Record};
pub use crate::table::{Position, SegmentTable, Snapshot};

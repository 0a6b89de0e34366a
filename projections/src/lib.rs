//! Pure folds of the mutation log into in-memory views.
//!
//! A projection is a deterministic left fold: the same records in the same
//! order always give the same view. Folds never do IO, never read a clock
//! and never let randomness reach a view (the corpus's commit index seeds
//! its slot layout, which no answer depends on); anything time-dependent
//! takes the time as an argument. Loading a log from disk lives in [`load`] (and [`replay`]),
//! never inside a fold.
//!
//! Layout:
//! - [`Projection`]: the fold trait every view implements.
//! - [`replay`]: folds records from a reader into a projection.
//! - [`corpus`]: the maintner corpus (GitHub, git, Gerrit) with Go's semantics.
//! - [`kinds`]: a small view: how many mutations of each kind a log holds.
//! - [`load`]: `Corpus::open` / `update` from a log directory (the IO).
//! - [`network`]: `Corpus::open_network` (maintner's `/logs`) and
//!   `Corpus::subscribe` (gRPC), through a local cache directory.
//!
//! Architecture Invariant: a fold that returns an error leaves its view
//! unchanged (validate first, then mutate).

pub mod corpus;
pub mod farm;
pub mod kinds;
pub mod load;
pub mod network;

use almanac_log::{Position, Reader};
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

/// A view folded from the log, one mutation at a time.
pub trait Projection {
    /// Why a mutation cannot be applied.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies the mutation at `pos`. On error the view is unchanged.
    fn apply(&mut self, pos: Position, m: &Mutation) -> Result<(), Self::Error>;
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E: std::error::Error + 'static> {
    /// The log could not be read.
    #[error(transparent)]
    Read(#[from] almanac_log::read::Error),
    /// A record is not a mutation.
    #[error("record at position {position} does not decode as maintpb.Mutation: {source}")]
    Decode {
        /// Where.
        position: Position,
        /// Why.
        source: prost::DecodeError,
    },
    /// The projection refused a mutation.
    #[error("applying the mutation at position {position}: {source}")]
    Apply {
        /// Where.
        position: Position,
        /// Why.
        source: E,
    },
}

/// Folds every record `reader` yields into `view`; returns the position
/// after the last record applied.
pub fn replay<P: Projection>(
    reader: &mut Reader,
    view: &mut P,
) -> Result<Position, ReplayError<P::Error>> {
    while let Some(rec) = reader.next_record()? {
        let m = Mutation::decode(rec.payload.clone()).map_err(|source| ReplayError::Decode {
            position: rec.position,
            source,
        })?;
        view.apply(rec.position, &m)
            .map_err(|source| ReplayError::Apply {
                position: rec.position,
                source,
            })?;
    }
    Ok(reader.next_position())
}

#[cfg(test)]
mod tests;

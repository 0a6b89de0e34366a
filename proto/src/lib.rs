//! The mutation schema: Go's `maintpb` (wire-compatible) plus almanac's
//! build-farm events, as checked-in prost code.
//!
//! Layout:
//! - [`pb::maintpb`]: `Mutation` and the GitHub, git and Gerrit messages with
//!   Go's package, message names and field numbers.
//! - [`pb::farm`]: `almanac.farm.v1`, the coordinator's events, carried in
//!   `Mutation` fields 100 to 103.
//! - [`pb::log`]: `almanac.log.v1.LogService`, the live log over gRPC
//!   (subscribe, append, head), with tonic client and server stubs.
//! - [`pb::apipb`]: Go's `apipb.MaintnerService` query API, with Go's
//!   package, names and field numbers, and tonic stubs.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded schema, for the canonical JSON
//!   mapping, text format and gRPC reflection.
//! - [`summary`]: small hand-written helpers over mutations (their kind, the
//!   time they describe), used by indexes and dumps.
//!
//! Architecture Invariant: this crate holds only the schema, generated types
//! and small conversions. No IO, no runtime, no build script: the generated
//! code in `src/generated/` is produced by `cargo run -p
//! almanac-proto-codegen` and checked in.
//!
//! API Boundary: field numbers are never reused or renumbered; removed fields
//! are reserved. Records the log already holds must always decode.

#![warn(missing_docs)]

pub mod summary;

#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod generated {
    pub mod maintpb {
        include!("generated/maintpb.rs");
    }
    pub mod apipb {
        include!("generated/apipb.rs");
    }
    pub mod almanac {
        pub mod farm {
            pub mod v1 {
                include!("generated/almanac.farm.v1.rs");
            }
        }
        pub mod log {
            pub mod v1 {
                include!("generated/almanac.log.v1.rs");
            }
        }
    }
}

/// The generated message types.
pub mod pb {
    pub use crate::generated::almanac::farm::v1 as farm;
    pub use crate::generated::almanac::log::v1 as log;
    pub use crate::generated::apipb;
    pub use crate::generated::maintpb;
}

/// The encoded `FileDescriptorSet` of every schema file, well-known types
/// included.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor.bin");

/// The fully qualified names of the gRPC services, as reflection and health
/// checks list them.
pub const SERVICE_NAMES: &[&str] = &["almanac.log.v1.LogService", "apipb.MaintnerService"];

/// The fully qualified protobuf name of the log's record type.
pub const MUTATION_MESSAGE: &str = "maintpb.Mutation";

#[cfg(test)]
mod tests;

//! Integration tests of the log engine, against real files and Go's bytes.

mod append;
mod follow;
mod go_fixtures;
mod golden;
mod maintenance;
mod mapped;
mod recovery;
mod support;

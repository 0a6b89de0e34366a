//! Integration tests of the folds: Go's own fold as the oracle.

mod api;
mod checkpoint;
mod oracle;
mod scenarios;

//! Integration tests of the `almanac` binary, run as real processes.

mod cli_log;
mod corpus_cli;
mod crash;
mod gerrit_sync;
mod git_sync;
mod maint_cli;
mod maintnerd;
mod maintnerd_faults;
mod support;
mod tidy;

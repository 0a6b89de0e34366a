//! Integration tests of the `almanac` binary, run as real processes.

mod buildlet;
mod cli_log;
mod coordinator_discovery;
mod coordinator_farm;
mod coordinator_try;
mod corpus_cli;
mod crash;
mod fake_github;
mod gerrit_sync;
mod git_sync;
mod github_sync;
mod ingest_crash;
mod maint_cli;
mod maintnerd;
mod maintnerd_faults;
mod pubsub;
mod retrybuilds;
mod reverse;
mod source_tarball;
mod support;
mod tidy;
mod up_farm;
mod up_ingest;

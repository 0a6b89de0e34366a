//! Integration tests of the `almanac` binary, run as real processes.

mod cli_log;
mod crash;
mod support;
mod tidy;

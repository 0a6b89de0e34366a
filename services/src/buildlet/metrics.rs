//! The buildlet's counters, rendered in Prometheus' text exposition format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Serving counters: plain atomics bumped on the serving paths.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Commands running now.
    pub execs_running: Arc<AtomicI64>,
    /// Commands started (or attempted).
    pub execs_total: AtomicU64,
    /// Commands killed by their timeout.
    pub exec_timeouts: AtomicU64,
    /// File bytes written by `/write` and `/writetgz`.
    pub bytes_written: AtomicU64,
    /// Requests refused for a missing or wrong key (403).
    pub auth_refused: AtomicU64,
    /// Requests refused as malformed or reaching outside the work
    /// directory (400): bad paths, bad tar entries, bad parameters.
    pub bad_requests: AtomicU64,
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let c = |a: &AtomicU64| i128::from(a.load(Ordering::Relaxed));
        metric(
            "almanac_buildlet_execs_running",
            "gauge",
            "Commands running now.",
            i128::from(self.execs_running.load(Ordering::Relaxed)),
        );
        metric(
            "almanac_buildlet_execs_total",
            "counter",
            "Commands started (or attempted).",
            c(&self.execs_total),
        );
        metric(
            "almanac_buildlet_exec_timeouts_total",
            "counter",
            "Commands killed by their timeout.",
            c(&self.exec_timeouts),
        );
        metric(
            "almanac_buildlet_bytes_written_total",
            "counter",
            "File bytes written by /write and /writetgz.",
            c(&self.bytes_written),
        );
        metric(
            "almanac_buildlet_auth_refused_total",
            "counter",
            "Requests refused for a missing or wrong key.",
            c(&self.auth_refused),
        );
        metric(
            "almanac_buildlet_bad_requests_total",
            "counter",
            "Requests refused as malformed or reaching outside the work directory.",
            c(&self.bad_requests),
        );
        out
    }
}

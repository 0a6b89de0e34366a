//! maintnerd's counters, rendered in Prometheus' text exposition format.
//!
//! Counters are plain atomics bumped on the serving paths; `/metrics` reads
//! them together with the log writer's own counters. Nothing here allocates
//! per request.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use almanac_log::Log;

/// Serving counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `/logs` index requests answered.
    pub index_requests: AtomicU64,
    /// Long-polls (`waitsizenot`) waiting now.
    pub long_polls_waiting: Arc<AtomicI64>,
    /// Long-polls that ended in 304.
    pub long_poll_timeouts: AtomicU64,
    /// Segment bytes sent over `/logs/N`.
    pub http_bytes_served: AtomicU64,
    /// gRPC subscribers connected now.
    pub subscribers: Arc<AtomicI64>,
    /// Records sent to gRPC subscribers.
    pub records_streamed: AtomicU64,
    /// Mutation bytes sent to gRPC subscribers.
    pub grpc_bytes_streamed: AtomicU64,
    /// gRPC appends refused (auth, size, decoding).
    pub appends_refused: AtomicU64,
    /// Records folded into the served corpus.
    pub corpus_records: AtomicU64,
    /// Mutations appended by ingest (GitHub, Gerrit, git sync).
    pub ingest_mutations: AtomicU64,
    /// Sync passes finished, and those that failed.
    pub ingest_passes: AtomicU64,
    pub ingest_failures: AtomicU64,
    /// Wake-ups received from a pubsubhelper.
    pub ingest_wakeups: AtomicU64,
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self, log: &Log) -> String {
        let mut out = String::with_capacity(2048);
        let w = log.metrics();
        let mut metric = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let c = |a: &AtomicU64| i128::from(a.load(Ordering::Relaxed));
        let g = |a: &AtomicI64| i128::from(a.load(Ordering::Relaxed));
        metric(
            "almanac_log_append_requests_total",
            "counter",
            "Append requests acknowledged (durable).",
            i128::from(w.requests),
        );
        metric(
            "almanac_log_appended_records_total",
            "counter",
            "Records acknowledged (durable).",
            i128::from(w.records),
        );
        metric(
            "almanac_log_appended_bytes_total",
            "counter",
            "Framed bytes made durable.",
            i128::from(w.bytes),
        );
        metric(
            "almanac_log_group_commits_total",
            "counter",
            "Group commits (one fdatasync each).",
            i128::from(w.commits),
        );
        metric(
            "almanac_log_segments_sealed_total",
            "counter",
            "Segments sealed.",
            i128::from(w.seals),
        );
        metric(
            "almanac_log_end_position",
            "gauge",
            "The durable end of the log, in bytes.",
            i128::from(log.end().0),
        );
        metric(
            "almanac_log_appends_refused_total",
            "counter",
            "gRPC appends refused (auth, size, undecodable).",
            c(&self.appends_refused),
        );
        metric(
            "almanac_logs_index_requests_total",
            "counter",
            "/logs index requests answered.",
            c(&self.index_requests),
        );
        metric(
            "almanac_logs_long_polls_waiting",
            "gauge",
            "/logs?waitsizenot long-polls waiting now.",
            g(&self.long_polls_waiting),
        );
        metric(
            "almanac_logs_long_poll_timeouts_total",
            "counter",
            "/logs long-polls answered 304 after waiting.",
            c(&self.long_poll_timeouts),
        );
        metric(
            "almanac_logs_bytes_served_total",
            "counter",
            "Segment bytes sent over /logs/N.",
            c(&self.http_bytes_served),
        );
        metric(
            "almanac_subscribers",
            "gauge",
            "gRPC Subscribe streams open now.",
            g(&self.subscribers),
        );
        metric(
            "almanac_subscriber_records_total",
            "counter",
            "Records sent to gRPC subscribers.",
            c(&self.records_streamed),
        );
        metric(
            "almanac_subscriber_bytes_total",
            "counter",
            "Mutation bytes sent to gRPC subscribers.",
            c(&self.grpc_bytes_streamed),
        );
        metric(
            "almanac_corpus_records_total",
            "counter",
            "Records folded into the corpus the maintner API answers from.",
            c(&self.corpus_records),
        );
        metric(
            "almanac_ingest_mutations_total",
            "counter",
            "Mutations appended by GitHub, Gerrit and git sync.",
            c(&self.ingest_mutations),
        );
        metric(
            "almanac_ingest_passes_total",
            "counter",
            "Sync passes finished.",
            c(&self.ingest_passes),
        );
        metric(
            "almanac_ingest_failures_total",
            "counter",
            "Sync passes that failed (retried at the next poll).",
            c(&self.ingest_failures),
        );
        metric(
            "almanac_ingest_wakeups_total",
            "counter",
            "Wake-ups received from a pubsubhelper.",
            c(&self.ingest_wakeups),
        );
        out
    }
}

/// A gauge held up while a value lives: +1 now, -1 on drop. It owns its
/// gauge, so a stream or a future can carry it.
#[derive(Debug)]
pub struct GaugeGuard(Arc<AtomicI64>);

impl GaugeGuard {
    /// Raises `gauge` until the guard is dropped.
    pub fn hold(gauge: &Arc<AtomicI64>) -> GaugeGuard {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

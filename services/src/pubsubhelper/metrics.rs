//! pubsubhelper's counters, rendered in Prometheus' text exposition format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Delivery and long-poll counters, bumped on the serving paths.
#[derive(Debug, Default)]
pub struct Metrics {
    /// GitHub deliveries verified, parsed and accepted (published or not).
    pub github_accepted: AtomicU64,
    /// Gerrit deliveries verified, parsed and accepted (published or not).
    pub gerrit_accepted: AtomicU64,
    /// GitHub deliveries whose `X-GitHub-Delivery` was seen before:
    /// answered 200, not published again.
    pub replayed: AtomicU64,
    /// Deliveries refused because no secret is configured for the endpoint.
    pub rejected_unconfigured: AtomicU64,
    /// Deliveries refused for a missing, malformed or wrong signature.
    pub rejected_signature: AtomicU64,
    /// Deliveries refused for a body over the limit.
    pub rejected_too_large: AtomicU64,
    /// Deliveries refused because the payload is not the JSON expected.
    pub rejected_malformed: AtomicU64,
    /// Deliveries whose body could not be read (timeout, broken connection).
    pub rejected_unreadable: AtomicU64,
    /// Events published.
    pub published: AtomicU64,
    /// `/waitevent` long-polls waiting now.
    pub waiters: Arc<AtomicI64>,
    /// Long-polls answered with `LongPollTimeout`.
    pub long_poll_timeouts: AtomicU64,
}

impl Metrics {
    /// The exposition text; `buffered` is the event buffer's length.
    pub fn render(&self, buffered: usize) -> String {
        let mut out = String::with_capacity(2048);
        let c = |a: &AtomicU64| i128::from(a.load(Ordering::Relaxed));
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, i128)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "almanac_pubsub_deliveries_accepted_total",
            "counter",
            "Webhook deliveries verified, parsed and accepted, by source.",
            &[
                ("{source=\"github\"}", c(&self.github_accepted)),
                ("{source=\"gerrit\"}", c(&self.gerrit_accepted)),
            ],
        );
        family(
            "almanac_pubsub_deliveries_rejected_total",
            "counter",
            "Webhook deliveries refused, by reason.",
            &[
                ("{reason=\"unconfigured\"}", c(&self.rejected_unconfigured)),
                ("{reason=\"signature\"}", c(&self.rejected_signature)),
                ("{reason=\"too_large\"}", c(&self.rejected_too_large)),
                ("{reason=\"malformed\"}", c(&self.rejected_malformed)),
                ("{reason=\"unreadable\"}", c(&self.rejected_unreadable)),
            ],
        );
        family(
            "almanac_pubsub_deliveries_replayed_total",
            "counter",
            "GitHub deliveries with an already seen X-GitHub-Delivery (not published again).",
            &[("", c(&self.replayed))],
        );
        family(
            "almanac_pubsub_events_published_total",
            "counter",
            "Events published to the feed.",
            &[("", c(&self.published))],
        );
        family(
            "almanac_pubsub_events_buffered",
            "gauge",
            "Events in the buffer /waitevent and /recent answer from.",
            &[("", buffered as i128)],
        );
        family(
            "almanac_pubsub_waiters",
            "gauge",
            "/waitevent long-polls waiting now.",
            &[("", i128::from(self.waiters.load(Ordering::Relaxed)))],
        );
        family(
            "almanac_pubsub_long_poll_timeouts_total",
            "counter",
            "/waitevent long-polls answered with LongPollTimeout.",
            &[("", c(&self.long_poll_timeouts))],
        );
        out
    }
}

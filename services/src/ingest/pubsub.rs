//! Following a pubsubhelper: long-polls its `/waitevent` and wakes the
//! syncer of the repository each event names (spec/bots.md §3.5,
//! spec/maintner.md §6.2).
//!
//! Topics are Go's: `github:<owner>/<repo>` for a GitHub event, and
//! `gerrit:<server>/<project>` for a Gerrit event, where the server is the
//! event URL's host with `-review.googlesource.com` turned into
//! `.googlesource.com` (any other host is kept as is, port included), so it
//! matches the `host/project` names of `[[gerrit]]` sources.
//!
//! One deliberate difference: Go's wake-up is a non-blocking send on an
//! unbuffered channel, dropped when the syncer is busy, so activity during
//! a sync pass waits for the next poll. A [`Wakeups`] topic is a
//! [`Notify`]: a wake-up while the syncer is busy is kept as one pending
//! permit, and the syncer's next wait returns at once. Events are only
//! hints; nothing in them is trusted as data.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http::StatusCode;
use tokio::sync::Notify;

use crate::pubsubhelper::event::{Event, Time3339};

/// How long one `/waitevent` request may take, as Go's client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How long to wait after a failed request, as Go's client.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The wake-up channels of the syncers, by topic.
#[derive(Debug, Default)]
pub struct Wakeups {
    topics: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// No topics yet.
    pub fn new() -> Wakeups {
        Wakeups::default()
    }

    /// The wake-up of `name` (created on first use). A syncer takes it
    /// before [`follow`] starts, then waits on `notified()` alongside its
    /// poll timer.
    pub fn topic(&self, name: &str) -> Arc<Notify> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.entry(name.to_owned()).or_default().clone()
    }

    /// Wakes the syncer of `name`, or leaves it one pending wake-up if it is
    /// busy. False if no syncer follows `name` (the event is then ignored:
    /// topics are created only by syncers, never by events).
    pub fn fire(&self, name: &str) -> bool {
        let notify = {
            let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            topics.get(name).cloned()
        };
        match notify {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }
}

/// `github:<owner>/<repo>`.
pub fn github_topic(owner: &str, repo: &str) -> String {
    format!("github:{owner}/{repo}")
}

/// `gerrit:<server>/<project>`, the server taken from a change URL such as
/// `https://go-review.googlesource.com/39551`; `None` if `url` has no host.
pub fn gerrit_topic(url: &str, project: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host().filter(|h| !h.is_empty())?;
    let host = match host.strip_suffix("-review.googlesource.com") {
        Some(name) => format!("{name}.googlesource.com"),
        None => host.to_owned(),
    };
    let server = match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Some(format!("gerrit:{server}/{project}"))
}

/// The topic an event wakes, if any (timeouts and events without a
/// repository wake none).
pub fn event_topic(event: &Event) -> Option<String> {
    if event.long_poll_timeout {
        return None;
    }
    if let Some(gh) = &event.github
        && !gh.repo_owner.is_empty()
        && !gh.repo.is_empty()
    {
        return Some(github_topic(&gh.repo_owner, &gh.repo));
    }
    if let Some(g) = &event.gerrit
        && !g.project.is_empty()
    {
        return gerrit_topic(&g.url, &g.project);
    }
    None
}

/// Follows the pubsubhelper at `base_url` (`http://127.0.0.1:8021` or an
/// https URL) until `cancel` resolves, firing the topic of every event and
/// calling `on_event` once per event received (not per timeout), for a
/// metric.
///
/// The loop, as Go's: `GET <base>/waitevent?after=<last Time>` (no `after`
/// the first time, which the server reads as "from now"), at most
/// [`REQUEST_TIMEOUT`] each; on any error wait [`RETRY_DELAY`] and retry;
/// `LongPollTimeout` answers only advance `after`.
pub async fn follow(
    base_url: String,
    wakeups: Arc<Wakeups>,
    mut on_event: impl FnMut(),
    cancel: impl Future<Output = ()>,
) {
    let mut cancel = std::pin::pin!(cancel);
    let client = match Client::new(&base_url) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!(url = base_url, error = %msg, "cannot follow pubsubhelper");
            return;
        }
    };
    tracing::info!(url = client.0.base(), "following pubsubhelper");
    let mut after: Option<Time3339> = None;
    loop {
        let url = client.wait_url(after);
        let got = tokio::select! {
            () = &mut cancel => return,
            got = tokio::time::timeout(REQUEST_TIMEOUT, client.event(&url)) => got,
        };
        let event = match got {
            Ok(Ok(event)) => event,
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("no answer within {REQUEST_TIMEOUT:?}"),
                };
                tracing::warn!(url, error = %msg, "pubsubhelper long-poll failed; retrying in 5 s");
                tokio::select! {
                    () = &mut cancel => return,
                    () = tokio::time::sleep(RETRY_DELAY) => continue,
                }
            }
        };
        after = Some(event.time);
        if event.long_poll_timeout {
            continue;
        }
        on_event();
        match event_topic(&event) {
            Some(topic) => {
                let followed = wakeups.fire(&topic);
                tracing::info!(topic, followed, time = %event.time, "pubsub wake-up");
            }
            None => tracing::debug!(time = %event.time, "pubsub event names no repository"),
        }
    }
}

/// `/waitevent` over [`crate::http_get::Client`].
struct Client(crate::http_get::Client);

impl Client {
    fn new(base_url: &str) -> anyhow::Result<Client> {
        crate::http_get::Client::new(base_url).map(Client)
    }

    fn wait_url(&self, after: Option<Time3339>) -> String {
        match after {
            None => format!("{}/waitevent", self.0.base()),
            Some(t) => format!(
                "{}/waitevent?after={}",
                self.0.base(),
                query_escape(&t.to_string())
            ),
        }
    }

    async fn event(&self, url: &str) -> anyhow::Result<Event> {
        // An event is a few hundred bytes; never hold more than this.
        let (status, body) = self
            .0
            .get(url, 1 << 20)
            .await
            .with_context(|| format!("GET {url}"))?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            anyhow::bail!("GET {url}: {status}: {}", text.trim());
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not an event"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;

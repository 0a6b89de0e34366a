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
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
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
    tracing::info!(url = client.base, "following pubsubhelper");
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

/// A minimal HTTP/1.1 client: one connection per long-poll (one request
/// every 30 s does not need a pool), plain or TLS with the system's roots.
struct Client {
    /// The base URL without a trailing slash.
    base: String,
    /// Set for an https base.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    fn new(base_url: &str) -> anyhow::Result<Client> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .with_context(|| format!("{base:?} is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let config = almanac_log_client::tls::client_config(None)?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => anyhow::bail!("{base:?}: the URL must start with http:// or https://"),
        };
        Ok(Client { base, tls })
    }

    fn wait_url(&self, after: Option<Time3339>) -> String {
        match after {
            None => format!("{}/waitevent", self.base),
            Some(t) => format!(
                "{}/waitevent?after={}",
                self.base,
                query_escape(&t.to_string())
            ),
        }
    }

    async fn event(&self, url: &str) -> anyhow::Result<Event> {
        let (status, body) = self.get(url).await.with_context(|| format!("GET {url}"))?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            anyhow::bail!("GET {url}: {status}: {}", text.trim());
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not an event"))
    }

    async fn get(&self, url: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let uri: http::Uri = url.parse().context("not a URL")?;
        let host = uri.host().context("no host")?;
        // `[::1]` in a URL is `::1` to connect to and to verify.
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = uri.authority().context("no host")?.as_str().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => exchange(tcp, &authority, &path).await,
            Some(connector) => {
                let name = rustls_pki_types::ServerName::try_from(bare_host)
                    .context("not a valid TLS server name")?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {authority}"))?;
                exchange(tls, &authority, &path).await
            }
        }
    }
}

/// One GET over `io`, driving the connection in this task so that dropping
/// the future (timeout, cancel) closes it.
async fn exchange<T>(io: T, authority: &str, path: &str) -> anyhow::Result<(StatusCode, Bytes)>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "almanac-maintnerd")
        .body(Empty::<Bytes>::new())?;
    let work = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        // An event is a few hundred bytes; never hold more than this.
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the event: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = &mut work => res,
        closed = &mut conn => {
            closed.context("connection")?;
            // The server closed after answering: the response is complete.
            work.await
        }
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

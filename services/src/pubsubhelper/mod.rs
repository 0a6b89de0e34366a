//! pubsubhelper: turns GitHub webhooks and Gerrit events into a small
//! in-memory event feed, so maintnerd syncs a repository seconds after
//! activity instead of at its next poll (spec/bots.md §3).
//!
//! Routes:
//! - `GET /`: a small HTML index. Any other unknown path is 404.
//! - `GET /waitevent?after=RFC3339Nano`: one event, as Go serves it: the
//!   oldest buffered event strictly after `after` at once; else the next one
//!   published within the long-poll (30 s); else `{"Time": now,
//!   "LongPollTimeout": true}`. `after` defaults to now. Non-GET and a
//!   malformed `after` are 400. Tab-indented JSON,
//!   `application/json; charset=utf-8`.
//! - `GET /recent?after=`: the buffered events not before `after` (all
//!   without it), newest first, as a JSON array.
//! - `POST /github-webhook`: GitHub's webhook ([`webhook`] has the steps).
//! - `POST /gerrit-event`: Gerrit's stream-events JSON, signed the same way.
//! - `GET /metrics`: counters in Prometheus' text format.
//!
//! Events carry Go's `pubsubtypes` keys ([`Event`]); the buffer keeps Go's
//! rule ([`KEEP_MIN`], [`MAX_AGE`]) and lives only in memory: a restart
//! loses it, and clients just long-poll from their last `Time`.
//!
//! Deliberate differences from Go's pubsubhelper:
//! - **Refusals are answered.** Go answers every webhook 200 with an empty
//!   body, so GitHub never retries. We answer 401 for a missing or wrong
//!   signature (or no configured secret), 413 for a body over 5 MiB, 400
//!   for a payload that is not the JSON expected, because the issue asks
//!   for it and because a misconfigured secret then shows up as failed
//!   deliveries on GitHub's webhook page instead of silence. Nothing refused
//!   is recorded. A redelivery of an accepted delivery (same
//!   `X-GitHub-Delivery`) is answered 200 and not published twice.
//! - **Only SHA-256 signatures.** Go also accepts `X-Hub-Signature:
//!   sha1=`; GitHub sends `X-Hub-Signature-256` alongside it on every
//!   delivery, and SHA-1 HMAC would need another dependency for nothing.
//! - **No TLS of our own.** Go refuses webhooks over plain HTTP and serves
//!   TLS with autocert. We bind loopback by default and expect a TLS
//!   terminating proxy in front for a public deployment; the HMAC, not the
//!   transport, is what authenticates a delivery.
//! - **Gerrit events as JSON, not SMTP.** Go runs an SMTP server that
//!   accepts Gerrit's notification e-mails, verifies their DKIM signature
//!   with a DNS lookup, and scrapes headers. We take Gerrit's own event
//!   JSON (`type`, `change.project`, `change.number`, `change.url`,
//!   `patchSet.revision`; `refUpdate` for `ref-updated`), the format
//!   `gerrit stream-events` prints and the webhooks plugin posts, signed
//!   with `X-Hub-Signature-256` and the Gerrit secret. It serves users
//!   better: no port 25, no DKIM or DNS dependency (a DNS hiccup no longer
//!   drops events), no mail routing to set up, it works for any Gerrit
//!   rather than only Google's, and it is testable over loopback. It also
//!   reports ref updates (branch pushes), which e-mails do not. The
//!   webhooks plugin itself does not sign, so the events reach us through a
//!   small relay that does (for example a `gerrit stream-events` follower).
//!   A `ref-updated` payload names no server, so its event's `URL` is the
//!   configured [`Config::gerrit_url`].
//! - **Stamps strictly increase**, so resuming `after` a `Time` never skips
//!   or repeats an event, and a long-poll that times out re-checks the
//!   buffer under the same lock its timeout stamp is taken under.
//!
//! Layout: [`event`] (the JSON types), `buffer` (events and waiters),
//! [`webhook`] (the two signed inputs), [`metrics`].

pub mod event;
pub mod metrics;
pub mod webhook;

mod buffer;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{Html, IntoResponse as _, Response};
use axum::routing::{any, get, post};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Uri};
use tokio::sync::{broadcast, watch};

use crate::ingest::config::Secret;
use crate::maintnerd::metrics::GaugeGuard;

use buffer::{Buffer, Next, Published};

pub use buffer::{KEEP_MIN, MAX_AGE};
pub use event::{Event, GerritEvent, GitHubEvent, Time3339};
pub use metrics::Metrics;
pub use webhook::{MAX_BODY, signature};

/// How long `/waitevent` waits for an event, as Go's.
pub const LONG_POLL: Duration = Duration::from_secs(30);

/// How pubsubhelper runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The GitHub webhook's secret; `None` refuses every GitHub delivery.
    pub webhook_secret: Option<Secret>,
    /// The secret Gerrit events are signed with; `None` refuses them all.
    pub gerrit_secret: Option<Secret>,
    /// The Gerrit server's web address (`https://go-review.googlesource.com`),
    /// the `URL` of Gerrit events whose payload names none (`ref-updated`).
    pub gerrit_url: Option<String>,
    /// How long `/waitevent` waits before answering `LongPollTimeout`.
    pub long_poll: Duration,
}

impl Config {
    /// Defaults on `listen`: no secrets, Go's 30-second long-poll.
    pub fn new(listen: SocketAddr) -> Config {
        Config {
            listen,
            webhook_secret: None,
            gerrit_secret: None,
            gerrit_url: None,
            long_poll: LONG_POLL,
        }
    }
}

/// A one-way shutdown signal many tasks can wait on.
#[derive(Debug)]
struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    fn new() -> Shutdown {
        Shutdown(watch::channel(false).0)
    }

    fn trigger(&self) {
        self.0.send_replace(true);
    }

    async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// State every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    buffer: Buffer,
    pub(crate) metrics: Metrics,
    pub(crate) seen: webhook::Seen,
    pub(crate) webhook_secret: Option<Secret>,
    pub(crate) gerrit_secret: Option<Secret>,
    pub(crate) gerrit_url: Option<String>,
    long_poll: Duration,
    shutdown: Shutdown,
}

impl Shared {
    /// Stamps, buffers and broadcasts `event`.
    pub(crate) fn publish(&self, event: Event) -> Arc<Published> {
        let published = self.buffer.publish(event);
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        published
    }
}

/// A running pubsubhelper.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds and starts serving. Returns once the port is bound.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        if config.webhook_secret.is_none() {
            tracing::warn!("no webhook secret: every GitHub delivery is refused");
        }
        if config.gerrit_secret.is_none() {
            tracing::info!("no Gerrit secret: every Gerrit event is refused");
        }
        let shared = Arc::new(Shared {
            buffer: Buffer::new(),
            metrics: Metrics::default(),
            seen: webhook::Seen::default(),
            webhook_secret: config.webhook_secret,
            gerrit_secret: config.gerrit_secret,
            gerrit_url: config.gerrit_url,
            long_poll: config.long_poll,
            shutdown: Shutdown::new(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        // A long-poll answer is one small write; it must not wait for
        // Nagle's algorithm and a delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        let app = router(shared.clone());
        let down = shared.clone();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { down.shutdown.cancelled().await })
                .await
        });
        tracing::info!(%addr, "pubsubhelper serving /waitevent, /recent, /github-webhook, /gerrit-event and /metrics");
        Ok(Server {
            addr,
            shared,
            serve,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live counters (tests wait on `waiters`).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting connections, answers waiting long-polls with
    /// `LongPollTimeout`, and waits for in-flight requests.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shared.shutdown.trigger();
        self.serve.await??;
        Ok(())
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/waitevent", any(wait_event))
        .route("/recent", any(recent))
        .route("/github-webhook", post(webhook::github))
        .route("/gerrit-event", post(webhook::gerrit))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

async fn home() -> Html<&'static str> {
    Html(
        "<!DOCTYPE html><html><head><title>pubsubhelper</title></head><body>\
         <h1>almanac pubsubhelper</h1>\
         <p>GitHub webhooks and Gerrit events, as a feed maintnerd follows.</p><ul>\
         <li><b><a href=\"/waitevent\">/waitevent</a></b>: long-poll (30 s) for the next event; \
         pass <code>?after=</code> an event's Time (RFC 3339) to resume there</li>\
         <li><b><a href=\"/recent\">/recent</a></b>: the buffered events, newest first, without waiting</li>\
         <li><b>/github-webhook</b>, <b>/gerrit-event</b>: signed POSTs (X-Hub-Signature-256)</li>\
         <li><a href=\"/metrics\">/metrics</a></li>\
         </ul></body></html>",
    )
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.metrics.render(shared.buffer.len());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /waitevent`.
async fn wait_event(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET {
        return plain(StatusCode::BAD_REQUEST, "requires GET");
    }
    let after = match parse_after(&uri) {
        Ok(after) => after.unwrap_or_else(|| Time3339::now().0),
        Err(_) => return bad_after(),
    };
    let published = match shared.buffer.next_after(after) {
        Next::Ready(p) => p,
        Next::Wait(mut rx) => {
            // Dropped with the request, so a client that goes away stops
            // counting (and is written nothing).
            let _waiting = GaugeGuard::hold(&shared.metrics.waiters);
            let woken = tokio::select! {
                p = first_published(&mut rx) => p,
                () = tokio::time::sleep(shared.long_poll) => None,
                () = shared.shutdown.cancelled() => None,
            };
            match woken {
                Some(p) => p,
                None => shared.buffer.timeout_or_newer(after, Time3339::now().0),
            }
        }
    };
    if published.event.long_poll_timeout {
        shared
            .metrics
            .long_poll_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }
    json(published.json.clone())
}

/// The first event published after subscribing (Go hands a waiter the very
/// publish that wakes it, whatever its time).
async fn first_published(rx: &mut broadcast::Receiver<Arc<Published>>) -> Option<Arc<Published>> {
    // On `Lagged` (more than the channel holds were published before this
    // waiter ran) the caller answers from the buffer instead: its
    // `timeout_or_newer` gives the oldest event after `after`, so the
    // client's next `after` skips nothing.
    rx.recv().await.ok()
}

/// `GET /recent`.
async fn recent(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let Ok(after) = parse_after(&uri) else {
        return bad_after();
    };
    let events = shared.buffer.recent(after);
    // Go's exact framing, including "[\n\n]\n" when empty.
    let mut body = String::from("[\n");
    for (i, p) in events.iter().enumerate() {
        if i > 0 {
            body.push_str(",\n");
        }
        body.push_str(&p.json);
    }
    body.push_str("\n]\n");
    json(body)
}

/// The `after` query parameter: `None` when absent or empty, an error when
/// it is not RFC 3339 (answer [`bad_after`]).
fn parse_after(uri: &Uri) -> Result<Option<chrono::DateTime<chrono::Utc>>, chrono::ParseError> {
    let Some(value) = uri.query().and_then(|q| form_value(q, "after")) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    Time3339::parse(&value).map(|t| Some(t.0))
}

fn bad_after() -> Response {
    plain(
        StatusCode::BAD_REQUEST,
        "'after' parameter is not in time.RFC3339Nano format",
    )
}

fn json(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Go's `http.Error`: the message and a newline, as plain text.
pub(crate) fn plain(status: StatusCode, msg: &str) -> Response {
    let mut resp = Response::new(Body::from(format!("{msg}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub(crate) use crate::form::{first_value as form_value, hex_value};

//! The two inputs: GitHub webhooks (`POST /github-webhook`) and Gerrit
//! events (`POST /gerrit-event`), each a JSON body signed with
//! `X-Hub-Signature-256`.
//!
//! A delivery goes through these steps; the first that fails answers and
//! nothing is recorded:
//! 1. Read the body, at most [`MAX_BODY`] bytes (413 above; 408 if it does
//!    not arrive within a minute).
//! 2. Check the signature: HMAC-SHA256 of the raw body with the endpoint's
//!    secret, compared in constant time (401 if no secret is configured, or
//!    the header is missing, malformed or wrong).
//! 3. Parse the payload (400 if it is not the JSON expected).
//! 4. GitHub only: a delivery id (`X-GitHub-Delivery`) seen before is
//!    answered 200 and not published again.
//! 5. Publish an event if the payload names something a syncer can fetch
//!    (an issue or pull request; a change or a ref update), else accept it
//!    silently (pings, pushes, stars).

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HeaderMap};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use sha2::Sha256;

use super::event::{Event, GerritEvent, GitHubEvent};
use super::{Shared, form_value, hex_value, plain};
use crate::ingest::config::Secret;

/// The largest body accepted, as Go's `http.MaxBytesReader(w, r.Body, 5<<20)`.
pub const MAX_BODY: usize = 5 << 20;

/// How long a body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// How far past [`MAX_BODY`] an oversized body is read and thrown away, so
/// the sender (still writing) gets to read the 413 instead of a reset.
const DRAIN_LIMIT: usize = 16 << 20;

/// How many GitHub delivery ids are remembered for replay detection.
const SEEN_CAPACITY: usize = 4096;

/// GitHub's delivery ids are GUIDs; anything much longer is not kept.
const MAX_DELIVERY_ID_LEN: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// The `X-Hub-Signature-256` value GitHub sends for `body` signed with
/// `secret`: `sha256=` and the lowercase hex HMAC-SHA256. A relay posting
/// Gerrit events signs the same way with the Gerrit secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * tag.len());
    out.push_str("sha256=");
    for b in tag.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Checks a `sha256=<hex>` header value against `body` in constant time.
pub(super) fn verify(secret: &[u8], body: &[u8], header: &str) -> Result<(), &'static str> {
    if header.starts_with("sha1=") {
        return Err("sha1 signatures are not accepted; send X-Hub-Signature-256");
    }
    let hex = header
        .strip_prefix("sha256=")
        .ok_or("the signature is not sha256=<hex>")?;
    let tag = decode_hex(hex).ok_or("the signature is not hex")?;
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&tag)
        .map_err(|_| "the signature does not match the body")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?))
        .collect()
}

/// The GitHub delivery ids seen lately, oldest evicted first.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    inner: Mutex<SeenInner>,
}

#[derive(Debug, Default)]
struct SeenInner {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    /// Records `id`; false if it was already recorded.
    fn first_time(&self, id: &str) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.set.contains(id) {
            return false;
        }
        inner.set.insert(id.to_owned());
        inner.order.push_back(id.to_owned());
        if inner.order.len() > SEEN_CAPACITY
            && let Some(old) = inner.order.pop_front()
        {
            inner.set.remove(&old);
        }
        true
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Unconfigured,
    Signature,
    TooLarge,
    Malformed,
    Unreadable,
}

impl Refusal {
    fn counter(self, shared: &Shared) -> &AtomicU64 {
        let m = &shared.metrics;
        match self {
            Refusal::Unconfigured => &m.rejected_unconfigured,
            Refusal::Signature => &m.rejected_signature,
            Refusal::TooLarge => &m.rejected_too_large,
            Refusal::Malformed => &m.rejected_malformed,
            Refusal::Unreadable => &m.rejected_unreadable,
        }
    }
}

/// A refusal on its way to becoming a response.
struct Refused {
    refusal: Refusal,
    status: StatusCode,
    why: Cow<'static, str>,
}

impl Refused {
    fn new(refusal: Refusal, status: StatusCode, why: impl Into<Cow<'static, str>>) -> Refused {
        Refused {
            refusal,
            status,
            why: why.into(),
        }
    }
}

/// Counts, logs and answers a refusal.
fn refuse(shared: &Shared, source: &str, refused: Refused) -> Response {
    refused
        .refusal
        .counter(shared)
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(source, status = %refused.status, why = %refused.why, "delivery refused");
    plain(refused.status, &refused.why)
}

/// A delivery whose signature checked out.
struct Delivery {
    body: Bytes,
    headers: HeaderMap,
}

enum BodyRead {
    Whole(Bytes),
    TooLarge,
    TimedOut,
    Failed(String),
}

/// Reads at most [`MAX_BODY`] bytes; past that, reads on (discarding) up to
/// [`DRAIN_LIMIT`] more so the sender can finish writing and see the 413.
async fn read_body(mut body: Body) -> BodyRead {
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    let reading = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > MAX_BODY + DRAIN_LIMIT {
                break;
            }
        }
        Ok::<(), String>(())
    };
    let outcome = tokio::time::timeout(BODY_TIMEOUT, reading).await;
    match outcome {
        Err(_) => BodyRead::TimedOut,
        Ok(Err(e)) => BodyRead::Failed(format!("reading the body: {e}")),
        Ok(Ok(())) if seen > MAX_BODY => BodyRead::TooLarge,
        Ok(Ok(())) => BodyRead::Whole(buf.freeze()),
    }
}

/// Steps 1 and 2: the body, checked against `secret`.
async fn receive(secret: Option<&Secret>, req: Request) -> Result<Delivery, Refused> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Refused::new(
            Refusal::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 5 MiB",
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        // A client that waits for `100 Continue` is answered before it
        // sends anything; hyper sends `100 Continue` only once the body is
        // read, so it must stay unread.
        let expects_continue = headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            let _ = read_body(body).await;
        }
        return Err(too_large());
    }
    let body = match read_body(body).await {
        BodyRead::Whole(body) => body,
        BodyRead::TooLarge => return Err(too_large()),
        BodyRead::TimedOut => {
            return Err(Refused::new(
                Refusal::Unreadable,
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within a minute",
            ));
        }
        BodyRead::Failed(why) => {
            return Err(Refused::new(
                Refusal::Unreadable,
                StatusCode::BAD_REQUEST,
                why,
            ));
        }
    };
    let Some(secret) = secret else {
        return Err(Refused::new(
            Refusal::Unconfigured,
            StatusCode::UNAUTHORIZED,
            "no secret is configured for this endpoint, so every delivery is refused",
        ));
    };
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .or_else(|| headers.get("x-hub-signature"))
    else {
        return Err(Refused::new(
            Refusal::Signature,
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256",
        ));
    };
    let signature = signature.to_str().unwrap_or("").trim();
    if let Err(why) = verify(secret.expose().as_bytes(), &body, signature) {
        return Err(Refused::new(
            Refusal::Signature,
            StatusCode::UNAUTHORIZED,
            why,
        ));
    }
    Ok(Delivery { body, headers })
}

impl Delivery {
    /// The JSON payload: the body, or its `payload` field when GitHub is set
    /// to send `application/x-www-form-urlencoded`.
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let form = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            let text = std::str::from_utf8(&self.body).map_err(|_| "the form is not UTF-8")?;
            let payload = form_value(text, "payload").ok_or("the form has no payload field")?;
            serde_json::from_str(&payload)
                .map_err(|e| format!("the payload is not the JSON expected: {e}"))
        } else {
            serde_json::from_slice(&self.body)
                .map_err(|e| format!("the body is not the JSON expected: {e}"))
        }
    }

    fn delivery_id(&self) -> Option<&str> {
        self.headers
            .get("x-github-delivery")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_DELIVERY_ID_LEN)
    }
}

fn accepted() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

// The fields Go's pubsubhelper reads from a GitHub payload; everything else
// (and GitHub payloads are large) is skipped unparsed.
#[derive(Debug, Deserialize)]
pub(super) struct GitHubPayload {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    repository: Option<GitHubRepository>,
    #[serde(default)]
    issue: Option<GitHubNumbered>,
    #[serde(default)]
    pull_request: Option<GitHubNumbered>,
}

#[derive(Debug, Deserialize)]
struct GitHubRepository {
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GitHubNumbered {
    #[serde(default)]
    number: Option<i64>,
}

impl GitHubPayload {
    /// The event to publish: only for an issue or pull request in a
    /// repository named `owner/repo`.
    pub(super) fn event(self) -> Option<GitHubEvent> {
        let repository = self.repository?;
        if self.issue.is_none() && self.pull_request.is_none() {
            return None;
        }
        let full_name = repository.full_name.unwrap_or_default();
        let (owner, repo) = full_name.split_once('/')?;
        if owner.is_empty() || repo.is_empty() || repo.contains('/') {
            tracing::warn!(full_name, "GitHub payload with a bogus repository name");
            return None;
        }
        Some(GitHubEvent {
            action: self.action.unwrap_or_default(),
            repo_owner: owner.to_owned(),
            repo: repo.to_owned(),
            issue_number: self.issue.and_then(|i| i.number).unwrap_or(0),
            pull_request_number: self.pull_request.and_then(|p| p.number).unwrap_or(0),
        })
    }
}

/// `POST /github-webhook`.
pub(super) async fn github(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    const SOURCE: &str = "github";
    let delivery = match receive(shared.webhook_secret.as_ref(), req).await {
        Ok(d) => d,
        Err(refused) => return refuse(&shared, SOURCE, refused),
    };
    let payload: GitHubPayload = match delivery.parse() {
        Ok(p) => p,
        Err(why) => {
            let refused = Refused::new(Refusal::Malformed, StatusCode::BAD_REQUEST, why);
            return refuse(&shared, SOURCE, refused);
        }
    };
    if let Some(id) = delivery.delivery_id()
        && !shared.seen.first_time(id)
    {
        shared.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            delivery = id,
            "GitHub delivery seen before; not published again"
        );
        return accepted();
    }
    shared
        .metrics
        .github_accepted
        .fetch_add(1, Ordering::Relaxed);
    match payload.event() {
        Some(github) => {
            let published = shared.publish(Event::github(github));
            if let Some(gh) = &published.event.github {
                tracing::info!(
                    time = %published.event.time,
                    action = gh.action,
                    repo = format!("{}/{}", gh.repo_owner, gh.repo),
                    issue = gh.issue_number,
                    pull_request = gh.pull_request_number,
                    delivery = delivery.delivery_id(),
                    "GitHub event published"
                );
            }
        }
        None => tracing::debug!(
            delivery = delivery.delivery_id(),
            "GitHub delivery names no issue or pull request; nothing published"
        ),
    }
    accepted()
}

// Gerrit's stream-events JSON (what `gerrit stream-events` prints and the
// webhooks plugin posts): change events carry `change` and `patchSet`,
// `ref-updated` carries `refUpdate`.
#[derive(Debug, Deserialize)]
pub(super) struct GerritPayload {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    change: Option<GerritChange>,
    #[serde(rename = "patchSet", default)]
    patch_set: Option<GerritPatchSet>,
    /// `change-merged` names the merged commit here.
    #[serde(rename = "newRev", default)]
    new_rev: Option<String>,
    #[serde(rename = "refUpdate", default)]
    ref_update: Option<GerritRefUpdate>,
}

#[derive(Debug, Deserialize)]
struct GerritChange {
    #[serde(default)]
    project: Option<String>,
    /// A number, or (Gerrit before 2.14) a decimal string.
    #[serde(default)]
    number: Option<serde_json::Value>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GerritPatchSet {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GerritRefUpdate {
    #[serde(default)]
    project: Option<String>,
    #[serde(rename = "newRev", default)]
    new_rev: Option<String>,
}

impl GerritPayload {
    /// The event to publish: for a change event or a ref update. `server`
    /// is the configured Gerrit web address, the URL of events whose
    /// payload names none.
    pub(super) fn event(self, server: Option<&str>) -> Option<GerritEvent> {
        let server = server.map(|s| s.trim_end_matches('/'));
        if let Some(change) = self.change
            && let Some(project) = change.project.filter(|p| !p.is_empty())
        {
            let number = match &change.number {
                Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
                Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
                _ => 0,
            };
            let url = match (change.url, server) {
                (Some(url), _) if !url.is_empty() => url,
                (_, Some(server)) if number > 0 => format!("{server}/{number}"),
                (_, server) => server.unwrap_or_default().to_owned(),
            };
            let commit_hash = self
                .patch_set
                .and_then(|p| p.revision)
                .or(self.new_rev)
                .unwrap_or_default();
            return Some(GerritEvent {
                url,
                project,
                commit_hash,
                change_number: number,
            });
        }
        let update = self.ref_update?;
        let project = update.project.filter(|p| !p.is_empty())?;
        Some(GerritEvent {
            url: server.unwrap_or_default().to_owned(),
            project,
            commit_hash: update.new_rev.unwrap_or_default(),
            change_number: 0,
        })
    }
}

/// `POST /gerrit-event`.
pub(super) async fn gerrit(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    const SOURCE: &str = "gerrit";
    let delivery = match receive(shared.gerrit_secret.as_ref(), req).await {
        Ok(d) => d,
        Err(refused) => return refuse(&shared, SOURCE, refused),
    };
    let payload: GerritPayload = match delivery.parse() {
        Ok(p) => p,
        Err(why) => {
            let refused = Refused::new(Refusal::Malformed, StatusCode::BAD_REQUEST, why);
            return refuse(&shared, SOURCE, refused);
        }
    };
    shared
        .metrics
        .gerrit_accepted
        .fetch_add(1, Ordering::Relaxed);
    let kind = payload.kind.clone().unwrap_or_default();
    match payload.event(shared.gerrit_url.as_deref()) {
        Some(gerrit) => {
            if gerrit.url.is_empty() {
                tracing::warn!(
                    kind,
                    project = gerrit.project,
                    "Gerrit event without a server URL (set --gerrit-url): followers cannot tell which server it is from"
                );
            }
            let published = shared.publish(Event::gerrit(gerrit));
            if let Some(g) = &published.event.gerrit {
                tracing::info!(
                    time = %published.event.time,
                    kind,
                    url = g.url,
                    project = g.project,
                    change = g.change_number,
                    commit = g.commit_hash,
                    "Gerrit event published"
                );
            }
        }
        None => tracing::debug!(
            kind,
            "Gerrit event names no change or ref update; nothing published"
        ),
    }
    accepted()
}

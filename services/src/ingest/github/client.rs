//! The GitHub REST client of the sync: octocrab for transport and
//! authentication, plus what maintner needs around it: an in-memory ETag
//! cache (a 304 answers with the cached body), `Link: rel="next"` paging,
//! waiting out rate limits, retrying 5xx, and a request counter.
//!
//! Bodies are returned raw, so callers parse them as Go does. The token is
//! handed to octocrab once and never logged; error texts name only the path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT, DATE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK, RETRY_AFTER, USER_AGENT,
};
use http_body_util::BodyExt as _;
use octocrab::Octocrab;

use almanac_projections::corpus::time::Time;

use super::super::SyncError;
use super::super::config::{GitHubSource, Secret};

/// The largest response body read from GitHub (a page of 100 issues with
/// long bodies is a few megabytes).
const MAX_BODY: usize = 64 << 20;

/// The `User-Agent` of every request. (octocrab appends its own
/// `User-Agent: octocrab` after it; GitHub and most servers read the first.)
pub const USER_AGENT_VALUE: &str = "almanac-maintnerd";

/// How the client waits and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest single wait, for a rate limit or a retry backoff.
    /// GitHub's primary limit resets within the hour; tests set this low.
    pub max_sleep: Duration,
    /// How many times a 5xx answer or a transport error is retried.
    pub server_error_retries: u32,
    /// The wait before the first retry after a 5xx; it doubles each time.
    pub first_backoff: Duration,
    /// How many rate-limit waits one request may take before failing.
    pub rate_limit_retries: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (Go gives each events request one minute).
    pub read_timeout: Duration,
    /// Shared by every repository's client so that together they stay
    /// under one request rate (Go's `-github-rate`); `None` is unlimited.
    pub limiter: Option<std::sync::Arc<RateLimiter>>,
}

/// A token bucket: at most `per_second` requests a second on average, with
/// bursts of up to `per_second` (Go's `rate.NewLimiter(qps, qps)`).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    /// The time of the last slot handed out (none yet: the bucket starts
    /// full).
    last_slot: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl RateLimiter {
    /// `per_second` requests a second; must be positive.
    pub fn new(per_second: f64) -> RateLimiter {
        let per_second = per_second.max(0.001);
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            burst: per_second.ceil().max(1.0) as u32,
            last_slot: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for a slot.
    pub async fn acquire(&self) {
        let wait_until = {
            let mut last = self.last_slot.lock().await;
            let now = tokio::time::Instant::now();
            // Unused capacity accrues up to `burst` slots: a slot may be
            // as early as `burst - 1` intervals in the past.
            let earliest = now
                .checked_sub(self.interval * self.burst.saturating_sub(1))
                .unwrap_or(now);
            let slot = match *last {
                Some(prev) => (prev + self.interval).max(earliest),
                None => earliest,
            };
            *last = Some(slot);
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            max_sleep: Duration::from_secs(3600),
            server_error_retries: 3,
            first_backoff: Duration::from_secs(1),
            rate_limit_retries: 10,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            limiter: None,
        }
    }
}

/// Whether a request may use the ETag cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Neither send `If-None-Match` nor store the answer.
    Bypass,
    /// Send `If-None-Match` when an ETag is cached; store a new answer.
    Revalidate,
    /// Do not send `If-None-Match`, but store the answer (Go's direct
    /// client after a webhook said something changed).
    Refresh,
}

/// One answer, after retries: a success (2xx, or a 304 turned into the
/// cached body), or one of the statuses callers decide about themselves
/// (301, 404, 410).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The HTTP status (200 for a 304 answered from the cache).
    pub status: u16,
    /// The body (the cached one after a 304).
    pub body: Bytes,
    /// The response's `Date`, when it parsed.
    pub date: Option<Time>,
    /// The path and query of the `rel="next"` link.
    pub next: Option<String>,
    /// The server answered 304 and the body came from the cache.
    pub not_modified: bool,
}

impl Fetched {
    /// Whether the resource is gone (404 or 410).
    pub fn is_gone(&self) -> bool {
        matches!(self.status, 404 | 410)
    }

    /// `self` if it is a success, an error naming `path` otherwise.
    pub fn expect_ok(self, path: &str) -> Result<Fetched, SyncError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(SyncError::GitHub(format!(
                "GET {path}: unexpected status {}",
                self.status
            )))
        }
    }

    /// The server's `Date`, which sync statuses record; Go fails the sync
    /// without it.
    pub fn server_date(&self, path: &str) -> Result<Time, SyncError> {
        self.date
            .ok_or_else(|| SyncError::GitHub(format!("GET {path}: invalid server Date response")))
    }
}

#[derive(Debug, Clone)]
struct CachedPage {
    etag: HeaderValue,
    body: Bytes,
    next: Option<String>,
}

/// A GitHub API client for one base URL and token.
pub struct GitHubClient {
    octo: Octocrab,
    options: ClientOptions,
    /// Keyed by the request's path and query.
    cache: Mutex<HashMap<String, CachedPage>>,
    requests: AtomicU64,
    not_modified: AtomicU64,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("options", &self.options)
            .field("requests", &self.requests())
            .field("not_modified", &self.not_modified())
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// A client for `api_url` (`https://api.github.com`, or a fake's
    /// `http://127.0.0.1:port`), authenticating with `token` when given.
    ///
    /// Call it inside a Tokio runtime: octocrab spawns its request buffer
    /// there, and requests fail once that runtime is gone.
    pub fn new(
        api_url: &str,
        token: Option<&Secret>,
        options: ClientOptions,
    ) -> Result<GitHubClient, SyncError> {
        let mut builder = Octocrab::builder()
            .set_connect_timeout(Some(options.connect_timeout))
            .set_read_timeout(Some(options.read_timeout))
            .base_uri(api_url)
            .map_err(|e| SyncError::GitHub(format!("API URL {api_url:?}: {e}")))?;
        if let Some(token) = token {
            builder = builder.personal_token(token.expose().to_owned());
        }
        let octo = builder
            .build()
            .map_err(|e| SyncError::GitHub(format!("building the client: {e}")))?;
        Ok(GitHubClient {
            octo,
            options,
            cache: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
        })
    }

    /// A client for a configured source, with default options.
    pub fn for_source(source: &GitHubSource) -> Result<GitHubClient, SyncError> {
        GitHubClient::new(
            &source.api_url,
            source.token.as_ref(),
            ClientOptions::default(),
        )
    }

    /// HTTP requests sent so far, retries and 304s included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests answered 304 from the ETag cache so far.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }

    fn cached(&self, path: &str) -> Option<CachedPage> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(path).cloned()
    }

    fn store(&self, path: &str, page: CachedPage) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(path.to_owned(), page);
    }

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        (self.options.first_backoff * factor).min(self.options.max_sleep)
    }

    /// `GET path` (path and query, relative to the API URL), with the
    /// cache, rate-limit waits and 5xx retries. Returns successes and
    /// 301/404/410; any other status is an error.
    pub async fn get(&self, path: &str, policy: CachePolicy) -> Result<Fetched, SyncError> {
        let cached = match policy {
            CachePolicy::Revalidate => self.cached(path),
            CachePolicy::Bypass | CachePolicy::Refresh => None,
        };
        let mut server_errors = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            headers.insert(
                ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            );
            if let Some(c) = &cached {
                headers.insert(IF_NONE_MATCH, c.etag.clone());
            }
            if let Some(limiter) = &self.options.limiter {
                limiter.acquire().await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let res = match self.octo._get_with_headers(path, Some(headers)).await {
                Ok(res) => res,
                Err(e) => {
                    if server_errors < self.options.server_error_retries {
                        server_errors += 1;
                        let wait = self.backoff(server_errors);
                        tracing::warn!(path, error = %e, ?wait, "GitHub request failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(SyncError::GitHub(format!("GET {path}: {e}")));
                }
            };
            let status = res.status().as_u16();
            let head = res.headers().clone();
            let date = head
                .get(DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date);

            if status == 304 {
                let Some(c) = &cached else {
                    return Err(SyncError::GitHub(format!(
                        "GET {path}: 304 without a cached page"
                    )));
                };
                self.not_modified.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path, "GitHub: not modified");
                return Ok(Fetched {
                    status: 200,
                    body: c.body.clone(),
                    date,
                    next: c.next.clone(),
                    not_modified: true,
                });
            }

            if let Some(wait) = rate_limit_wait(status, &head, unix_now()) {
                if rate_limited < self.options.rate_limit_retries {
                    rate_limited += 1;
                    let wait = wait.min(self.options.max_sleep);
                    tracing::warn!(path, status, ?wait, "GitHub rate limit; waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(SyncError::GitHub(format!(
                    "GET {path}: still rate limited after {rate_limited} waits"
                )));
            }

            if status >= 500 && server_errors < self.options.server_error_retries {
                server_errors += 1;
                let wait = self.backoff(server_errors);
                tracing::warn!(path, status, ?wait, "GitHub server error; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }

            // A page of 100 issues is well under a megabyte; a body past
            // this bound is refused rather than held.
            let body = http_body_util::Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| SyncError::GitHub(format!("GET {path}: reading the body: {e}")))?
                .to_bytes();
            let next = next_link(&head);
            match status {
                200..=299 => {
                    if policy != CachePolicy::Bypass
                        && let Some(etag) = head.get(ETAG)
                    {
                        self.store(
                            path,
                            CachedPage {
                                etag: etag.clone(),
                                body: body.clone(),
                                next: next.clone(),
                            },
                        );
                    }
                }
                301 | 404 | 410 => {}
                _ => {
                    let text = String::from_utf8_lossy(&body);
                    let text: String = text.chars().take(200).collect();
                    return Err(SyncError::GitHub(format!("GET {path}: {status}: {text}")));
                }
            }
            return Ok(Fetched {
                status,
                body,
                date,
                next,
                not_modified: false,
            });
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// How long to wait before retrying an answer that is a rate limit, or
/// `None` when it is not one: `Retry-After` seconds (secondary limits);
/// `X-RateLimit-Remaining: 0` until `X-RateLimit-Reset` plus a second; a
/// bare 429 for a minute, as GitHub's documentation asks. A 403 with
/// neither header is a real refusal.
pub fn rate_limit_wait(status: u16, headers: &HeaderMap, now_unix: i64) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) =
        header_str(headers, RETRY_AFTER.as_str()).and_then(|s| s.parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    if header_str(headers, "x-ratelimit-remaining") == Some("0") {
        let reset = header_str(headers, "x-ratelimit-reset")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(now_unix + 60);
        return Some(Duration::from_secs((reset - now_unix).max(0) as u64 + 1));
    }
    (status == 429).then_some(Duration::from_secs(60))
}

/// The path and query of the `rel="next"` entry of the `Link` headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for link in value.split(',') {
            let mut segs = link.trim().split(';');
            let Some(url) = segs
                .next()
                .map(str::trim)
                .and_then(|u| u.strip_prefix('<'))
                .and_then(|u| u.strip_suffix('>'))
            else {
                continue;
            };
            if segs.any(|s| s.trim() == "rel=\"next\"") {
                return Some(path_and_query(url));
            }
        }
    }
    None
}

/// `https://host/a?b` as `/a?b`, so the next request goes through the same
/// base URL and authentication as the first.
fn path_and_query(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Go's `http.ParseTime`: IMF-fixdate (RFC 1123 with GMT), RFC 850 and
/// ANSI C's `asctime` layout, in UTC.
pub fn parse_http_date(text: &str) -> Option<Time> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc2822(text) {
        return Some(Time {
            seconds: t.timestamp(),
            nanos: 0,
        });
    }
    for layout in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, layout) {
            return Some(Time {
                seconds: t.and_utc().timestamp(),
                nanos: 0,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests;

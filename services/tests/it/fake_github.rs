//! A fake GitHub REST API on 127.0.0.1 for the sync's tests and benchmark:
//! issues (sorted by update time, newest first), single issues, comments
//! (with `since`), events, reviews, labels and milestones of one
//! repository, paged with `Link: rel="next"`, with ETags (a hash of the
//! body) honoured through `If-None-Match` → 304, and faults to inject once:
//! a primary rate limit (403, `X-RateLimit-Remaining: 0`, reset a second
//! ahead) and a 502.
//!
//! Every response carries the fake's `Date`, which tests set, so sync
//! watermarks are exact. Every request is logged for assertions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{IF_NONE_MATCH, USER_AGENT};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `Date` every response carries until a test changes it.
pub(crate) const FAKE_DATE: &str = "Tue, 15 Nov 2022 08:12:31 GMT";

/// What the fake serves.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeRepo {
    pub(crate) owner: String,
    pub(crate) name: String,
    /// Issues and pull requests as the issues endpoints return them.
    pub(crate) issues: Vec<Value>,
    /// Comments by issue number.
    pub(crate) comments: BTreeMap<i64, Vec<Value>>,
    /// Events by issue number, as explicit pages (page N is `[N-1]`).
    pub(crate) events: BTreeMap<i64, Vec<Vec<Value>>>,
    /// Reviews by pull request number.
    pub(crate) reviews: BTreeMap<i64, Vec<Value>>,
    pub(crate) labels: Vec<Value>,
    pub(crate) milestones: Vec<Value>,
    /// The most items per page of the issues, comments, reviews, labels and
    /// milestones listings (fewer when the client asks for fewer).
    pub(crate) page_size: usize,
}

impl FakeRepo {
    /// Newest update first, as `sort=updated&direction=desc` lists them;
    /// returns where each number now is.
    fn sort_issues(&mut self) -> HashMap<i64, usize> {
        self.issues.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["updated_at"].as_str().unwrap_or("").to_owned(),
                    v["number"].as_i64().unwrap_or(0),
                )
            };
            key(b).cmp(&key(a))
        });
        self.issues
            .iter()
            .enumerate()
            .filter_map(|(at, v)| v["number"].as_i64().map(|n| (n, at)))
            .collect()
    }
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    /// Path and query.
    pub(crate) path: String,
    pub(crate) if_none_match: bool,
    /// The first `User-Agent` value.
    pub(crate) user_agent: String,
    pub(crate) status: u16,
}

/// A running fake.
#[derive(Debug)]
pub(crate) struct FakeGitHub {
    addr: SocketAddr,
    repo: Mutex<FakeRepo>,
    /// Issue numbers to their place in `repo.issues`.
    index: Mutex<HashMap<i64, usize>>,
    date: Mutex<String>,
    log: Mutex<Vec<Logged>>,
    rate_limit_once: Mutex<Option<String>>,
    bad_gateway_once: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An answer before it becomes a response.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", "application/json; charset=utf-8".into())],
            body: serde_json::to_vec(v).expect("JSON"),
        }
    }

    fn not_found() -> Answer {
        Answer::json(
            404,
            &serde_json::json!({
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest"
            }),
        )
    }
}

/// Query parameters, percent-decoded, in order.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn issue_number(s: &str) -> Option<i64> {
    s.parse().ok()
}

fn param<'q>(params: &'q [(String, String)], name: &str) -> Option<&'q str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl FakeGitHub {
    /// Binds 127.0.0.1:0 and serves `repo` on the current Tokio runtime.
    pub(crate) async fn start(mut repo: FakeRepo) -> Arc<FakeGitHub> {
        let index = repo.sort_issues();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let addr = listener.local_addr().expect("local addr");
        let fake = Arc::new(FakeGitHub {
            addr,
            repo: Mutex::new(repo),
            index: Mutex::new(index),
            date: Mutex::new(FAKE_DATE.to_owned()),
            log: Mutex::new(Vec::new()),
            rate_limit_once: Mutex::new(None),
            bad_gateway_once: Mutex::new(None),
        });
        let router = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        fake
    }

    /// The API URL to configure.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes what the fake serves.
    pub(crate) fn edit(&self, f: impl FnOnce(&mut FakeRepo)) {
        let mut repo = lock(&self.repo);
        f(&mut repo);
        *lock(&self.index) = repo.sort_issues();
    }

    /// Sets the `Date` of later responses (IMF-fixdate).
    pub(crate) fn set_date(&self, date: &str) {
        *lock(&self.date) = date.to_owned();
    }

    /// The next request whose path starts with `prefix` gets a primary
    /// rate-limit 403 that resets a second later.
    pub(crate) fn fail_once_with_rate_limit(&self, prefix: &str) {
        *lock(&self.rate_limit_once) = Some(prefix.to_owned());
    }

    /// The next request whose path starts with `prefix` gets a 502.
    pub(crate) fn fail_once_with_bad_gateway(&self, prefix: &str) {
        *lock(&self.bad_gateway_once) = Some(prefix.to_owned());
    }

    /// Every request answered so far, in order.
    pub(crate) fn requests(&self) -> Vec<Logged> {
        lock(&self.log).clone()
    }

    fn take_fault(slot: &Mutex<Option<String>>, path: &str) -> bool {
        let mut slot = lock(slot);
        if slot.as_deref().is_some_and(|p| path.starts_with(p)) {
            *slot = None;
            return true;
        }
        false
    }

    fn answer(&self, path: &str, query: &str) -> Answer {
        if FakeGitHub::take_fault(&self.rate_limit_once, path) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            let mut a = Answer::json(
                403,
                &serde_json::json!({
                    "message": "API rate limit exceeded for 127.0.0.1.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                }),
            );
            a.headers.push(("x-ratelimit-limit", "5000".into()));
            a.headers.push(("x-ratelimit-remaining", "0".into()));
            a.headers.push(("x-ratelimit-reset", (now + 1).to_string()));
            return a;
        }
        if FakeGitHub::take_fault(&self.bad_gateway_once, path) {
            return Answer {
                status: 502,
                headers: vec![("content-type", "text/html".into())],
                body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
            };
        }
        let params = query_params(query);
        let repo = lock(&self.repo);
        let index = lock(&self.index);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let rest = match segs.as_slice() {
            ["repos", owner, name, rest @ ..] if *owner == repo.owner && *name == repo.name => rest,
            _ => return Answer::not_found(),
        };
        let find_issue = |n: i64| index.get(&n).and_then(|at| repo.issues.get(*at));
        match rest {
            ["issues"] => self.listing(path, &params, &repo.issues, &repo),
            ["labels"] => self.listing(path, &params, &repo.labels, &repo),
            ["milestones"] => self.listing(path, &params, &repo.milestones, &repo),
            ["issues", n] => match issue_number(n).and_then(find_issue) {
                Some(issue) => Answer::json(200, issue),
                None => Answer::not_found(),
            },
            ["issues", n, "comments"] => {
                let Some(n) = issue_number(n).filter(|n| find_issue(*n).is_some()) else {
                    return Answer::not_found();
                };
                let since = param(&params, "since").unwrap_or("");
                let mut comments: Vec<Value> = repo
                    .comments
                    .get(&n)
                    .map(|c| {
                        c.iter()
                            .filter(|c| c["updated_at"].as_str().unwrap_or("") >= since)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                comments.sort_by(|a, b| {
                    let key = |v: &Value| {
                        (
                            v["updated_at"].as_str().unwrap_or("").to_owned(),
                            v["id"].as_i64().unwrap_or(0),
                        )
                    };
                    key(a).cmp(&key(b))
                });
                self.listing(path, &params, &comments, &repo)
            }
            ["issues", n, "events"] => {
                let Some(n) = issue_number(n).filter(|n| find_issue(*n).is_some()) else {
                    return Answer::not_found();
                };
                let pages = repo.events.get(&n).cloned().unwrap_or_default();
                let page = param(&params, "page")
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .max(1);
                let items = pages.get(page - 1).cloned().unwrap_or_default();
                self.page_answer(path, &params, items, page < pages.len(), page)
            }
            ["pulls", n, "reviews"] => {
                let Some(n) = issue_number(n).filter(|n| find_issue(*n).is_some()) else {
                    return Answer::not_found();
                };
                let reviews = repo.reviews.get(&n).cloned().unwrap_or_default();
                self.listing(path, &params, &reviews, &repo)
            }
            _ => Answer::not_found(),
        }
    }

    /// One page of `items`, by `page` and `per_page`.
    fn listing(
        &self,
        path: &str,
        params: &[(String, String)],
        items: &[Value],
        repo: &FakeRepo,
    ) -> Answer {
        let per_page = param(params, "per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, repo.page_size.max(1));
        let page = param(params, "page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let start = (page - 1).saturating_mul(per_page).min(items.len());
        let end = (start + per_page).min(items.len());
        self.page_answer(
            path,
            params,
            items[start..end].to_vec(),
            end < items.len(),
            page,
        )
    }

    fn page_answer(
        &self,
        path: &str,
        params: &[(String, String)],
        items: Vec<Value>,
        has_next: bool,
        page: usize,
    ) -> Answer {
        let mut a = Answer::json(200, &Value::Array(items));
        if has_next {
            let mut query: Vec<String> = params
                .iter()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A")))
                .collect();
            query.push(format!("page={}", page + 1));
            a.headers.push((
                "link",
                format!(
                    "<http://{}{path}?{}>; rel=\"next\", <http://{}{path}?page=1>; rel=\"first\"",
                    self.addr,
                    query.join("&"),
                    self.addr
                ),
            ));
        }
        a
    }
}

async fn handle(State(fake): State<Arc<FakeGitHub>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let if_none_match = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();

    let mut answer = fake.answer(&path, &query);
    let date = lock(&fake.date).clone();
    answer.headers.push(("date", date));
    if answer.status == 200 {
        let digest = Sha256::digest(&answer.body);
        let etag: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let etag = format!("\"{etag}\"");
        if if_none_match.as_deref() == Some(etag.as_str()) {
            answer.status = 304;
            answer.body.clear();
            answer.headers.retain(|(k, _)| *k == "date");
        }
        answer.headers.push(("etag", etag));
        answer
            .headers
            .push(("x-ratelimit-remaining", "4999".into()));
    }

    let shown = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    lock(&fake.log).push(Logged {
        path: shown,
        if_none_match: if_none_match.is_some(),
        user_agent,
        status: answer.status,
    });
    let mut res = http::Response::builder().status(answer.status);
    for (k, v) in answer.headers {
        res = res.header(k, v);
    }
    res.body(Body::from(answer.body)).expect("response")
}

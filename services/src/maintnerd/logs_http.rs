//! maintner's `/logs` protocol, byte for byte as Go's gcslog serves it
//! (spec/maintner.md §4.1), so Go's netsource clients and godata work
//! against us unchanged.
//!
//! - `GET|HEAD /logs[?startseg=N][&waitsizenot=SIZE]`: the JSON index, tab
//!   indented, with `X-Sum-Segment-Size`; `waitsizenot` long-polls until the
//!   log's total size differs (304 after the long-poll limit).
//! - `GET|HEAD /logs/N`: a segment's durable bytes, with Range (206) support.
//!
//! One deliberate difference: Go redirects sealed segments to cloud storage;
//! we serve them ourselves and list every segment's `url` as the relative
//! `/logs/N`, which Go's client resolves against the index URL.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};

use almanac_log::SegmentTable;
use almanac_log::serve::{IndexEntry, SegmentBytes};

use super::Shared;
use super::metrics::GaugeGuard;

/// Bytes per chunk when streaming a segment.
const SERVE_CHUNK: usize = 1 << 20;

/// Go's `http.Error`: the message and a newline, as plain text.
fn go_error(status: StatusCode, msg: &str) -> Response {
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

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    crate::form::first_value(uri.query()?, key)
}

/// Go's `strconv.Atoi`/`ParseInt` on a query value: an optional sign and
/// decimal digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The number Go calls `curNum`: the growing segment's, or the next one's
/// when every segment is sealed.
fn current_number(table: &SegmentTable) -> i64 {
    match table.tail() {
        Some(t) => i64::from(t.number),
        None => table.sealed().len() as i64,
    }
}

/// `GET|HEAD /logs`.
pub(super) async fn index(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return go_error(StatusCode::BAD_REQUEST, "bad method");
    }
    let mut startseg = 0i64;
    if let Some(v) = query_param(&uri, "startseg") {
        // Go ignores a value that does not parse.
        startseg = parse_go_int(&v).unwrap_or(0);
        if startseg < 0 {
            return go_error(StatusCode::BAD_REQUEST, "bad startseg");
        }
    }
    // Go long-polls only for a non-empty value.
    if let Some(v) = query_param(&uri, "waitsizenot").filter(|v| !v.is_empty()) {
        let Some(not) = parse_go_int(&v).filter(|n| *n >= 0) else {
            return go_error(StatusCode::BAD_REQUEST, "bad waitsizenot");
        };
        if !wait_size_not(&shared, not as u64).await {
            shared
                .metrics
                .long_poll_timeouts
                .fetch_add(1, Ordering::Relaxed);
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return resp;
        }
    }
    shared
        .metrics
        .index_requests
        .fetch_add(1, Ordering::Relaxed);
    let table = shared.log.table();
    if startseg > current_number(&table) {
        startseg = 0;
    }
    let dir = shared.log.dir().to_owned();
    let hasher = shared.clone();
    let listed = tokio::task::spawn_blocking(move || hasher.tail_hasher.index(&dir, &table)).await;
    let entries = match listed {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "listing /logs");
            return go_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        Err(e) => return go_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let entries: Vec<&IndexEntry> = entries
        .iter()
        .filter(|e| i64::from(e.number) >= startseg)
        .collect();
    let sum: u64 = entries.iter().map(|e| e.size).sum();
    let body = index_json(&entries);
    let mut resp = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    });
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("X-Sum-Segment-Size", HeaderValue::from(sum));
    resp
}

/// Waits until the log's total size differs from `not`, up to the
/// long-poll limit; false on timeout.
async fn wait_size_not(shared: &Shared, not: u64) -> bool {
    let _waiting = GaugeGuard::hold(&shared.metrics.long_polls_waiting);
    let mut rx = shared.log.watch();
    let deadline = tokio::time::Instant::now() + shared.long_poll;
    loop {
        if rx.borrow_and_update().end().0 != not {
            return true;
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The writer closed: report whatever is durable.
                    return rx.borrow().end().0 != not;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
            () = shared.shutdown.cancelled() => return false,
        }
    }
}

/// `json.MarshalIndent(segs, "", "\t")`, no trailing newline.
pub(crate) fn index_json(entries: &[&IndexEntry]) -> String {
    if entries.is_empty() {
        return "[]".to_owned();
    }
    let mut out = String::from("[\n");
    for (i, e) in entries.iter().enumerate() {
        out.push_str(&format!(
            "\t{{\n\t\t\"number\": {},\n\t\t\"size\": {},\n\t\t\"sha224\": \"{}\",\n\t\t\"url\": \"/logs/{}\"\n\t}}",
            e.number, e.size, e.sha224, e.number
        ));
        out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
    }
    out.push(']');
    out
}

/// `GET|HEAD /logs/N`.
pub(super) async fn segment(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return go_error(StatusCode::BAD_REQUEST, "bad method");
    }
    let rest = uri.path().strip_prefix("/logs/").unwrap_or("");
    let Some(number) = parse_go_int(rest) else {
        return go_error(StatusCode::BAD_REQUEST, "bad path");
    };
    let table = shared.log.table();
    // Go redirects a negative number to a nonexistent object; we refuse it.
    if number > current_number(&table) || number < 0 {
        return go_error(StatusCode::BAD_REQUEST, "bad segment number");
    }
    let number = number as u32;
    let dir = shared.log.dir().to_owned();
    let opened =
        tokio::task::spawn_blocking(move || SegmentBytes::open(&dir, &table, number)).await;
    let seg = match opened {
        Ok(Ok(seg)) => seg,
        Ok(Err(e)) => return go_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return go_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let size = seg.as_ref().map_or(0, |s| s.size);
    let range = match headers.get(header::RANGE).map(|v| parse_range(v, size)) {
        None => None,
        Some(Ok(r)) => r,
        Some(Err(RangeError::Invalid)) => {
            return go_error(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range");
        }
        Some(Err(RangeError::NoOverlap)) => {
            let mut resp = go_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid range: failed to overlap",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let (start, end, status) = match range {
        Some((a, b)) => (a, b, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let body = match (method == Method::HEAD, seg) {
        (false, Some(seg)) if end > start => stream_segment(shared.clone(), seg, start, end),
        _ => Body::empty(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// Streams `[start, end)` of a segment from a blocking reader, a chunk at a
/// time, so a 16 MiB segment never sits whole in memory.
fn stream_segment(shared: Arc<Shared>, seg: SegmentBytes, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut at = start;
        while at < end {
            let want = ((end - at) as usize).min(SERVE_CHUNK);
            let mut buf = vec![0u8; want];
            let item = match seg.read_at(&mut buf, at) {
                Ok(n) if n == want => {
                    at += n as u64;
                    shared
                        .metrics
                        .http_bytes_served
                        .fetch_add(n as u64, Ordering::Relaxed);
                    Ok(Bytes::from(buf))
                }
                Ok(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment ended early",
                )),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Why a `Range` header cannot be served (416), in Go's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeError {
    /// Malformed: Go's "invalid range".
    Invalid,
    /// Every range starts past the end: Go's "invalid range: failed to
    /// overlap", with `Content-Range: bytes */SIZE`.
    NoOverlap,
}

/// Parses `Range` as Go's `net/http` does for `ServeContent`: one range
/// is `Some([start, end))`; several (which Go sends as multipart) or ranges
/// larger in sum than the file give `None`, the whole body, as RFC 9110
/// allows.
pub(crate) fn parse_range(
    value: &HeaderValue,
    size: u64,
) -> Result<Option<(u64, u64)>, RangeError> {
    let s = value.to_str().map_err(|_| RangeError::Invalid)?;
    if s.is_empty() {
        // Go serves an empty Range as if there were none.
        return Ok(None);
    }
    let spec = s.strip_prefix("bytes=").ok_or(RangeError::Invalid)?;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut no_overlap = false;
    for ra in spec.split(',') {
        let ra = ra.trim_matches([' ', '\t']);
        if ra.is_empty() {
            continue;
        }
        let (a, b) = ra.split_once('-').ok_or(RangeError::Invalid)?;
        let (a, b) = (a.trim_matches([' ', '\t']), b.trim_matches([' ', '\t']));
        if a.is_empty() {
            // Suffix: the last N bytes.
            if b.is_empty() || b.starts_with('-') {
                return Err(RangeError::Invalid);
            }
            let n = parse_go_int(b)
                .filter(|n| *n >= 0)
                .ok_or(RangeError::Invalid)? as u64;
            ranges.push((size - n.min(size), size));
            continue;
        }
        let start = parse_go_int(a)
            .filter(|n| *n >= 0)
            .ok_or(RangeError::Invalid)? as u64;
        if start >= size {
            // Go notes it and goes on: another range may still overlap.
            no_overlap = true;
            continue;
        }
        let end = if b.is_empty() {
            size
        } else {
            let last = parse_go_int(b).ok_or(RangeError::Invalid)?;
            if last < start as i64 {
                return Err(RangeError::Invalid);
            }
            (last as u64).saturating_add(1).min(size)
        };
        ranges.push((start, end));
    }
    if no_overlap && ranges.is_empty() {
        return Err(RangeError::NoOverlap);
    }
    let sum: u64 = ranges.iter().map(|(a, b)| b - a).sum();
    Ok(match ranges.as_slice() {
        [one] if sum <= size => Some(*one),
        _ => None,
    })
}

/// How long a `waitsizenot` long-poll waits before 304: Go's 55 s.
pub const LONG_POLL: Duration = Duration::from_secs(55);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |s: &str, size| parse_range(&HeaderValue::from_str(s).expect("header"), size);
        assert_eq!(r("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(r("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(r("bytes=90-200", 100), Ok(Some((90, 100))));
        assert_eq!(r("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(r("bytes=-1000", 100), Ok(Some((0, 100))));
        assert_eq!(r("bytes= 2 - 3 ", 100), Ok(Some((2, 4))));
        assert_eq!(r("bytes=-0", 100), Ok(Some((100, 100))));
        // Past the end: no overlap, unless another range overlaps.
        assert_eq!(r("bytes=100-", 100), Err(RangeError::NoOverlap));
        assert_eq!(r("bytes=100-,5-6", 100), Ok(Some((5, 7))));
        // Malformed, as Go's parseRange refuses it.
        assert_eq!(r("bytes=5-4", 100), Err(RangeError::Invalid));
        assert_eq!(r("bytes=x-4", 100), Err(RangeError::Invalid));
        assert_eq!(r("bytes=-", 100), Err(RangeError::Invalid));
        assert_eq!(r("bytes=--5", 100), Err(RangeError::Invalid));
        assert_eq!(r("bytes=5", 100), Err(RangeError::Invalid));
        assert_eq!(r("items=0-1", 100), Err(RangeError::Invalid));
        assert_eq!(r("", 100), Ok(None));
        // Several ranges (Go's multipart) or more than the file: the whole.
        assert_eq!(r("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(r("bytes=0-99,0-99", 100), Ok(None));
    }

    #[test]
    fn go_int_parsing_matches_atoi() {
        assert_eq!(parse_go_int("12"), Some(12));
        assert_eq!(parse_go_int("+3"), Some(3));
        assert_eq!(parse_go_int("-1"), Some(-1));
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("1x"), None);
        assert_eq!(parse_go_int(" 1"), None);
    }
}

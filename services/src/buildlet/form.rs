//! Go's form values: the `application/x-www-form-urlencoded` pairs of a
//! body, then those of the query, in the order Go's `r.Form` holds them.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header;
use http::request::Parts;

use super::MAX_FORM;
use crate::pubsubhelper::plain;

/// Decoded name-value pairs, in order.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// The query's pairs only (the file endpoints' parameters; their body is
    /// data).
    pub(crate) fn query(parts: &Parts) -> Form {
        let mut form = Form::default();
        if let Some(q) = parts.uri.query() {
            form.extend(q);
        }
        form
    }

    /// Go's `ParseForm`: the body's pairs when it is form-encoded (at most
    /// [`MAX_FORM`] bytes), then the query's. An over-long or unreadable
    /// body is answered 400.
    pub(crate) async fn read(parts: &Parts, body: Body) -> Result<Form, Response> {
        let mut form = Form::default();
        let urlencoded = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if urlencoded {
            let bytes = axum::body::to_bytes(body, MAX_FORM)
                .await
                .map_err(|e| plain(StatusCode::BAD_REQUEST, &format!("reading the form: {e}")))?;
            form.extend(&String::from_utf8_lossy(&bytes));
        }
        if let Some(q) = parts.uri.query() {
            form.extend(q);
        }
        Ok(form)
    }

    /// Go's `FormValue`: the first value of `key`, or `""`.
    pub(crate) fn value(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn values(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Appends the pairs of `encoded`. A pair that does not decode is
    /// skipped, as Go's `ParseQuery` skips it.
    pub(crate) fn extend(&mut self, encoded: &str) {
        for pair in encoded.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let (Some(k), Some(v)) = (decode(k), decode(v)) {
                self.pairs.push((k, v));
            }
        }
    }
}

/// Go's `strconv.ParseBool`; anything it refuses is false (as Go's
/// handlers ignore the error).
pub(crate) fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// One form component (see [`crate::form::decode_component`]).
fn decode(s: &str) -> Option<String> {
    crate::form::decode_component(s)
}

//! Host keys, and the key check every route but `/` and `/healthz` sits
//! behind.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use http::StatusCode;
use http::header::{self, HeaderMap};
use sha2::{Digest as _, Sha256};

use super::Buildlet;
use super::body::drain;
use crate::pubsubhelper::plain;

/// The key a buildlet of `host_type` presents: the lowercase hex
/// HMAC-SHA256 of the host type's name under the master key.
///
/// Go derives its builder keys the same way with HMAC-MD5
/// (`hex(HMAC-MD5(master, name))`); SHA-256 is used here because MD5 has no
/// place in new code and this crate already builds SHA-256. The master key
/// stays with the coordinator; each machine holds only its host type's key,
/// so a leaked machine key is good for that host type alone (spec §9).
pub fn host_key(master_key: &[u8], host_type: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(master_key).expect("HMAC takes keys of any length");
    mac.update(host_type.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(tag.len() * 2);
    for b in tag {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The middleware: `/` and `/healthz` pass; anything else needs the key,
/// or is answered 403 `invalid password` (Go's text) and counted.
pub(crate) async fn require_key(State(b): State<Buildlet>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/" || path == "/healthz" {
        return next.run(req).await;
    }
    let presented = presented_key(req.headers());
    if presented.is_some_and(|key| keys_match(&key, b.key().expose().as_bytes())) {
        return next.run(req).await;
    }
    b.metrics().auth_refused.fetch_add(1, Ordering::Relaxed);
    tracing::info!(path, "refused a request without the buildlet key");
    // Read (a bounded part of) what was sent, so the client sees the 403
    // rather than a reset connection.
    drain(req.into_body()).await;
    plain(StatusCode::FORBIDDEN, "invalid password")
}

/// The key a request presents: the Basic password, or the Bearer token.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = decode_base64(rest)?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.as_bytes().to_vec())
    } else {
        None
    }
}

/// Compares in time independent of where the two differ and of their
/// lengths: both sides are hashed to 32 bytes first, then every byte is
/// compared.
pub fn keys_match(given: &[u8], key: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(key);
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Standard base64 (RFC 4648 §4) with padding: how a client encodes Basic
/// credentials (the coordinator's posts to Gerrit).
pub(crate) fn encode_base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (RFC 4648 §4), padding optional, as Go's clients encode
/// Basic credentials. `None` for anything else.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

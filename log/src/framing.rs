//! maintner's record framing (`reclog`), byte for byte.
//!
//! A segment is a concatenation of records `REC@<hex offset>+<hex len>=<payload>`
//! with no padding and no footer. The offset is the position of the record's
//! `R` within its own segment (restarting at 0 in every segment), written as
//! lowercase hex without leading zeros; the length is the payload's. A header
//! is at most 40 bytes. The parser accepts what Go's reader accepts (uppercase
//! hex, leading zeros) except a leading `-`, which no writer emits, and
//! reports Go's error texts with their offsets.
//!
//! Where Go's reader only says `EOF`, `unexpected EOF` or `bufio: buffer
//! full` (a segment ending inside a header, 40 or more bytes without `=`),
//! this parser says what it saw: an incomplete header (a value, since at the
//! end of a growing segment it is a torn tail), `truncated header at offset
//! N`, or `malformed overlong header`.
//!
//! This module never does IO: it encodes into and parses from byte slices.

use std::fmt;

use crate::quote::GoQuoted;

/// The longest header Go's reader accepts, `=` included.
pub const MAX_HEADER_LEN: usize = 40;

const PREFIX: &[u8] = b"REC@";

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    encode_header(out, offset, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends a record header (`REC@<offset>+<len>=`) to `out`.
pub fn encode_header(out: &mut Vec<u8>, offset: u64, payload_len: u64) {
    out.extend_from_slice(PREFIX);
    push_hex(out, offset);
    out.push(b'+');
    push_hex(out, payload_len);
    out.push(b'=');
}

/// The framed size of a record with this offset and payload length.
pub fn record_len(offset: u64, payload_len: u64) -> u64 {
    (PREFIX.len() + hex_digits(offset) + 1 + hex_digits(payload_len) + 1) as u64 + payload_len
}

fn hex_digits(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(4)
    }
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = hex_digits(v);
    for i in (0..n).rev() {
        out.push(DIGITS[((v >> (i * 4)) & 0xf) as usize]);
    }
}

/// What the bytes at the front of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole record: the header, then `payload_len` bytes of payload.
    Record {
        /// Bytes of header, `=` included.
        header_len: usize,
        /// Bytes of payload.
        payload_len: usize,
    },
    /// The buffer ends inside a record. `needed` is the record's whole framed
    /// length once its header is complete; `None` while the header itself is
    /// cut short. At the end of a segment this is a torn tail, not corruption.
    Incomplete {
        /// Total bytes the record needs, when known.
        needed: Option<u64>,
    },
}

/// Parses the record at the front of `buf`, which sits at `offset` in its
/// segment. An empty buffer is `Incomplete { needed: None }`.
pub fn parse(buf: &[u8], offset: u64) -> Result<Frame, FrameError> {
    if let Some(frame) = parse_well_formed(buf, offset) {
        return Ok(frame);
    }
    parse_general(buf, offset)
}

/// The hot path: a whole, lowercase, correctly placed header in one pass.
/// Returns `None` for anything else, which the general parser then handles
/// (and explains).
#[inline]
fn parse_well_formed(buf: &[u8], offset: u64) -> Option<Frame> {
    let rest = buf.strip_prefix(PREFIX)?;
    let (found, used_off) = lower_hex_prefix(rest)?;
    let rest = &rest[used_off..];
    if found != offset || rest.first() != Some(&b'+') {
        return None;
    }
    let (payload_len, used_len) = lower_hex_prefix(&rest[1..])?;
    if rest.get(1 + used_len) != Some(&b'=') {
        return None;
    }
    let header_len = PREFIX.len() + used_off + 1 + used_len + 1;
    if header_len > MAX_HEADER_LEN || payload_len > i64::MAX as u64 {
        return None;
    }
    let needed = header_len as u64 + payload_len;
    if (buf.len() as u64) < needed {
        return Some(Frame::Incomplete {
            needed: Some(needed),
        });
    }
    Some(Frame::Record {
        header_len,
        payload_len: payload_len as usize,
    })
}

/// Lowercase hex digit values; 0xff for every other byte.
const LOWER_HEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Parses 1 to 16 lowercase hex digits; returns the value and digits used.
#[inline]
fn lower_hex_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    while n < bytes.len().min(16) {
        let nibble = LOWER_HEX[bytes[n] as usize];
        if nibble == 0xff {
            break;
        }
        v = (v << 4) | u64::from(nibble);
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// The full reader, with every error case and Go's texts.
fn parse_general(buf: &[u8], offset: u64) -> Result<Frame, FrameError> {
    let err = |kind| Err(FrameError { offset, kind });
    let window = &buf[..buf.len().min(MAX_HEADER_LEN)];
    let Some(eq) = window.iter().position(|&b| b == b'=') else {
        if buf.len() >= MAX_HEADER_LEN {
            return err(FrameErrorKind::OverlongHeader {
                start: window.to_vec(),
            });
        }
        if is_header_prefix(buf) {
            return Ok(Frame::Incomplete { needed: None });
        }
        return err(FrameErrorKind::MalformedHeader {
            header: buf.to_vec(),
        });
    };
    let header = &buf[..=eq];
    // One pass finds the single `+` (or proves there is not exactly one).
    let mut plus = None;
    let mut plus_count = 0;
    for (i, &b) in header.iter().enumerate() {
        if b == b'+' {
            plus_count += 1;
            plus = Some(i);
        }
    }
    let (Some(plus), true) = (plus, plus_count == 1 && header.starts_with(PREFIX)) else {
        return err(FrameErrorKind::MalformedHeader {
            header: header.to_vec(),
        });
    };
    let Some(found) = parse_hex(&header[PREFIX.len()..plus]) else {
        return err(FrameErrorKind::MalformedOffset {
            header: header.to_vec(),
        });
    };
    if found != offset {
        return err(FrameErrorKind::OffsetMismatch {
            header: header.to_vec(),
            found,
        });
    }
    let Some(payload_len) = parse_hex(&header[plus + 1..eq]) else {
        return err(FrameErrorKind::BadSize {
            header: header.to_vec(),
        });
    };
    let needed = header.len() as u64 + payload_len;
    if (buf.len() as u64) < needed {
        return Ok(Frame::Incomplete {
            needed: Some(needed),
        });
    }
    Ok(Frame::Record {
        header_len: header.len(),
        payload_len: payload_len as usize,
    })
}

/// Parses hex as Go's `strconv.ParseInt(s, 16, 64)` does, without a sign:
/// at least one digit, either case, leading zeros allowed, at most
/// `i64::MAX`.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(u64::from(nibble))?;
    }
    (v <= i64::MAX as u64).then_some(v)
}

/// Whether `buf` (which holds no `=`) could still grow into a valid header:
/// a prefix of `REC@`, then hex digits, at most one `+`, hex digits.
fn is_header_prefix(buf: &[u8]) -> bool {
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return false;
    }
    let rest = &buf[n..];
    let mut plus_seen = false;
    for &b in rest {
        match b {
            b'+' if !plus_seen => plus_seen = true,
            b if b.is_ascii_hexdigit() => {}
            _ => return false,
        }
    }
    true
}

/// A record that cannot be framed. `Display` gives Go's reclog error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FrameError {
    /// Offset of the bad record within its segment.
    pub offset: u64,
    /// What is wrong with it.
    pub kind: FrameErrorKind,
}

/// The ways a record can be malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// No `=` within the first 40 bytes.
    OverlongHeader {
        /// The first 40 bytes.
        start: Vec<u8>,
    },
    /// Missing `REC@` prefix, `=` or a single `+`, or bytes that can never
    /// become a header.
    MalformedHeader {
        /// The header as read.
        header: Vec<u8>,
    },
    /// The offset field is not hex.
    MalformedOffset {
        /// The header as read.
        header: Vec<u8>,
    },
    /// The offset field does not match where the record sits.
    OffsetMismatch {
        /// The header as read.
        header: Vec<u8>,
        /// The offset it claims.
        found: u64,
    },
    /// The length field is not hex.
    BadSize {
        /// The header as read.
        header: Vec<u8>,
    },
    /// The segment ends inside a record that should be complete: a header cut
    /// short (`payload_len: None`) or a payload shorter than its length.
    Truncated {
        /// The declared payload length, once the header is whole.
        payload_len: Option<u64>,
        /// Payload bytes present.
        payload_present: u64,
    },
}

impl FrameError {
    fn describe(&self) -> String {
        let off = self.offset;
        match &self.kind {
            FrameErrorKind::OverlongHeader { start } => {
                format!(
                    "malformed overlong header {} at offset {off}",
                    GoQuoted(start)
                )
            }
            FrameErrorKind::MalformedHeader { header } => {
                format!("malformed header {} at offset {off}", GoQuoted(header))
            }
            FrameErrorKind::MalformedOffset { header } => format!(
                "malformed header {} (malformed offset) at offset {off}",
                GoQuoted(header)
            ),
            FrameErrorKind::OffsetMismatch { header, found } => format!(
                "malformed header {} with offset {found} doesn't match expected offset {off}",
                GoQuoted(header)
            ),
            FrameErrorKind::BadSize { header } => format!(
                "malformed header {} (bad size) at offset {off}",
                GoQuoted(header)
            ),
            FrameErrorKind::Truncated {
                payload_len: None, ..
            } => format!("truncated header at offset {off}: unexpected EOF"),
            FrameErrorKind::Truncated {
                payload_len: Some(_),
                payload_present,
            } => {
                let eof = if *payload_present == 0 {
                    "EOF"
                } else {
                    "unexpected EOF"
                };
                format!("truncated record at offset {off}: {eof}")
            }
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Record {
                header_len,
                payload_len,
            } => write!(
                f,
                "record (header {header_len} bytes, payload {payload_len} bytes)"
            ),
            Frame::Incomplete { needed: Some(n) } => write!(f, "incomplete record of {n} bytes"),
            Frame::Incomplete { needed: None } => write!(f, "incomplete header"),
        }
    }
}

#[cfg(test)]
mod tests;

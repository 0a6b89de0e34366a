//! Walking one segment file's records: for recovery, index rebuilds,
//! verification, repair and import.
//!
//! The scanner reads the file in large chunks and hands each payload to a
//! callback while it is in the buffer. It reports how the file ends: cleanly,
//! inside a record (a torn tail when it is the growing segment), or at a
//! malformed record. It never writes.

use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::Path;

use sha2::{Digest as _, Sha224};

use crate::framing::{self, Frame, FrameError, FrameErrorKind};

const CHUNK: usize = 4 << 20;

/// How a scanned file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a whole record.
    Clean,
    /// The file ends inside the record at `offset`: a torn tail if this is
    /// the growing segment, a truncated record otherwise.
    Incomplete {
        /// Where the incomplete record starts.
        offset: u64,
        /// Its whole framed length, once the header is complete.
        needed: Option<u64>,
        /// Bytes present from `offset` to the end of the file.
        present: u64,
        /// The header's length, when it is whole.
        header_len: Option<u64>,
        /// Whether all of those bytes are zero (a file extended by a crash
        /// before its data reached the disk).
        all_zero: bool,
    },
    /// The record at `error.offset` is malformed.
    Corrupt {
        /// What is wrong.
        error: FrameError,
        /// Whether every byte from the bad record to the end is zero.
        rest_all_zero: bool,
    },
    /// The callback asked to stop after the record ending at this offset.
    Stopped,
}

impl ScanEnd {
    /// The frame error a reader would report for this end, treating an
    /// incomplete record as truncation (as it is in a sealed segment).
    pub fn as_frame_error(&self) -> Option<FrameError> {
        match self {
            ScanEnd::Clean | ScanEnd::Stopped => None,
            ScanEnd::Corrupt { error, .. } => Some(error.clone()),
            ScanEnd::Incomplete {
                offset,
                needed,
                present,
                header_len,
                ..
            } => Some(FrameError {
                offset: *offset,
                kind: FrameErrorKind::Truncated {
                    payload_len: needed.zip(*header_len).map(|(n, h)| n - h),
                    payload_present: header_len.map_or(0, |h| present.saturating_sub(h)),
                },
            }),
        }
    }

    /// Whether the bytes after the last whole record can be cut as a torn
    /// tail: an incomplete record, or nothing but zeros.
    pub fn is_torn_tail(&self) -> bool {
        match self {
            ScanEnd::Incomplete { .. } => true,
            ScanEnd::Corrupt { rest_all_zero, .. } => *rest_all_zero,
            ScanEnd::Clean | ScanEnd::Stopped => false,
        }
    }
}

/// The result of scanning one file.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Whole records seen.
    pub records: u64,
    /// Bytes covered by those records (the offset just past the last one).
    pub valid_len: u64,
    /// The file's length as read.
    pub file_len: u64,
    /// How the file ends.
    pub end: ScanEnd,
    /// SHA-224 of the whole file, when asked for.
    pub sha224: Option<crate::segment::Sha224Digest>,
}

/// Options for [`scan_file`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Hash every byte of the file.
    pub hash_whole_file: bool,
    /// Stop reading at this many bytes (the rest of the file is ignored).
    pub limit: Option<u64>,
}

/// Scans `path` from offset 0, calling `on_record(offset, payload)` for each
/// whole record.
pub fn scan_file(
    path: &Path,
    opts: ScanOptions,
    on_record: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> io::Result<Scan> {
    let file = File::open(path)?;
    let limit = opts.limit.unwrap_or(u64::MAX);
    scan_reader(file.take(limit), opts.hash_whole_file, on_record)
}

/// Scans records from any reader positioned at segment offset 0.
pub fn scan_reader(
    mut src: impl Read,
    hash: bool,
    mut on_record: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> io::Result<Scan> {
    let mut hasher = hash.then(Sha224::new);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    // `buf[start..]` is unparsed; `buf[0]` sits at file offset `buf_offset`.
    let mut start = 0usize;
    let mut buf_offset = 0u64;
    let mut records = 0u64;
    let mut eof = false;
    let end = loop {
        let offset = buf_offset + start as u64;
        match framing::parse(&buf[start..], offset) {
            Ok(Frame::Record {
                header_len,
                payload_len,
            }) => {
                let payload = &buf[start + header_len..start + header_len + payload_len];
                records += 1;
                start += header_len + payload_len;
                if on_record(offset, payload).is_break() {
                    break ScanEnd::Stopped;
                }
            }
            Ok(Frame::Incomplete { needed }) => {
                if eof {
                    let rest = &buf[start..];
                    if rest.is_empty() {
                        break ScanEnd::Clean;
                    }
                    let header_len = needed
                        .and_then(|_| rest.iter().position(|&b| b == b'=').map(|i| i as u64 + 1));
                    break ScanEnd::Incomplete {
                        offset,
                        needed,
                        header_len,
                        present: rest.len() as u64,
                        all_zero: rest.iter().all(|&b| b == 0),
                    };
                }
                // Keep the partial record and read another chunk. The length
                // in a header is not trusted to size the buffer: a damaged
                // one could claim exabytes. Large records take a few chunks.
                let _ = needed;
                buf.drain(..start);
                buf_offset += start as u64;
                start = 0;
                eof = fill(&mut src, &mut buf, CHUNK, hasher.as_mut())?;
            }
            Err(error) => {
                let mut rest_all_zero = buf[start..].iter().all(|&b| b == 0);
                // Read (and hash) the remainder so the caller learns the
                // file's length and whether the damage is only zeros.
                buf_offset += buf.len() as u64;
                buf.clear();
                while !eof {
                    eof = fill(&mut src, &mut buf, CHUNK, hasher.as_mut())?;
                    rest_all_zero &= buf.iter().all(|&b| b == 0);
                    buf_offset += buf.len() as u64;
                    buf.clear();
                }
                let valid_len = error.offset;
                return Ok(Scan {
                    records,
                    valid_len,
                    file_len: buf_offset,
                    end: ScanEnd::Corrupt {
                        error,
                        rest_all_zero,
                    },
                    sha224: hasher.map(crate::segment::Sha224Digest::finish),
                });
            }
        }
    };
    let valid_len = buf_offset + start as u64;
    let mut file_len = buf_offset + buf.len() as u64;
    if end == ScanEnd::Stopped {
        // Drain for the hash and the length.
        buf.clear();
        while !eof {
            eof = fill(&mut src, &mut buf, CHUNK, hasher.as_mut())?;
            file_len += buf.len() as u64;
            buf.clear();
        }
    }
    Ok(Scan {
        records,
        valid_len,
        file_len,
        end,
        sha224: hasher.map(crate::segment::Sha224Digest::finish),
    })
}

/// Appends up to `want` bytes from `src` to `buf`; returns whether the
/// source is exhausted.
fn fill(
    src: &mut impl Read,
    buf: &mut Vec<u8>,
    want: usize,
    mut hasher: Option<&mut Sha224>,
) -> io::Result<bool> {
    let old = buf.len();
    buf.resize(old + want, 0);
    let mut filled = old;
    let mut eof = false;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    if let Some(h) = hasher.as_mut() {
        h.update(&buf[old..]);
    }
    Ok(eof)
}

//! Serving primitives: the segment index that maintner's `/logs` protocol
//! lists, and reading a segment's durable bytes for download.
//!
//! The index names every segment with its size and the SHA-224 of those
//! bytes. A sealed segment's hash is in its name; the growing one's is kept
//! running ([`TailHasher`]), so listing the index hashes only the bytes
//! appended since the last listing, never the whole tail again.
//!
//! This module never speaks HTTP: it returns values, and the server in
//! `almanac-services` renders them in Go's JSON and headers.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::Mutex;

use sha2::{Digest as _, Sha224};

use crate::read;
use crate::segment::{SegmentState, Sha224Digest};
use crate::table::{SegmentMeta, SegmentTable};

/// One segment as the `/logs` index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Segment number.
    pub number: u32,
    /// Durable bytes.
    pub size: u64,
    /// SHA-224 of those bytes.
    pub sha224: Sha224Digest,
    /// Whether the segment is sealed (immutable).
    pub sealed: bool,
}

/// The running SHA-224 of the growing segment's durable prefix.
#[derive(Debug, Default)]
pub struct TailHasher {
    state: Mutex<Option<TailState>>,
}

#[derive(Debug, Clone)]
struct TailState {
    number: u32,
    hashed: u64,
    hasher: Sha224,
}

/// Bytes read per `pread` while hashing or serving.
const READ_CHUNK: usize = 1 << 20;

impl TailHasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> TailHasher {
        TailHasher::default()
    }

    /// The index of `table`: every sealed segment, then the growing one if
    /// it holds any bytes (Go lists an empty growing segment not at all).
    pub fn index(
        &self,
        dir: &std::path::Path,
        table: &SegmentTable,
    ) -> Result<Vec<IndexEntry>, read::Error> {
        let mut out = Vec::with_capacity(table.len());
        for seg in table.segments() {
            match seg.state {
                SegmentState::Sealed(sha) => out.push(IndexEntry {
                    number: seg.number,
                    size: seg.len,
                    sha224: sha,
                    sealed: true,
                }),
                SegmentState::Growing if seg.len == 0 => {}
                SegmentState::Growing => out.push(IndexEntry {
                    number: seg.number,
                    size: seg.len,
                    sha224: self.hash_tail(dir, seg)?,
                    sealed: false,
                }),
            }
        }
        Ok(out)
    }

    fn hash_tail(
        &self,
        dir: &std::path::Path,
        seg: &SegmentMeta,
    ) -> Result<Sha224Digest, read::Error> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = match guard.take() {
            Some(s) if s.number == seg.number && s.hashed <= seg.len => s,
            _ => TailState {
                number: seg.number,
                hashed: 0,
                hasher: Sha224::new(),
            },
        };
        if state.hashed < seg.len {
            let file = read::open_segment(dir, seg)?;
            let io_err = |source| read::Error::Io {
                path: seg.path.clone(),
                source,
            };
            let mut buf = vec![0u8; READ_CHUNK];
            while state.hashed < seg.len {
                let want = (seg.len - state.hashed).min(READ_CHUNK as u64) as usize;
                let n = read_full_at(&file, &mut buf[..want], state.hashed).map_err(io_err)?;
                state.hasher.update(&buf[..n]);
                state.hashed += n as u64;
            }
        }
        let digest = Sha224Digest::finish(state.hasher.clone());
        *guard = Some(state);
        Ok(digest)
    }
}

/// A segment's durable bytes, opened for serving: reads never go past the
/// size the table gave, even while the writer appends after it.
#[derive(Debug)]
pub struct SegmentBytes {
    file: File,
    /// Durable size.
    pub size: u64,
    /// The segment.
    pub meta: SegmentMeta,
}

impl SegmentBytes {
    /// Opens segment `number` of `table`, or `None` if the table has none.
    pub fn open(
        dir: &std::path::Path,
        table: &SegmentTable,
        number: u32,
    ) -> Result<Option<SegmentBytes>, read::Error> {
        let Some(meta) = table.segments().find(|s| s.number == number).cloned() else {
            return Ok(None);
        };
        let file = read::open_segment(dir, &meta)?;
        Ok(Some(SegmentBytes {
            file,
            size: meta.len,
            meta,
        }))
    }

    /// Reads up to `buf.len()` bytes at `offset`, never past the durable
    /// size; returns how many were read (0 at the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let want = (self.size - offset).min(buf.len() as u64) as usize;
        let n = read_full_at(&self.file, &mut buf[..want], offset)?;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "segment {:04} is shorter than its durable size {}",
                    self.meta.number, self.size
                ),
            ));
        }
        Ok(n)
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, Options};
    use bytes::Bytes;

    #[test]
    fn tail_hash_is_incremental_and_matches_a_full_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            segment_target_len: 4096,
            use_index: false,
            ..Options::default()
        };
        let (log, _) = Log::open(dir.path(), opts).expect("open");
        let hasher = TailHasher::new();
        for round in 0..40u32 {
            let rec = Bytes::from(vec![b'x'; 100 + round as usize * 7]);
            log.append_blocking(vec![rec]).expect("append");
            let table = log.table();
            let index = hasher.index(dir.path(), &table).expect("index");
            for (entry, seg) in index.iter().zip(table.segments()) {
                let all = std::fs::read(read_path(dir.path(), seg)).expect("read");
                assert_eq!(entry.size, seg.len);
                assert_eq!(entry.sha224, Sha224Digest::of(&all[..seg.len as usize]));
            }
        }
        assert!(log.table().sealed().len() >= 2, "the test must cross seals");
    }

    fn read_path(dir: &std::path::Path, seg: &SegmentMeta) -> std::path::PathBuf {
        if seg.path.exists() {
            seg.path.clone()
        } else {
            dir.join(seg.file_name())
        }
    }
}

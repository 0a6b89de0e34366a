//! Segment files and the layout of a log directory, named as Go's godata
//! cache names them.
//!
//! A sealed segment is `NNNN.<sha224>.mutlog`, the hash covering its whole
//! content; the one being appended to is `NNNN.growing.mutlog`. Numbers start
//! at 0 and have no gaps. A growing file whose number also has a sealed file
//! is stale (godata leaves these behind) and is ignored. Other files in the
//! directory (the lock, the index, Go's `tempseg*` files) are not segments.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha224};

/// The size a segment is sealed at: a record that would take a non-empty
/// segment past this starts the next one.
pub const SEGMENT_TARGET_LEN: u64 = 16 << 20;

/// A SHA-224 digest, shown as 56 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha224Digest(pub [u8; 28]);

impl Sha224Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha224Digest {
        Sha224Digest(Sha224::digest(bytes).into())
    }

    /// Finishes a running hasher.
    pub fn finish(hasher: Sha224) -> Sha224Digest {
        Sha224Digest(hasher.finalize().into())
    }

    /// Parses 56 lowercase hex digits.
    pub fn parse(hex: &str) -> Option<Sha224Digest> {
        if hex.len() != 56 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 28];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Sha224Digest(out))
    }
}

impl fmt::Display for Sha224Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha224Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha224({self})")
    }
}

/// Whether a segment is sealed (immutable, hash in its name) or growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Immutable; the name carries the SHA-224 of the content.
    Sealed(Sha224Digest),
    /// The tail, appended to in place.
    Growing,
}

/// A segment's file name, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName {
    /// Segment number, from 0.
    pub number: u32,
    /// Sealed or growing.
    pub state: SegmentState,
}

impl SegmentName {
    /// Parses `NNNN.<sha224>.mutlog` or `NNNN.growing.mutlog` (four or more
    /// digits).
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(".mutlog")?;
        let (digits, middle) = stem.split_once('.')?;
        if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u32 = digits.parse().ok()?;
        // Only Go's spelling (`%04d`): "00001" and "0001" must not both be 1.
        if format!("{number:04}") != digits {
            return None;
        }
        let state = if middle == "growing" {
            SegmentState::Growing
        } else {
            SegmentState::Sealed(Sha224Digest::parse(middle)?)
        };
        Some(SegmentName { number, state })
    }

    /// The file name, as Go writes it (`%04d`).
    pub fn file_name(&self) -> String {
        match self.state {
            SegmentState::Sealed(sha) => format!("{:04}.{sha}.mutlog", self.number),
            SegmentState::Growing => format!("{:04}.growing.mutlog", self.number),
        }
    }
}

/// One segment file found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its parsed name.
    pub name: SegmentName,
    /// Full path.
    pub path: PathBuf,
    /// Size in bytes when listed.
    pub len: u64,
}

/// The segments of a directory, in order, with what did not fit.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Segments numbered 0, 1, 2, ... with no gap.
    pub segments: Vec<SegmentFile>,
    /// Growing files superseded by a sealed file of the same number.
    pub stale_growing: Vec<PathBuf>,
    /// Go disk-logger files (`maintner-*.mutlog`), which need importing.
    pub disk_logger_files: Vec<PathBuf>,
}

/// Why a directory's segment files do not form a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A number below the highest has no file.
    #[error("segment number gap: segment {missing:04} is missing (segments go up to {highest:04})")]
    Gap {
        /// The first missing number.
        missing: u32,
        /// The highest number present.
        highest: u32,
    },
    /// Two sealed files share a number.
    #[error("two sealed segments are numbered {number:04}: {first} and {second}")]
    DuplicateSealed {
        /// The number.
        number: u32,
        /// One file name.
        first: String,
        /// The other.
        second: String,
    },
    /// A growing segment that is not the last one.
    #[error("growing segment {number:04} is followed by later segments")]
    GrowingNotLast {
        /// Its number.
        number: u32,
    },
}

impl LayoutError {
    /// The segment number the problem is at.
    pub fn segment(&self) -> u32 {
        match self {
            LayoutError::Gap { missing, .. } => *missing,
            LayoutError::DuplicateSealed { number, .. }
            | LayoutError::GrowingNotLast { number } => *number,
        }
    }
}

/// Every file in `dir` that parses as a segment name, ordered by number
/// (sealed before growing for the same number), plus Go disk-logger files.
pub fn list_files(dir: &Path) -> std::io::Result<(Vec<SegmentFile>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut disk_logger_files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if file_name.starts_with("maintner-") && file_name.ends_with(".mutlog") {
            disk_logger_files.push(entry.path());
            continue;
        }
        let Some(name) = SegmentName::parse(file_name) else {
            continue;
        };
        files.push(SegmentFile {
            name,
            path: entry.path(),
            len: meta.len(),
        });
    }
    disk_logger_files.sort();
    files.sort_by_key(|f| (f.name.number, f.name.state == SegmentState::Growing));
    Ok((files, disk_logger_files))
}

/// Lists `dir` and orders its segments, without reading them.
pub fn scan_dir(dir: &Path) -> std::io::Result<Result<Layout, LayoutError>> {
    let (files, disk_logger_files) = list_files(dir)?;
    Ok(order(files).map(|(segments, stale_growing)| Layout {
        segments,
        stale_growing,
        disk_logger_files,
    }))
}

/// [`scan_dir`] for readers of caches written by Go's netsource client.
///
/// Go's client stores a segment under its sealed name only when the index
/// lists it on `https://storage.googleapis.com/`; from any other server
/// (almanac's maintnerd included) every segment is kept as
/// `NNNN.growing.mutlog`. A growing file followed by later segments is then
/// complete, so here it is taken as sealed, with its SHA-224 computed from
/// its content (a writer's directory never looks like this, and
/// `Log::open` still refuses it).
pub fn scan_dir_lenient(dir: &Path) -> std::io::Result<Result<Layout, LayoutError>> {
    let (mut files, disk_logger_files) = list_files(dir)?;
    let last = files.iter().map(|f| f.name.number).max();
    let sealed_numbers: std::collections::HashSet<u32> = files
        .iter()
        .filter(|f| matches!(f.name.state, SegmentState::Sealed(_)))
        .map(|f| f.name.number)
        .collect();
    for file in &mut files {
        let complete =
            Some(file.name.number) != last && !sealed_numbers.contains(&file.name.number);
        if file.name.state == SegmentState::Growing && complete {
            let bytes = fs::read(&file.path)?;
            file.len = bytes.len() as u64;
            file.name.state = SegmentState::Sealed(Sha224Digest::of(&bytes));
        }
    }
    Ok(order(files).map(|(segments, stale_growing)| Layout {
        segments,
        stale_growing,
        disk_logger_files,
    }))
}

/// Orders listed files into a gapless sequence, setting aside stale growing
/// files.
fn order(files: Vec<SegmentFile>) -> Result<(Vec<SegmentFile>, Vec<PathBuf>), LayoutError> {
    let mut segments: Vec<SegmentFile> = Vec::with_capacity(files.len());
    let mut stale = Vec::new();
    for file in files {
        match segments.last() {
            Some(prev) if prev.name.number == file.name.number => {
                if file.name.state == SegmentState::Growing {
                    stale.push(file.path);
                    continue;
                }
                return Err(LayoutError::DuplicateSealed {
                    number: file.name.number,
                    first: prev.name.file_name(),
                    second: file.name.file_name(),
                });
            }
            _ => segments.push(file),
        }
    }
    let highest = segments.last().map_or(0, |f| f.name.number);
    for (i, f) in segments.iter().enumerate() {
        if f.name.number != i as u32 {
            return Err(LayoutError::Gap {
                missing: i as u32,
                highest,
            });
        }
        if f.name.state == SegmentState::Growing && i + 1 != segments.len() {
            return Err(LayoutError::GrowingNotLast {
                number: f.name.number,
            });
        }
    }
    Ok((segments, stale))
}

/// Creates a new file named `stem` (or `stem.1`, `stem.2`, ... if taken)
/// in `dir`, never overwriting anything.
pub fn create_unique_file(dir: &Path, stem: &str) -> std::io::Result<(fs::File, PathBuf)> {
    for n in 0u32.. {
        let path = if n == 0 {
            dir.join(stem)
        } else {
            dir.join(format!("{stem}.{n}"))
        };
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 suffixes run out only after four billion files")
}

/// Creates a new directory named `stem` (or `stem.1`, ... if taken) in
/// `parent`, and makes its entry durable.
pub fn create_unique_dir(parent: &Path, stem: &str) -> std::io::Result<PathBuf> {
    for n in 0u32.. {
        let path = if n == 0 {
            parent.join(stem)
        } else {
            parent.join(format!("{stem}.{n}"))
        };
        match fs::create_dir(&path) {
            Ok(()) => {
                sync_dir(parent)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 suffixes run out only after four billion directories")
}

/// Fsyncs a directory, making renames and new files in it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let sha = Sha224Digest::of(b"");
        assert_eq!(
            sha.to_string(),
            "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"
        );
        let sealed = SegmentName {
            number: 7,
            state: SegmentState::Sealed(sha),
        };
        assert_eq!(
            sealed.file_name(),
            "0007.d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f.mutlog"
        );
        assert_eq!(SegmentName::parse(&sealed.file_name()), Some(sealed));
        let growing = SegmentName {
            number: 12345,
            state: SegmentState::Growing,
        };
        assert_eq!(growing.file_name(), "12345.growing.mutlog");
        assert_eq!(SegmentName::parse("12345.growing.mutlog"), Some(growing));
        for bad in [
            "007.growing.mutlog",
            "0007.growing.mutlog.tmp",
            "0007.D14A028C2A3A2BC9476102BB288234C415A2B01F828EA62AC5B3E42F.mutlog",
            "0007.abc.mutlog",
            "00007.growing.mutlog",
            "tempseg123",
            "maintner-2017-01-01.mutlog",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }
}

//! Repair: cut the log at its first bad record so it can be appended to
//! again, keeping a copy of everything cut.
//!
//! Positions are byte offsets, so nothing after a bad record can keep its
//! position: repair truncates the segment holding the first problem at that
//! record, and moves every later segment file aside. The cut bytes and the
//! moved files go to `repair-<unix seconds>/` inside the log directory, so
//! nothing is lost and an operator can salvage by hand. A truncated sealed
//! segment becomes the growing one (its hash no longer matches). Repair
//! takes the writer lock, so it never runs beside a writer.
//!
//! What repair will not touch: a sealed segment whose framing and records
//! are fine but whose hash does not match (the damage cannot be located),
//! and two sealed files with one number (only a person can tell which is
//! right). It reports these instead.

use std::fs;
use std::io::{self, Seek as _, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;

use crate::lock::{DirLock, LockError};
use crate::scan::{self, ScanEnd, ScanOptions};
use crate::segment::{self, SegmentFile, SegmentName, SegmentState};

/// Where the log was cut, and where the cut data went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment cut.
    pub segment: u32,
    /// Where in it.
    pub offset: u64,
    /// Why.
    pub reason: String,
    /// The directory holding what was cut.
    pub backup_dir: PathBuf,
    /// Bytes removed from the log in all.
    pub bytes_cut: u64,
    /// Files moved or written into the backup directory.
    pub saved: Vec<PathBuf>,
}

/// What repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The cut made, if one was needed.
    pub cut: Option<Cut>,
    /// Problems repair leaves to a person.
    pub left_alone: Vec<String>,
}

/// Why repair could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A writer has the log open.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Finds the first problem in `dir` and cuts the log there.
pub fn repair(dir: &Path) -> Result<Report, Error> {
    let _lock = DirLock::acquire(dir)?;
    let (files, _) = segment::list_files(dir).map_err(io_err(dir))?;
    let mut report = Report::default();

    // Walk the files in order, stopping at the first cut point.
    let mut kept: Vec<&SegmentFile> = Vec::new();
    let mut cut_at: Option<(usize, u64, String)> = None;
    let mut idx = 0;
    while idx < files.len() {
        let file = &files[idx];
        let expected = kept.len() as u32;
        if let Some(prev) = kept.last()
            && prev.name.number == file.name.number
        {
            if file.name.state == SegmentState::Growing {
                // Stale growing file beside its sealed one: not part of the log.
                idx += 1;
                continue;
            }
            report.left_alone.push(format!(
                "two sealed segments are numbered {:04} ({} and {}); move the wrong one out of the directory",
                file.name.number,
                prev.name.file_name(),
                file.name.file_name()
            ));
            return Ok(report);
        }
        if file.name.number != expected {
            cut_at = Some((
                idx,
                0,
                format!("segment number gap: segment {expected:04} is missing"),
            ));
            break;
        }
        if let Some(prev) = kept.last()
            && prev.name.state == SegmentState::Growing
        {
            cut_at = Some((
                idx,
                0,
                format!("segment {:04} follows a growing segment", file.name.number),
            ));
            break;
        }
        if let Some((offset, reason)) = first_bad_record(file, &mut report)? {
            cut_at = Some((idx, offset, reason));
            break;
        }
        kept.push(file);
        idx += 1;
    }
    let Some((idx, offset, reason)) = cut_at else {
        return Ok(report);
    };

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let backup_dir =
        segment::create_unique_dir(dir, &format!("repair-{stamp}")).map_err(io_err(dir))?;
    let mut saved = Vec::new();
    let mut bytes_cut = 0u64;
    let first = &files[idx];
    // Everything after the cut leaves the log: the later files, including
    // any stale growing file (moved, so the rename below can never overwrite
    // one), and the cut segment itself when it is cut at its start.
    let mut leaving: Vec<&SegmentFile> = files[idx + 1..].iter().collect();
    if offset == 0 {
        leaving.insert(0, first);
    }
    // 1. Keep a durable copy of the cut bytes before anything is removed.
    if offset > 0 {
        let dest = backup_dir.join(format!("{}.from-{offset}", first.name.file_name()));
        copy_from(&first.path, offset, &dest)?;
        bytes_cut += first.len - offset;
        saved.push(dest);
        segment::sync_dir(&backup_dir).map_err(io_err(&backup_dir))?;
    }
    // 2. Move the later files aside (a rename: they are never in neither place).
    for file in leaving {
        let dest = backup_dir.join(file.name.file_name());
        fs::rename(&file.path, &dest).map_err(io_err(&dest))?;
        bytes_cut += file.len;
        saved.push(dest);
    }
    segment::sync_dir(&backup_dir).map_err(io_err(&backup_dir))?;
    segment::sync_dir(dir).map_err(io_err(dir))?;
    // 3. Cut the segment; a sealed one becomes the growing one, since its
    //    content no longer matches the hash in its name.
    if offset > 0 {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&first.path)
            .map_err(io_err(&first.path))?;
        file.set_len(offset).map_err(io_err(&first.path))?;
        file.sync_all().map_err(io_err(&first.path))?;
        if matches!(first.name.state, SegmentState::Sealed(_)) {
            let growing = dir.join(
                SegmentName {
                    number: first.name.number,
                    state: SegmentState::Growing,
                }
                .file_name(),
            );
            fs::rename(&first.path, &growing).map_err(io_err(&growing))?;
        }
        segment::sync_dir(dir).map_err(io_err(dir))?;
    }
    tracing::warn!(segment = first.name.number, offset, %reason, backup = %backup_dir.display(), "repaired log");
    report.cut = Some(Cut {
        segment: first.name.number,
        offset,
        reason,
        backup_dir,
        bytes_cut,
        saved,
    });
    Ok(report)
}

/// The offset and description of the first record in `file` that cannot
/// stay: malformed, truncated (a torn tail included) or undecodable.
fn first_bad_record(
    file: &SegmentFile,
    report: &mut Report,
) -> Result<Option<(u64, String)>, Error> {
    let mut undecodable = None;
    let scan = scan::scan_file(
        &file.path,
        ScanOptions {
            hash_whole_file: true,
            limit: None,
        },
        |offset, payload| match almanac_proto::pb::maintpb::Mutation::decode(payload) {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                undecodable = Some((
                    offset,
                    format!("record does not decode as maintpb.Mutation: {e}"),
                ));
                ControlFlow::Break(())
            }
        },
    )
    .map_err(io_err(&file.path))?;
    if let Some(bad) = undecodable {
        return Ok(Some(bad));
    }
    match &scan.end {
        ScanEnd::Clean | ScanEnd::Stopped => {
            if let (SegmentState::Sealed(named), Some(actual)) = (file.name.state, scan.sha224)
                && named != actual
            {
                report.left_alone.push(format!(
                    "segment {:04}: SHA-224 mismatch (name {named}, content {actual}) although every record reads and decodes; restore it from a replica or another cache",
                    file.name.number
                ));
            }
            Ok(None)
        }
        end => {
            let reason = if file.name.state == SegmentState::Growing && end.is_torn_tail() {
                format!("torn tail of {} bytes", scan.file_len - scan.valid_len)
            } else {
                end.as_frame_error()
                    .map_or_else(|| "malformed record".to_owned(), |e| e.to_string())
            };
            Ok(Some((scan.valid_len, reason)))
        }
    }
}

fn copy_from(src: &Path, offset: u64, dest: &Path) -> Result<(), Error> {
    let mut from = fs::File::open(src).map_err(io_err(src))?;
    from.seek(SeekFrom::Start(offset)).map_err(io_err(src))?;
    let mut to = fs::File::create(dest).map_err(io_err(dest))?;
    io::copy(&mut from, &mut to).map_err(io_err(dest))?;
    to.sync_all().map_err(io_err(dest))?;
    Ok(())
}

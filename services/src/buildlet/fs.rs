//! Paths under the work directory, and the file work behind the endpoints:
//! tarballs in and out, single files, listings, removal. Everything here
//! blocks; handlers run it on tokio's blocking pool.
//!
//! The one rule every function keeps: a path is resolved component by
//! component under the work directory, and a component that is a symbolic
//! link (or not a directory) stops it, so no request reaches outside.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use tar::EntryType;

use super::{MAX_TAR_ENTRIES, MAX_UNPACKED};

/// A clean path relative to the work directory, as its components. No
/// components is the directory itself (`.`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RelPath(Vec<String>);

impl RelPath {
    /// Go's `validRelPath`, with `..` refused as a component wherever it
    /// appears (Go looks for `../`): non-empty, no `\`, no leading `/`, no
    /// NUL. Empty and `.` components are dropped (`./a//b` is `a/b`).
    pub(crate) fn parse(s: &str) -> Result<RelPath, &'static str> {
        if s.is_empty() {
            return Err("empty");
        }
        if s.contains('\\') {
            return Err("contains a backslash");
        }
        if s.starts_with('/') {
            return Err("absolute");
        }
        if s.contains('\0') {
            return Err("contains a NUL byte");
        }
        let mut parts = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err("contains a .. component"),
                c => parts.push(c.to_owned()),
            }
        }
        Ok(RelPath(parts))
    }

    /// A `dir` parameter: empty is the work directory itself.
    pub(crate) fn parse_dir(s: &str) -> Result<RelPath, &'static str> {
        if s.is_empty() {
            Ok(RelPath::default())
        } else {
            RelPath::parse(s)
        }
    }

    /// Whether this is the work directory itself.
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `other` inside `self`.
    pub(crate) fn join(&self, other: &RelPath) -> RelPath {
        RelPath(self.0.iter().chain(&other.0).cloned().collect())
    }

    /// The path under `root`, joined without looking at the filesystem
    /// (for `/exec`, which reads nothing through it).
    pub(crate) fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.0);
        path
    }

    /// Whether this is exactly `name` (one component).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.0.len() == 1 && self.0[0] == name
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0.join("/"))
        }
    }
}

/// Why file work failed, and the status that says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// The request named something it may not, or sent something malformed
    /// (400).
    #[error("{0}")]
    Refused(String),
    /// More than the bounds allow (413).
    #[error("{0}")]
    TooLarge(String),
    /// A directory that was to be read is not there (404).
    #[error("{0}")]
    NotFound(String),
    /// The filesystem failed (500).
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl FsError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            FsError::Refused(_) => StatusCode::BAD_REQUEST,
            FsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            FsError::NotFound(_) => StatusCode::NOT_FOUND,
            FsError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        context: format!("{what} {}", path.display()),
        source,
    }
}

/// The directory `rel` names under `root`. Every component must be a real
/// directory, never a symbolic link; with `create`, missing ones are made
/// (0755, whatever the umask, as Go's `MkdirAll` under the usual 022).
pub(crate) fn dir_path(root: &Path, rel: &RelPath, create: bool) -> Result<PathBuf, FsError> {
    let mut path = root.to_path_buf();
    for c in &rel.0 {
        path.push(c);
        step_into(&path, rel, create)?;
    }
    Ok(path)
}

/// The file `rel` names under `root`: its parent goes through
/// [`dir_path`]; the last component is not looked at (callers replace or
/// remove it, never open through it).
pub(crate) fn file_path(
    root: &Path,
    rel: &RelPath,
    create_parents: bool,
) -> Result<PathBuf, FsError> {
    let Some((last, parents)) = rel.0.split_last() else {
        return Err(FsError::Refused(
            "the path names the work directory itself".to_owned(),
        ));
    };
    let parent = dir_path(root, &RelPath(parents.to_vec()), create_parents)?;
    Ok(parent.join(last))
}

/// Checks (or makes) one directory on the way to `rel`.
fn step_into(path: &Path, rel: &RelPath, create: bool) -> Result<(), FsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => Err(FsError::Refused(format!(
            "{rel} goes through a symbolic link"
        ))),
        Ok(_) => Err(FsError::Refused(format!(
            "{rel} goes through something that is not a directory"
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            match fs::DirBuilder::new().mode(0o755).create(path) {
                Ok(()) => fs::set_permissions(path, Permissions::from_mode(0o755))
                    .map_err(io_at("chmod", path)),
                // Made concurrently: check what is there now.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => step_into(path, rel, false),
                Err(e) => Err(io_at("mkdir", path)(e)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(FsError::NotFound(format!("{rel}: no such directory")))
        }
        Err(e) => Err(io_at("lstat", path)(e)),
    }
}

/// Writes what `src` yields to `path` as a new file with permissions
/// `mode` (applied exactly, whatever the umask) and modification time
/// `mtime` (now when `None`). Whatever was at `path` (a file, a symbolic
/// link) is removed first and the file is created exclusively, so a link is
/// replaced, never written through, and a running binary being replaced is
/// not disturbed. At most `limit` bytes; each is counted in `written`.
pub(crate) fn write_file(
    path: &Path,
    src: &mut dyn Read,
    mode: u32,
    mtime: Option<SystemTime>,
    limit: u64,
    written: &AtomicU64,
) -> Result<u64, FsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(FsError::Refused(format!(
                "{} is a directory",
                path.display()
            )));
        }
        Ok(_) => fs::remove_file(path).map_err(io_at("replacing", path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at("lstat", path)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_at("creating", path))?;
    let n = copy(src, &mut file, limit, path, written)?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_at("chmod", path))?;
    if let Some(mtime) = mtime {
        file.set_modified(mtime)
            .map_err(io_at("setting the mtime of", path))?;
    }
    Ok(n)
}

/// Copies `src` into `dst`. A read error is the client's (a broken body, a
/// corrupt archive: 400); a write error is ours (500).
fn copy(
    src: &mut dyn Read,
    dst: &mut File,
    limit: u64,
    path: &Path,
    written: &AtomicU64,
) -> Result<u64, FsError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FsError::Refused(format!(
                    "reading the data for {}: {e}",
                    path.display()
                )));
            }
        };
        total += n as u64;
        if total > limit {
            return Err(FsError::TooLarge(format!(
                "more than {limit} bytes for {}",
                path.display()
            )));
        }
        dst.write_all(&buf[..n]).map_err(io_at("writing", path))?;
        written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What [`untar`] did.
#[derive(Debug, Default)]
pub(crate) struct Unpacked {
    pub(crate) files: u64,
    pub(crate) dirs: u64,
    pub(crate) bytes: u64,
    /// Symbolic and hard links, skipped.
    pub(crate) links: u64,
}

/// Extracts the gzip-compressed tar `src` into `base` under `root`, Go's
/// way (its `untar`): global and local pax headers are skipped, links are
/// skipped, future modification times are clamped to now. An entry whose
/// name is not a clean relative path stops extraction (400): what came
/// before it stays, nothing lands outside `root`.
pub(crate) fn untar(
    src: impl Read,
    root: &Path,
    base: &RelPath,
    written: &AtomicU64,
) -> Result<Unpacked, FsError> {
    let bad = |e: io::Error| FsError::Refused(format!("reading the tar.gz body: {e}"));
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(src));
    let entries = archive.entries().map_err(bad)?;
    let now = SystemTime::now();
    let mut out = Unpacked::default();
    let mut seen: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(bad)?;
        seen += 1;
        if seen > MAX_TAR_ENTRIES {
            return Err(FsError::TooLarge(format!(
                "the tarball has more than {MAX_TAR_ENTRIES} entries"
            )));
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = RelPath::parse(&name)
            .map_err(|_| FsError::Refused(format!("tar file contained invalid name {name:?}")))?;
        // Old (V7) archives mark directories only by a trailing slash.
        let is_dir =
            kind == EntryType::Directory || (kind == EntryType::Regular && name.ends_with('/'));
        if is_dir {
            dir_path(root, &base.join(&rel), true)?;
            out.dirs += 1;
            continue;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                if rel.is_root() {
                    return Err(FsError::Refused(format!(
                        "tar file contained invalid name {name:?}"
                    )));
                }
                let path = file_path(root, &base.join(&rel), true)?;
                let header = entry.header();
                let mode = header.mode().map_err(bad)? & 0o777;
                let mtime = header
                    .mtime()
                    .ok()
                    .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
                    .map_or(now, |t| t.min(now));
                let left = MAX_UNPACKED - out.bytes;
                out.bytes += write_file(&path, &mut entry, mode, Some(mtime), left, written)?;
                out.files += 1;
            }
            EntryType::Symlink | EntryType::Link => out.links += 1,
            other => {
                return Err(FsError::Refused(format!(
                    "tar file entry {name} contained unsupported file type {other:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// Writes `dir` as a gzip-compressed tar to `dst`, as Go's `/tgz` does:
/// names relative to `dir` in lexical order, a directory before its
/// contents and with a trailing `/`, symbolic links as links (never
/// followed), other special files left out. On failure `on_error` gets the
/// writer first, so it can cut the stream before the dropped tar and gzip
/// writers flush their endings into it.
pub(crate) fn tgz<W: Write>(dir: &Path, dst: W, on_error: impl FnOnce(&mut W, io::Error)) {
    let gz = flate2::write::GzEncoder::new(dst, flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    if let Err(e) = add_dir(&mut builder, dir, Path::new("")) {
        on_error(builder.get_mut().get_mut(), e);
        return;
    }
    let finished = builder.into_inner().and_then(|gz| gz.finish());
    match finished {
        Ok(mut dst) => {
            if let Err(e) = dst.flush() {
                on_error(&mut dst, e);
            }
        }
        // Whatever the writer is now, it was dropped on the way; the error
        // came from it, so nothing more reaches the client anyway.
        Err(e) => tracing::debug!(error = %e, "finishing a tarball"),
    }
}

fn add_dir<W: Write>(b: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> io::Result<()> {
    for (name, path) in sorted_children(dir)? {
        let rel = prefix.join(&name);
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut name = rel.clone().into_os_string();
            name.push("/");
            let mut h = header(&meta, EntryType::Directory, 0);
            b.append_data(&mut h, PathBuf::from(name), io::empty())?;
            add_dir(b, &path, &rel)?;
        } else if ft.is_file() {
            let mut h = header(&meta, EntryType::Regular, meta.len());
            let file = File::open(&path)?;
            b.append_data(&mut h, &rel, Exact::new(file, meta.len()))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            let mut h = header(&meta, EntryType::Symlink, 0);
            b.append_link(&mut h, &rel, &target)?;
        }
    }
    Ok(())
}

fn header(meta: &Metadata, kind: EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h
}

/// Exactly `len` bytes of a file: a file that shrank while being archived
/// is an error (the stream is cut), never a short entry that corrupts the
/// archive; one that grew is cut at the size its header announced.
struct Exact {
    inner: io::Take<File>,
    left: u64,
}

impl Exact {
    fn new(file: File, len: u64) -> Exact {
        Exact {
            inner: file.take(len),
            left: len,
        }
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `/ls` options.
#[derive(Debug, Default)]
pub(crate) struct LsOptions {
    pub(crate) recursive: bool,
    /// Directories (relative to the listed one) not descended into or
    /// listed.
    pub(crate) skip: Vec<String>,
}

/// Go's `/ls` listing of `base`: one line per entry in walk order,
/// `<mode>\t<path>`, then `\t<size>\t<mtime>` for a regular file or `/`
/// for a directory. Links are listed, not followed.
pub(crate) fn ls(base: &Path, opts: &LsOptions) -> io::Result<String> {
    let mut out = String::new();
    ls_dir(base, Path::new(""), opts, &mut out)?;
    Ok(out)
}

fn ls_dir(dir: &Path, prefix: &Path, opts: &LsOptions, out: &mut String) -> io::Result<()> {
    for (name, path) in sorted_children(dir)? {
        let rel = prefix.join(&name);
        let shown = rel.to_string_lossy();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() && opts.skip.iter().any(|s| *s == shown) {
            continue;
        }
        let _ = write!(out, "{}\t{shown}", mode_string(meta.mode()));
        if meta.is_file() {
            let _ = write!(out, "\t{}\t{}", meta.len(), rfc3339(meta.mtime()));
        } else if meta.is_dir() {
            out.push('/');
        }
        out.push('\n');
        if meta.is_dir() && opts.recursive {
            ls_dir(&path, &rel, opts, out)?;
        }
    }
    Ok(())
}

/// Go's `FileMode.String()` for a Unix `st_mode`: type letters in Go's
/// order (`dalTLDpSugct?`, those that exist on Unix), or `-`, then
/// `rwxrwxrwx`.
pub(crate) fn mode_string(st_mode: u32) -> String {
    const S_IFMT: u32 = 0o170_000;
    let kind = st_mode & S_IFMT;
    let mut s = String::with_capacity(12);
    let flags = [
        ('d', kind == 0o040_000),
        ('L', kind == 0o120_000),
        ('D', kind == 0o060_000 || kind == 0o020_000),
        ('p', kind == 0o010_000),
        ('S', kind == 0o140_000),
        ('u', st_mode & 0o4000 != 0),
        ('g', st_mode & 0o2000 != 0),
        ('c', kind == 0o020_000),
        ('t', st_mode & 0o1000 != 0),
    ];
    for (c, set) in flags {
        if set {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if st_mode & (1 << (8 - i)) != 0 {
            c
        } else {
            '-'
        });
    }
    s
}

/// RFC 3339 in UTC, whole seconds (Go's `time.RFC3339` of a UTC time).
fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A directory's entries by name, byte-wise (Go's walk order).
fn sorted_children(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Removes `path`: a file or link itself, a directory with everything in
/// it (making read-only directories writable first, as Go does, for Go's
/// read-only module cache). Missing is fine.
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return ignore_missing(fs::remove_file(path));
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path)?;
            ignore_missing(fs::remove_dir_all(path))
        }
    }
}

/// Empties `dir`, keeping it (`/removeall?path=.`).
pub(crate) fn remove_contents(dir: &Path) -> io::Result<()> {
    for (_, path) in sorted_children(dir)? {
        remove_all(&path)?;
    }
    Ok(())
}

fn ignore_missing(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives the owner rwx on every directory of the tree at `dir` (links are
/// not followed).
fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, Permissions::from_mode(mode | 0o700))?;
    }
    for (_, path) in sorted_children(dir)? {
        make_writable(&path)?;
    }
    Ok(())
}

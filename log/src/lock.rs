//! One writer per log directory, enforced with an advisory file lock.
//!
//! The writer holds an exclusive `flock` on `almanac.lock` for as long as the
//! log is open and writes its process id into the file, so a second writer
//! (another process, or the CLI while maintnerd runs) is refused with a
//! message naming the holder instead of interleaving bytes. The kernel drops
//! the lock when the process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The lock file's name inside a log directory.
pub const LOCK_FILE: &str = "almanac.lock";

/// A held writer lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another writer holds it.
    #[error(
        "log directory {dir} is already open for writing by process {holder}; stop that writer (or append through it) first"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id as it wrote it, or "unknown".
        holder: String,
    },
    /// The lock file could not be used.
    #[error("locking {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

impl DirLock {
    /// Takes the writer lock of `dir` without waiting.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(DirLock { _file: file, path })
    }

    /// The process id of the writer holding `dir`'s lock, if any.
    ///
    /// This only looks (at the kernel's lock table, `/proc/locks`); it never
    /// takes the lock, so probing cannot make a writer's open fail.
    pub fn holder(dir: &Path) -> Option<u32> {
        let meta = std::fs::metadata(dir.join(LOCK_FILE)).ok()?;
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        holder_in(&locks, meta.dev(), meta.ino())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Finds an exclusive `flock` on the file `(dev, ino)` in `/proc/locks`
/// text. Lines look like `3: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`,
/// the device as hex major and minor; waiters (`->`) are skipped.
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.get(3) != Some(&"WRITE") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let (maj, min, file) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(maj, 16).ok()? == major
            && u64::from_str_radix(min, 16).ok()? == minor
            && file.parse::<u64>().ok()? == ino;
        same.then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_the_kernel_lock_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(DirLock::holder(dir.path()), None);
        let lock = DirLock::acquire(dir.path()).expect("lock");
        assert_eq!(DirLock::holder(dir.path()), Some(std::process::id()));
        drop(lock);
        assert_eq!(DirLock::holder(dir.path()), None);
    }

    #[test]
    fn proc_locks_lines_are_parsed() {
        let text = "1: POSIX  ADVISORY  WRITE 10 fd:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 99 fd:01:1234 0 EOF\n";
        let dev = (0xfd << 8) | 0x01;
        assert_eq!(holder_in(text, dev, 1234), Some(4242));
        assert_eq!(holder_in(text, dev, 77), None);
        assert_eq!(holder_in(text, dev, 5), None);
    }
}

//! One writer per log directory, enforced with an advisory file lock.
//!
//! The writer holds an exclusive `flock` on `almanac.lock` for as long as the
//! log is open and writes its process id into the file, so a second writer
//! (another process, or the CLI while maintnerd runs) is refused with a
//! message naming the holder instead of interleaving bytes. The kernel drops
//! the lock when the process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
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

    /// Whether some writer holds the lock of `dir` right now.
    pub fn is_held(dir: &Path) -> bool {
        let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

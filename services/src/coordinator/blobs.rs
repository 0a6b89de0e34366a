//! The blob store: build logs, content-addressed by SHA-256, as files under
//! one directory (`<dir>/<first two hex digits>/<sha256>`).
//!
//! A blob is durable before its hash is returned (written to a temporary
//! file, fsynced, renamed, directory fsynced), so an event that names it
//! never points at bytes a crash could lose. Reading checks the name is a
//! SHA-256 in lowercase hex before it touches the file system, so a request
//! path can never leave the directory. Blobs are immutable: writing one that
//! exists does nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use almanac_proto::pb::farm::BlobRef;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a SHA-256 in lowercase hex")]
    BadName(String),
}

/// A directory of blobs.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

impl BlobStore {
    /// Opens (creating) the store at `dir`.
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(BlobStore {
            dir: dir.to_owned(),
        })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Stores `bytes` durably and returns its reference. Blocking: call it
    /// from a blocking thread.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let sha256 = sha256_hex(bytes);
        let path = self.path_of(&sha256);
        let blob = BlobRef {
            sha256: sha256.clone(),
            size: bytes.len() as u64,
        };
        if path.exists() {
            return Ok(blob);
        }
        let parent = self.dir.join(&sha256[..2]);
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let tmp = parent.join(format!(".{sha256}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&parent)?.sync_all()
        };
        write().map_err(io_err(&path))?;
        Ok(blob)
    }

    /// The blob named `sha256`, or None if the store does not have it.
    pub fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, BlobError> {
        if !is_sha256_hex(sha256) {
            return Err(BlobError::BadName(sha256.to_owned()));
        }
        let path = self.path_of(sha256);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_names_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(dir.path()).expect("open");
        let blob = store.put(b"hello\n").expect("put");
        assert_eq!(
            blob.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(blob.size, 6);
        assert_eq!(store.put(b"hello\n").expect("again"), blob);
        assert_eq!(
            store.get(&blob.sha256).expect("get"),
            Some(b"hello\n".to_vec())
        );
        assert_eq!(store.get(&"0".repeat(64)).expect("missing"), None);
        for bad in ["../../etc/passwd", "ABC", &"A".repeat(64)] {
            assert!(
                matches!(store.get(bad), Err(BlobError::BadName(_))),
                "{bad}"
            );
        }
    }
}

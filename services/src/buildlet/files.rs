//! The file endpoints: `/write`, `/writetgz`, `/tgz`, `/ls`, `/removeall`.
//! Each validates its parameters, then does its file work on the blocking
//! pool.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use super::body::{BodyError, ChannelBody, ChannelWriter, drain, with_reader};
use super::form::{Form, parse_bool};
use super::fs::{self, FsError, LsOptions, RelPath};
use super::{Buildlet, MAX_BODY, text};
use crate::pubsubhelper::plain;

/// Go's `os.FileMode` type bits (dir, symlink, device, pipe, socket, char
/// device, irregular): a `/write` mode with any set is not a regular file's.
const GO_MODE_TYPE: u64 =
    (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);

/// `PUT /write?path=&mode=`: one file from the body.
pub(crate) async fn write(State(b): State<Buildlet>, req: Request) -> Response {
    if req.method() != Method::PUT {
        return refuse_draining(req, "requires PUT method").await;
    }
    let (parts, body) = req.into_parts();
    let q = Form::query(&parts);
    let rel = match RelPath::parse(q.value("path")) {
        Ok(rel) if !rel.is_root() => rel,
        _ => return refused_path(&b, body, "bad path").await,
    };
    let Some(mode) = parse_mode(q.value("mode")) else {
        drain(body).await;
        return plain(StatusCode::BAD_REQUEST, "bad mode");
    };
    let worker = b.clone();
    let res = with_reader(body, MAX_BODY, move |mut reader| -> Result<u64, FsError> {
        worker
            .ensure_dirs()
            .map_err(|e| io_error("preparing the work directory", e))?;
        let path = fs::file_path(worker.workdir(), &rel, true)?;
        fs::write_file(
            &path,
            &mut reader,
            mode,
            None,
            MAX_BODY,
            &worker.metrics().bytes_written,
        )
    })
    .await;
    match res {
        Ok(Ok(_)) => text(StatusCode::OK, "OK".to_owned()),
        Ok(Err(e)) => fs_error(&b, &e),
        Err(e) => body_error(&e),
    }
}

/// Go's `/write` mode: decimal, an `os.FileMode` of a regular file; the
/// permission bits are what is applied.
pub(crate) fn parse_mode(s: &str) -> Option<u32> {
    let mode: u64 = s.parse().ok()?;
    if mode > u64::from(u32::MAX) || mode & GO_MODE_TYPE != 0 {
        return None;
    }
    u32::try_from(mode & 0o777).ok()
}

/// `PUT /writetgz?dir=`: a gzip-compressed tarball extracted under `dir`.
pub(crate) async fn writetgz(State(b): State<Buildlet>, req: Request) -> Response {
    let method = req.method().clone();
    if method != Method::PUT && method != Method::POST {
        return refuse_draining(req, "requires PUT or POST method").await;
    }
    let (parts, body) = req.into_parts();
    let q = Form::query(&parts);
    let Ok(base) = RelPath::parse_dir(q.value("dir")) else {
        return refused_path(&b, body, "bad dir").await;
    };
    // Go's special case: a bootstrap toolchain already there is kept.
    if base.is("go1.4") && b.workdir().join("go1.4").is_dir() {
        drain(body).await;
        return text(StatusCode::OK, "SKIP".to_owned());
    }
    if method == Method::POST {
        drain(body).await;
        return plain(StatusCode::BAD_REQUEST, "url fetch not supported");
    }
    let worker = b.clone();
    let res = with_reader(
        body,
        MAX_BODY,
        move |reader| -> Result<fs::Unpacked, FsError> {
            worker
                .ensure_dirs()
                .map_err(|e| io_error("preparing the work directory", e))?;
            let root = worker.workdir();
            fs::dir_path(root, &base, true)?;
            fs::untar(reader, root, &base, &worker.metrics().bytes_written)
        },
    )
    .await;
    match res {
        Ok(Ok(unpacked)) => {
            tracing::info!(
                files = unpacked.files,
                dirs = unpacked.dirs,
                bytes = unpacked.bytes,
                links_skipped = unpacked.links,
                "unpacked a tarball"
            );
            text(StatusCode::OK, "OK".to_owned())
        }
        Ok(Err(e)) => fs_error(&b, &e),
        Err(e) => body_error(&e),
    }
}

/// `GET /tgz?dir=`: the directory as a streamed gzip-compressed tarball.
/// The directory is resolved before answering, so a refused or missing one
/// is a status; a failure mid-stream cuts the connection (Go's
/// `ErrAbortHandler`).
pub(crate) async fn tgz(State(b): State<Buildlet>, req: Request) -> Response {
    if req.method() != Method::GET {
        return plain(StatusCode::BAD_REQUEST, "requires GET method");
    }
    let (parts, _) = req.into_parts();
    let q = Form::query(&parts);
    let Ok(rel) = RelPath::parse_dir(q.value("dir")) else {
        return refused_path(&b, Body::empty(), "bad dir").await;
    };
    let worker = b.clone();
    let resolved = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf, FsError> {
        worker
            .ensure_dirs()
            .map_err(|e| io_error("preparing the work directory", e))?;
        fs::dir_path(worker.workdir(), &rel, false)
    })
    .await;
    let dir = match resolved {
        Ok(Ok(dir)) => dir,
        Ok(Err(e)) => return fs_error(&b, &e),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (tx, body) = ChannelBody::channel(4);
    tokio::task::spawn_blocking(move || {
        fs::tgz(&dir, ChannelWriter::new(tx), |w, e| {
            tracing::warn!(dir = %dir.display(), error = %e, "tgz failed mid-stream; cutting it");
            w.abort(e);
        });
    });
    let mut resp = Response::new(Body::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    resp
}

/// `GET /ls?dir=&recursive=&skip=`.
pub(crate) async fn ls(State(b): State<Buildlet>, req: Request) -> Response {
    if req.method() != Method::GET {
        return plain(StatusCode::BAD_REQUEST, "requires GET method");
    }
    let (parts, _) = req.into_parts();
    let q = Form::query(&parts);
    let Ok(rel) = RelPath::parse_dir(q.value("dir")) else {
        return refused_path(&b, Body::empty(), "bad dir").await;
    };
    if parse_bool(q.value("digest")) {
        return plain(StatusCode::BAD_REQUEST, "digest not supported");
    }
    let opts = LsOptions {
        recursive: parse_bool(q.value("recursive")),
        skip: q.values("skip").into_iter().map(str::to_owned).collect(),
    };
    let worker = b.clone();
    let listed = tokio::task::spawn_blocking(move || -> Result<String, FsError> {
        worker
            .ensure_dirs()
            .map_err(|e| io_error("preparing the work directory", e))?;
        let dir = fs::dir_path(worker.workdir(), &rel, false)?;
        fs::ls(&dir, &opts).map_err(|e| io_error("listing", e))
    })
    .await;
    match listed {
        Ok(Ok(listing)) => text(StatusCode::OK, listing),
        Ok(Err(e)) => fs_error(&b, &e),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /removeall` with repeated form `path`: every path is checked
/// before any is removed; `.` empties the work directory (keeping it).
pub(crate) async fn removeall(State(b): State<Buildlet>, req: Request) -> Response {
    if req.method() != Method::POST {
        return refuse_draining(req, "requires POST method").await;
    }
    let (parts, body) = req.into_parts();
    let form = match Form::read(&parts, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let raw = form.values("path");
    if raw.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "requires 'path' parameter");
    }
    let mut rels = Vec::with_capacity(raw.len());
    for p in raw {
        match RelPath::parse(p) {
            Ok(rel) => rels.push(rel),
            Err(_) => {
                let msg = format!("bad 'path' parameter: {p:?}");
                return refused_path(&b, Body::empty(), &msg).await;
            }
        }
    }
    let worker = b.clone();
    let removed = tokio::task::spawn_blocking(move || -> Result<(), FsError> {
        worker
            .ensure_dirs()
            .map_err(|e| io_error("preparing the work directory", e))?;
        let root = worker.workdir();
        for rel in &rels {
            if rel.is_root() {
                fs::remove_contents(root)
                    .map_err(|e| io_error("emptying the work directory", e))?;
                continue;
            }
            let path = match fs::file_path(root, rel, false) {
                Ok(path) => path,
                // A parent is missing: so is the path.
                Err(FsError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            fs::remove_all(&path).map_err(|e| io_error("removing", e))?;
        }
        // `.` took tmp and gocache with it; commands expect them.
        worker
            .ensure_dirs()
            .map_err(|e| io_error("preparing the work directory", e))
    })
    .await;
    match removed {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => fs_error(&b, &e),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn io_error(what: &str, source: std::io::Error) -> FsError {
    FsError::Io {
        context: what.to_owned(),
        source,
    }
}

/// 400 for a path parameter, counted.
async fn refused_path(b: &Buildlet, body: Body, msg: &str) -> Response {
    b.metrics().bad_requests.fetch_add(1, Ordering::Relaxed);
    drain(body).await;
    plain(StatusCode::BAD_REQUEST, msg)
}

async fn refuse_draining(req: Request, msg: &str) -> Response {
    drain(req.into_body()).await;
    plain(StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn fs_error(b: &Buildlet, e: &FsError) -> Response {
    match e {
        FsError::Refused(_) => {
            b.metrics().bad_requests.fetch_add(1, Ordering::Relaxed);
        }
        FsError::Io { .. } => tracing::warn!(error = %e, "file work failed"),
        FsError::TooLarge(_) | FsError::NotFound(_) => {}
    }
    plain(e.status(), &e.to_string())
}

fn body_error(e: &BodyError) -> Response {
    let status = match e {
        BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
        BodyError::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, &e.to_string())
}

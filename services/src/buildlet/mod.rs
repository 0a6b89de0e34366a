//! The buildlet: the worker server on every build machine. It unpacks
//! tarballs into its work directory, runs commands there and streams their
//! output (Go's `cmd/buildlet`, spec/coordinator.md §1), here in listen mode.
//!
//! Routes, with Go's methods, parameters and texts (a wrong method is
//! 400 `requires <METHOD> method`):
//! - `/` (`buildlet running on <goos>-<goarch>`) and `/healthz` (`ok`): the
//!   only routes open without the key.
//! - `GET /status`: `{"HostType":"…","Version":25}`; Go's `buildlet.Status`
//!   reads `Version` and ignores the rest.
//! - `GET /workdir`: the work directory's absolute path.
//! - `PUT /write?path=&mode=`: one file; `mode` is a decimal Go `FileMode`
//!   that must be a regular file's. `OK`.
//! - `PUT /writetgz?dir=`: a gzip-compressed tar body extracted under `dir`.
//!   `OK`; `SKIP` when `dir=go1.4` already exists (Go's special case).
//! - `GET /tgz?dir=`: the directory as a gzip-compressed tar, streamed.
//! - `GET /ls?dir=&recursive=&skip=`: one `<mode>\t<path>` line per entry,
//!   with `\t<size>\t<RFC 3339 mtime>` for files and a trailing `/` for
//!   directories.
//! - `POST /removeall` (form `path`, repeated): removes each path; `.`
//!   empties the work directory.
//! - `POST /exec`: runs a command (see Exec below).
//! - `POST /halt`: kills every running command's process group, answers
//!   200, then (with [`Config::halt_exits`]) stops the server.
//! - `GET /metrics`: counters in Prometheus' text format, behind the key
//!   like everything else: the buildlet is meant to be reachable by the
//!   coordinator only, so its open surface stays Go's (`/`, `/healthz`).
//!   Prometheus scrapes with `authorization` (bearer) or `basic_auth`.
//!
//! # Authentication
//! Every other route needs the host key ([`host_key`]): as the HTTP Basic
//! password (the user name is ignored; Go's clients send `gomote`) or as
//! `Authorization: Bearer <key>`. It is compared in constant time. A
//! refusal is 403 `invalid password`, Go's text, and is counted.
//!
//! # Paths
//! A path in a request or a tar entry is relative to the work directory
//! (or to `dir`): non-empty, no `\`, no leading `/`, no `..` component.
//! Anything else is refused with 400 before anything is written. A request
//! never reaches outside the work directory through a symbolic link found
//! in it either: a path that goes through one is refused (400), and a link
//! at the very end of a written path is replaced, not written through.
//! That holds against tarballs and mistakes, not against a command the
//! buildlet runs concurrently, which can do anything anyway (spec §9).
//!
//! # Exec
//! `POST /exec` takes Go's form: `cmd`, `mode=sys`, `dir`, repeated
//! `cmdArg`, `env` (`K=V`) and `path`, `debug`, plus our `timeout`
//! (seconds, capped by [`Config::exec_timeout`], which is also the
//! default). The 200 head goes out at once, declaring
//! `Trailer: Process-State`; the body is the command's stdout and stderr
//! interleaved as written (both are the same pipe), each chunk sent as it
//! is read. The `Process-State` trailer ends it: `ok`, `exit status 3`,
//! `signal: killed`, `timeout after 30s`, or the start error. The command
//! runs in its own process group; the whole group is killed on timeout,
//! when the client goes away, on `/halt` and on shutdown. A halted or
//! shut-down command's response is cut without a trailer, which Go's
//! client reads as a communication error rather than a failed test, as it
//! would when Go's buildlet exits under it.
//!
//! Deliberate differences from Go's buildlet:
//! - **Trailers need `TE: trailers` over HTTP/1.1.** hyper writes trailer
//!   fields only for a request that said it accepts them (RFC 9110 §6.5.1);
//!   Go's HTTP/1.1 transport does not send it, HTTP/2 needs nothing. Our
//!   clients send it; a Go client must use HTTP/2 or add the header.
//! - **Keys are HMAC-SHA256**, not Go's HMAC-MD5 builder keys (see
//!   [`host_key`]); the buildlet always requires one.
//! - **No URL fetch.** `POST /writetgz` with form `url` is 400
//!   `url fetch not supported`: the buildlet makes no outbound requests, so
//!   it cannot be pointed at internal addresses. The coordinator fetches
//!   and `PUT`s the tarball instead.
//! - **No digests.** `/ls?digest=true` is 400 `digest not supported`: Go's
//!   digests are SHA-1, which this crate does not build.
//! - **Bounded input.** A request body is at most [`MAX_BODY`], a tarball
//!   at most [`MAX_TAR_ENTRIES`] entries and [`MAX_UNPACKED`] bytes
//!   unpacked (413 beyond).
//! - **Tar entries.** Symbolic and hard links are skipped (Go skips
//!   symlinks), directories are made 0755 (Go's `MkdirAll`), file modes are
//!   the header's `& 0o777` applied exactly (no umask), future mtimes are
//!   clamped to now as Go does. Devices and FIFOs are refused.
//! - **Halting never powers the machine off.** `/halt` kills the running
//!   commands and, with [`Config::halt_exits`], stops the server (Go's
//!   behaviour without `-halt`/`-reboot`); powering off is left to the
//!   supervisor that started the buildlet.
//! - **No `/connect-ssh`, `/tcpproxy`, `/debug/*`** and no
//!   `GO_DISABLE_OUTBOUND_NETWORK` iptables rules.
//!
//! Reverse mode serves the same [`router`] over connections the buildlet
//! dials out; it is not here yet.
//!
//! Layout: `auth` ([`host_key`] and the key check), `form` (Go's form
//! values), `fs` (path rules, tar in and out, listing, removal; all
//! blocking), `files` (the file endpoints), `exec`, `body` (request
//! bodies read by blocking code, channel-fed response bodies), [`metrics`].

pub mod metrics;
pub mod reverse;

pub(crate) mod auth;
mod body;
mod exec;
mod files;
mod form;
mod fs;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::routing::any;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tokio::sync::watch;

use crate::ingest::config::Secret;
use crate::pubsubhelper::plain;

pub use auth::{host_key, keys_match};
pub use metrics::Metrics;

/// The protocol version `/status` reports: Go's `buildletVersion`.
pub const VERSION: u32 = 25;

/// How long a command may run unless the request asks for less.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// The largest request body `/write` and `/writetgz` take (the tarball as
/// sent, compressed).
pub const MAX_BODY: u64 = 1 << 30;

/// The most entries a tarball may hold.
pub const MAX_TAR_ENTRIES: u64 = 1 << 20;

/// The most file bytes one tarball may unpack to (a gzip bomb stops here).
pub const MAX_UNPACKED: u64 = 16 << 30;

/// The largest form body (`/exec`, `/removeall`), Go's `ParseForm` bound.
pub const MAX_FORM: usize = 10 << 20;

/// How a buildlet runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The work directory; created if missing, never wiped here (the CLI
    /// wipes the default one at start-up, as Go does).
    pub workdir: PathBuf,
    /// The host type this machine is (`host-linux-bullseye`), reported by
    /// `/status`.
    pub host_type: String,
    /// The key every request but `/` and `/healthz` must present: the host
    /// type's [`host_key`]. Must not be empty.
    pub key: Secret,
    /// The longest a command may run; `/exec?timeout=` can only lower it.
    pub exec_timeout: Duration,
    /// Whether `/halt` stops the server after killing the running commands
    /// ([`Server::halted`] resolves).
    pub halt_exits: bool,
}

impl Config {
    /// Defaults: [`DEFAULT_EXEC_TIMEOUT`], and `/halt` stops the server.
    pub fn new(listen: SocketAddr, workdir: PathBuf, host_type: String, key: Secret) -> Config {
        Config {
            listen,
            workdir,
            host_type,
            key,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            halt_exits: true,
        }
    }
}

/// The buildlet's state, shared by every handler; what [`router`] serves.
/// Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct Buildlet {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Canonical (symbolic links resolved), so paths built on it compare.
    workdir: PathBuf,
    host_type: String,
    key: Secret,
    exec_timeout: Duration,
    halt_exits: bool,
    metrics: Metrics,
    /// Bumped to kill every running command (halt, shutdown). Each command
    /// subscribes when it starts, so a bump ends exactly those running.
    kill_generation: watch::Sender<u64>,
    /// Set once the server should stop: shutdown, or `/halt` with
    /// `halt_exits`.
    stop: watch::Sender<bool>,
}

impl Buildlet {
    /// Creates the work directory (and its `tmp` and `gocache`) if missing.
    pub fn new(config: &Config) -> anyhow::Result<Buildlet> {
        anyhow::ensure!(
            !config.key.expose().is_empty(),
            "the buildlet key is empty; every request would be refused"
        );
        std::fs::create_dir_all(&config.workdir)
            .with_context(|| format!("creating {}", config.workdir.display()))?;
        let workdir = std::fs::canonicalize(&config.workdir)
            .with_context(|| format!("resolving {}", config.workdir.display()))?;
        let buildlet = Buildlet {
            shared: Arc::new(Shared {
                workdir,
                host_type: config.host_type.clone(),
                key: config.key.clone(),
                exec_timeout: config.exec_timeout,
                halt_exits: config.halt_exits,
                metrics: Metrics::default(),
                kill_generation: watch::Sender::new(0),
                stop: watch::Sender::new(false),
            }),
        };
        buildlet
            .ensure_dirs()
            .with_context(|| format!("preparing {}", buildlet.workdir().display()))?;
        Ok(buildlet)
    }

    /// The work directory, canonical.
    pub fn workdir(&self) -> &Path {
        &self.shared.workdir
    }

    /// The host type.
    pub fn host_type(&self) -> &str {
        &self.shared.host_type
    }

    /// The live counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Kills the process group of every command running now; their
    /// responses are cut without a trailer.
    pub fn kill_execs(&self) {
        self.shared
            .kill_generation
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Recreates the work directory, `tmp` and `gocache` if something
    /// removed them (Go's handlers `MkdirAll` the work directory first).
    pub(crate) fn ensure_dirs(&self) -> std::io::Result<()> {
        let workdir = self.workdir();
        std::fs::create_dir_all(workdir)?;
        std::fs::create_dir_all(workdir.join("tmp"))?;
        std::fs::create_dir_all(workdir.join("gocache"))
    }

    pub(crate) fn key(&self) -> &Secret {
        &self.shared.key
    }

    pub(crate) fn exec_timeout(&self) -> Duration {
        self.shared.exec_timeout
    }

    /// A receiver that changes when [`Buildlet::kill_execs`] is called
    /// after this.
    pub(crate) fn kill_signal(&self) -> watch::Receiver<u64> {
        self.shared.kill_generation.subscribe()
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.shared.stop.borrow()
    }

    fn request_stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Resolves once the buildlet was asked to stop (`/halt` with
    /// [`Config::halt_exits`], or shutdown).
    pub async fn stopped(&self) {
        let mut rx = self.shared.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Removes `dir` and everything in it, making read-only directories (a Go
/// module cache) writable first; a missing `dir` is fine. The CLI wipes
/// its default work directory with this at start-up, as Go does.
pub fn wipe(dir: &Path) -> std::io::Result<()> {
    fs::remove_all(dir)
}

/// Every route, behind the key check, over `buildlet`'s state. Listen mode
/// serves it on a TCP listener ([`Server`]); reverse mode will serve it over
/// connections the buildlet dials out.
pub fn router(buildlet: Buildlet) -> Router {
    Router::new()
        .route("/", any(root))
        .route("/healthz", any(healthz))
        .route("/status", any(status))
        .route("/workdir", any(workdir))
        .route("/write", any(files::write))
        .route("/writetgz", any(files::writetgz))
        .route("/tgz", any(files::tgz))
        .route("/ls", any(files::ls))
        .route("/removeall", any(files::removeall))
        .route("/exec", any(exec::exec))
        .route("/halt", any(halt))
        .route("/metrics", any(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            buildlet.clone(),
            auth::require_key,
        ))
        .with_state(buildlet)
}

/// A running buildlet in listen mode.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    buildlet: Buildlet,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Prepares the work directory, binds and starts serving. Returns once
    /// the port is bound.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let buildlet = Buildlet::new(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Command output is streamed in small writes; none may wait for
        // Nagle's algorithm and a delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        let app = router(buildlet.clone());
        let stop = buildlet.clone();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.stopped().await })
                .await
        });
        tracing::info!(
            %addr,
            workdir = %buildlet.workdir().display(),
            host_type = %buildlet.host_type(),
            "buildlet serving"
        );
        Ok(Server {
            addr,
            buildlet,
            serve,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state the routes serve (counters, work directory).
    pub fn buildlet(&self) -> &Buildlet {
        &self.buildlet
    }

    /// Resolves once the server was asked to stop: `/halt` with
    /// [`Config::halt_exits`] (or [`Server::shutdown`]). The CLI exits then.
    pub async fn halted(&self) {
        self.buildlet.stopped().await;
    }

    /// Kills every running command's process group, stops accepting
    /// connections and waits for in-flight requests (a `/tgz` stream runs
    /// to its end).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.buildlet.kill_execs();
        self.buildlet.request_stop();
        self.serve.await??;
        Ok(())
    }
}

/// `/`: Go's banner, with Go's names for the OS and architecture.
async fn root() -> Response {
    text(
        StatusCode::OK,
        format!("buildlet running on {}-{}\n", go_os(), go_arch()),
    )
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok".to_owned())
}

/// `/status`: Go's `buildlet.Status` (`Version`) plus our `HostType`.
async fn status(State(b): State<Buildlet>) -> Response {
    let body = serde_json::json!({ "Version": VERSION, "HostType": b.host_type() });
    let mut resp = Response::new(Body::from(format!("{body}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn workdir(State(b): State<Buildlet>) -> Response {
    text(StatusCode::OK, b.workdir().display().to_string())
}

/// `POST /halt`: kill the running commands, answer, then stop if
/// configured. Graceful shutdown lets this very response finish.
async fn halt(State(b): State<Buildlet>, method: Method) -> Response {
    if method != Method::POST {
        return plain(StatusCode::BAD_REQUEST, "requires POST method");
    }
    tracing::info!("halt: killing running commands");
    b.kill_execs();
    if b.shared.halt_exits {
        tracing::info!("halt: stopping the server");
        b.request_stop();
    }
    StatusCode::OK.into_response()
}

async fn metrics(State(b): State<Buildlet>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        b.metrics().render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

/// A plain-text answer without Go's `http.Error` newline (`OK`, `SKIP`,
/// the work directory).
pub(crate) fn text(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Go's `runtime.GOOS` for this build.
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// Go's `runtime.GOARCH` for this build.
fn go_arch() -> &'static str {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

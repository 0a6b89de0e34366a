//! A client of one buildlet, over a connection the coordinator holds: the
//! HTTP/2 side of a reverse registration, or a listen-mode buildlet's
//! address.
//!
//! Every request carries the host key (`Authorization: Bearer`), so a
//! buildlet never serves an unauthenticated request even on a connection it
//! opened itself. A response without its `Process-State` trailer, or any
//! transport error, is a [`ClientError`]: a communication failure, never a
//! build result (spec/coordinator.md §1.4).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;

use crate::ingest::config::Secret;

/// Why a request did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("buildlet connection: {0}")]
    Transport(String),
    #[error("buildlet answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the command's output ended without its Process-State (the buildlet went away)")]
    NoProcessState,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What `/exec` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// stdout and stderr, interleaved as written: the first
    /// [`MAX_COLLECTED_OUTPUT`] bytes (the callback sees everything).
    pub output: Vec<u8>,
    /// `ok`, `exit status 1`, `timeout after 30s`, ...
    pub process_state: String,
}

impl ExecResult {
    pub fn succeeded(&self) -> bool {
        self.process_state == "ok"
    }
}

/// `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Status {
    #[serde(rename = "Version")]
    pub version: i64,
    #[serde(rename = "HostType", default)]
    pub host_type: String,
}

/// One buildlet, over HTTP/2.
#[derive(Clone, Debug)]
pub struct BuildletClient {
    sender: SendRequest<Full<Bytes>>,
    key: Secret,
    /// The `:authority` requests name.
    authority: String,
}

/// The most output [`BuildletClient::exec`] collects into its result.
pub const MAX_COLLECTED_OUTPUT: usize = 16 << 20;

/// How long a request may wait for its response head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

impl BuildletClient {
    pub fn new(sender: SendRequest<Full<Bytes>>, key: Secret, authority: String) -> BuildletClient {
        BuildletClient {
            sender,
            key,
            authority,
        }
    }

    /// Connects to a listen-mode buildlet at `addr` (`host:port`): one TCP
    /// connection carrying HTTP/2 (prior knowledge, as the buildlet's
    /// listener accepts), kept alive with pings. The connection's driver
    /// runs on the current runtime until the connection ends.
    pub async fn connect(addr: &str, key: Secret) -> Result<BuildletClient, ClientError> {
        Self::connect_watched(addr, key)
            .await
            .map(|(client, _)| client)
    }

    /// [`BuildletClient::connect`], also returning the connection's driver,
    /// which finishes when the connection ends (closed, reset, or silent
    /// past the keep-alive) and aborting which drops the connection.
    pub async fn connect_watched(
        addr: &str,
        key: Secret,
    ) -> Result<(BuildletClient, tokio::task::JoinHandle<()>), ClientError> {
        let tcp = tokio::time::timeout(HEAD_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(HEAD_TIMEOUT))?
            .map_err(|e| ClientError::Transport(format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(20))
                .handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| ClientError::Transport(format!("HTTP/2 with {addr}: {e}")))?;
        let peer = addr.to_string();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::info!(buildlet = %peer, error = %e, "buildlet connection ended");
            }
        });
        Ok((BuildletClient::new(sender, key, addr.to_string()), driver))
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let uri = format!("http://{}{path_and_query}", self.authority);
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.key.expose()),
            )
            .header(http::header::TE, "trailers");
        if let Some(ct) = content_type {
            request = request.header(http::header::CONTENT_TYPE, ct);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut sender = self.sender.clone();
        let response = tokio::time::timeout(HEAD_TIMEOUT, async {
            sender
                .ready()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            sender
                .send_request(request)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))
        })
        .await
        .map_err(|_| ClientError::Timeout(HEAD_TIMEOUT))??;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = collect(response.into_body()).await.unwrap_or_default();
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(response)
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let response = self
            .send(http::Method::GET, "/status", None, Bytes::new())
            .await?;
        let body = collect(response.into_body()).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Transport(format!("status JSON: {e}")))
    }

    /// `PUT /writetgz?dir=`: extracts a gzip tarball under `dir`.
    pub async fn put_tar(&self, dir: &str, tgz: Bytes) -> Result<(), ClientError> {
        let path = format!("/writetgz?dir={}", crate::form::escape_component(dir));
        let response = self.send(http::Method::PUT, &path, None, tgz).await?;
        collect(response.into_body()).await.map(|_| ())
    }

    /// `POST /removeall`.
    pub async fn remove_all(&self, paths: &[&str]) -> Result<(), ClientError> {
        let form = paths
            .iter()
            .map(|p| format!("path={}", crate::form::escape_component(p)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .send(
                http::Method::POST,
                "/removeall",
                Some("application/x-www-form-urlencoded"),
                Bytes::from(form),
            )
            .await?;
        collect(response.into_body()).await.map(|_| ())
    }

    /// `POST /exec` of `cmd` (relative to the work directory, or a system
    /// command with `system`), collecting its output. `on_output` sees each
    /// chunk as it arrives (for streaming logs).
    pub async fn exec(
        &self,
        cmd: &str,
        args: &[&str],
        env: &[String],
        system: bool,
        timeout: Option<Duration>,
        mut on_output: impl FnMut(&[u8]),
    ) -> Result<ExecResult, ClientError> {
        let mut form = vec![format!("cmd={}", crate::form::escape_component(cmd))];
        if system {
            form.push("mode=sys".into());
        }
        form.extend(
            args.iter()
                .map(|a| format!("cmdArg={}", crate::form::escape_component(a))),
        );
        form.extend(
            env.iter()
                .map(|e| format!("env={}", crate::form::escape_component(e))),
        );
        if let Some(t) = timeout {
            form.push(format!("timeout={}", t.as_secs().max(1)));
        }
        let response = self
            .send(
                http::Method::POST,
                "/exec",
                Some("application/x-www-form-urlencoded"),
                Bytes::from(form.join("&")),
            )
            .await?;
        let mut body = response.into_body();
        let mut output = Vec::new();
        let mut process_state = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport(e.to_string()))?;
            match frame.into_data() {
                Ok(data) => {
                    on_output(&data);
                    let room = MAX_COLLECTED_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        process_state = trailers
                            .get("process-state")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                    }
                }
            }
        }
        let process_state = process_state.ok_or(ClientError::NoProcessState)?;
        Ok(ExecResult {
            output,
            process_state,
        })
    }

    /// `POST /halt`: the buildlet kills what runs and (usually) exits.
    pub async fn halt(&self) -> Result<(), ClientError> {
        let response = self
            .send(http::Method::POST, "/halt", None, Bytes::new())
            .await?;
        collect(response.into_body()).await.map(|_| ())
    }
}

async fn collect(body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ClientError::Transport(e.to_string()))
}

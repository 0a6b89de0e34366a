//! A client of `almanac.log.v1.LogService`, for programs that want records,
//! not a corpus.
//!
//! [`LogClient`] wraps the generated stub with the token and message limits
//! set. [`Subscription`] is a subscription that survives the server going
//! away: it remembers where the next record starts and, when the stream
//! breaks, reconnects with backoff and subscribes again from exactly there,
//! so the records it yields have no gap and no duplicate across restarts.

use std::time::Duration;

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use almanac_log::framing;
use almanac_proto::pb::log::log_service_client::LogServiceClient;
use almanac_proto::pb::log::{
    AppendRequest, HeadRequest, HeadResponse, LogRecord, SubscribeRequest,
};

/// The largest message accepted from the server (a record can be large).
const MAX_MESSAGE: usize = 80 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a URL.
    #[error("bad server address {addr:?}: {why}")]
    BadAddress {
        /// The address.
        addr: String,
        /// What is wrong.
        why: String,
    },
    /// Connecting failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The failure.
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("{0}")]
    Status(#[from] Status),
}

/// Turns `host:port` into `http://host:port`; URLs pass through.
pub fn grpc_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// A connected LogService client.
#[derive(Debug, Clone)]
pub struct LogClient {
    inner: LogServiceClient<Channel>,
    token: Option<String>,
}

impl LogClient {
    /// Connects to `addr` (`http://host:port`, `https://host:port` or
    /// `host:port`).
    pub async fn connect(addr: &str) -> Result<LogClient, ClientError> {
        LogClient::connect_with(addr, None).await
    }

    /// [`LogClient::connect`], trusting the CA certificates in `ca_file`
    /// (PEM) beside the system's for `https://` servers.
    pub async fn connect_with(
        addr: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<LogClient, ClientError> {
        let channel = channel(addr, ca_file).await?;
        Ok(LogClient {
            inner: LogServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            token: None,
        })
    }
}

/// A gRPC channel to `addr`: plain HTTP/2 for `http://` and bare
/// `host:port`, TLS (system roots plus `ca_file`) for `https://`.
pub async fn channel(
    addr: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<Channel, ClientError> {
    let url = grpc_url(addr);
    let bad = |why: String| ClientError::BadAddress {
        addr: addr.to_owned(),
        why,
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(e.to_string()))?;
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| bad(format!("reading CA file {}: {e}", path.display())))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|source| ClientError::Connect { addr: url, source })
}

impl LogClient {
    /// Sends `token` as the bearer token on appends.
    pub fn with_token(mut self, token: impl Into<String>) -> LogClient {
        self.token = Some(token.into());
        self
    }

    /// The durable end and the segment table.
    pub async fn head(&mut self) -> Result<HeadResponse, ClientError> {
        Ok(self.inner.head(HeadRequest {}).await?.into_inner())
    }

    /// Appends records; returns their positions once durable.
    pub async fn append(&mut self, records: Vec<Bytes>) -> Result<Vec<u64>, ClientError> {
        let mut req = Request::new(AppendRequest { mutation: records });
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                ClientError::Status(Status::invalid_argument("the token is not valid metadata"))
            })?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(self.inner.append(req).await?.into_inner().position)
    }

    /// Every record from `from`, then live ones, on one stream (which ends
    /// if the connection does).
    pub async fn subscribe(&mut self, from: u64) -> Result<Streaming<LogRecord>, ClientError> {
        Ok(self
            .inner
            .subscribe(SubscribeRequest {
                from_position: from,
            })
            .await?
            .into_inner())
    }
}

/// The position just past a streamed record.
pub fn record_end(rec: &LogRecord) -> u64 {
    rec.position + framing::record_len(rec.offset, rec.mutation.len() as u64)
}

/// A subscription that reconnects and resumes where it left off.
#[derive(Debug)]
pub struct Subscription {
    addr: String,
    ca_file: Option<std::path::PathBuf>,
    next: u64,
    stream: Option<Streaming<LogRecord>>,
    /// Backoff after a failed connect, doubling up to `max_backoff`.
    backoff: Duration,
    max_backoff: Duration,
    reconnects: u64,
}

impl Subscription {
    /// Follows `addr` from `from`. Nothing is dialed until the first
    /// [`Subscription::next`].
    pub fn new(addr: &str, from: u64) -> Subscription {
        Subscription {
            addr: addr.to_owned(),
            ca_file: None,
            next: from,
            stream: None,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            reconnects: 0,
        }
    }

    /// Trusts the CA certificates in `ca_file` (PEM) for an `https://`
    /// server, beside the system's.
    pub fn with_ca_file(mut self, ca_file: Option<std::path::PathBuf>) -> Subscription {
        self.ca_file = ca_file;
        self
    }

    /// Where the next record starts.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// How many times the stream was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The next record. Transport failures and server restarts are retried
    /// forever with backoff; an error the server means (a bad position) is
    /// returned.
    pub async fn next(&mut self) -> Result<LogRecord, ClientError> {
        let mut delay = self.backoff;
        loop {
            if self.stream.is_none() {
                match self.open().await {
                    Ok(s) => self.stream = Some(s),
                    Err(e) if retryable(&e) => {
                        tracing::debug!(error = %e, ?delay, "subscribe failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.max_backoff);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match stream.message().await {
                Ok(Some(rec)) if rec.position == self.next => {
                    self.next = record_end(&rec);
                    return Ok(rec);
                }
                Ok(Some(rec)) if rec.position < self.next => {}
                Ok(Some(rec)) => {
                    return Err(ClientError::Status(Status::data_loss(format!(
                        "the server skipped from position {} to {}",
                        self.next, rec.position
                    ))));
                }
                Ok(None) => {
                    // The server closed the stream (shutting down): resume.
                    self.stream = None;
                    self.reconnects += 1;
                }
                Err(status) => {
                    let e = ClientError::Status(status);
                    if !retryable(&e) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "stream broke; resuming");
                    self.stream = None;
                    self.reconnects += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_backoff);
                }
            }
        }
    }

    async fn open(&mut self) -> Result<Streaming<LogRecord>, ClientError> {
        let mut client = LogClient::connect_with(&self.addr, self.ca_file.as_deref()).await?;
        client.subscribe(self.next).await
    }
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::BadAddress { .. } => false,
        ClientError::Connect { .. } => true,
        ClientError::Status(s) => matches!(
            s.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted
        ),
    }
}

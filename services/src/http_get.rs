//! A minimal HTTP/1.1 client for the daemons' small needs (pubsubhelper's
//! `/waitevent`, build logs from the coordinator, reviews posted to
//! Gerrit): one connection per request, plain HTTP or TLS with the system's roots, bodies bounded by
//! the caller. It never follows redirects or keeps connections.

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A minimal HTTP/1.1 client: one connection per request (nothing here
/// sends enough requests to need a pool), plain or TLS with the system's
/// roots.
pub(crate) struct Client {
    /// The base URL without a trailing slash.
    base: String,
    /// Set for an https base.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client {
    pub(crate) fn new(base_url: &str) -> anyhow::Result<Client> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .with_context(|| format!("{base:?} is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let config = almanac_log_client::tls::client_config(None)?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => anyhow::bail!("{base:?}: the URL must start with http:// or https://"),
        };
        Ok(Client { base, tls })
    }

    /// The base URL, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// GETs `url`, holding at most `limit` bytes of the body.
    pub(crate) async fn get(&self, url: &str, limit: usize) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(http::Method::GET, url, &[], Bytes::new(), limit)
            .await
    }

    /// Sends one request with `headers` and `body`, holding at most `limit`
    /// bytes of the answer's body.
    pub(crate) async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
        limit: usize,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Outgoing {
            method,
            headers,
            body,
            limit,
        };
        let uri: http::Uri = url.parse().context("not a URL")?;
        let host = uri.host().context("no host")?;
        // `[::1]` in a URL is `::1` to connect to and to verify.
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = uri.authority().context("no host")?.as_str().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => exchange(tcp, &authority, &path, request).await,
            Some(connector) => {
                let name = rustls_pki_types::ServerName::try_from(bare_host)
                    .context("not a valid TLS server name")?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {authority}"))?;
                exchange(tls, &authority, &path, request).await
            }
        }
    }
}

/// What to send.
struct Outgoing<'a> {
    method: http::Method,
    headers: &'a [(http::HeaderName, String)],
    body: Bytes,
    limit: usize,
}

/// One request over `io`, driving the connection in this task so that
/// dropping the future (timeout, cancel) closes it.
async fn exchange<T>(
    io: T,
    authority: &str,
    path: &str,
    request: Outgoing<'_>,
) -> anyhow::Result<(StatusCode, Bytes)>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let limit = request.limit;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let mut req = http::Request::builder()
        .method(request.method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "almanac");
    for (name, value) in request.headers {
        req = req.header(name, value);
    }
    let req = req.body(Full::new(request.body))?;
    let work = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the body (limit {limit} bytes): {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        res = &mut work => res,
        closed = &mut conn => {
            closed.context("connection")?;
            // The server closed after answering: the response is complete.
            work.await
        }
    }
}

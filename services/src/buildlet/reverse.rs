//! Reverse mode: the buildlet dials the coordinator, registers, and then
//! serves its routes to the coordinator over that same connection.
//!
//! Registration is Go's request (spec/coordinator.md §2.1): `GET /reverse`
//! with `X-Go-Host-Type`, `X-Go-Builder-Key`, `X-Go-Builder-Hostname` and
//! `X-Go-Builder-Version`, plus `Connection: Upgrade` and
//! `Upgrade: almanac-buildlet-h2` and `X-Revdial-Version: almanac-h2`. On
//! `101 Switching Protocols` the roles invert: the connection carries
//! HTTP/2, the buildlet is its server and the coordinator its client, so
//! the coordinator opens as many concurrent requests as it likes on the one
//! connection (Go's revdial needs a new TCP and TLS dial per request).
//!
//! When the connection ends (the coordinator restarted, the network broke)
//! the buildlet dials again with backoff, from 1 s doubling to 30 s, and
//! registers as a new machine; a refused registration (a wrong key) is
//! retried at the slowest pace, so a fixed key file is picked up without a
//! restart. Never returns until shutdown.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::Buildlet;
use crate::ingest::config::Secret;

/// `Upgrade:` token of the registration.
pub const UPGRADE: &str = "almanac-buildlet-h2";
/// `X-Revdial-Version` of the registration (Go sends `2` for revdial v2).
pub const REVDIAL_VERSION: &str = "almanac-h2";

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Who this buildlet says it is.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `host:port` of the coordinator.
    pub coordinator: String,
    pub host_type: String,
    pub hostname: String,
    pub key: Secret,
}

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// Registered, served, then the connection closed.
    Served,
    /// The coordinator answered the registration with this status.
    Refused(u16, String),
}

/// Registers and serves until `shutdown` resolves, reconnecting as needed.
pub async fn run(
    registration: Registration,
    buildlet: Buildlet,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let attempt = connect_and_serve(&registration, &buildlet);
        let wait = tokio::select! {
            () = &mut shutdown => return,
            ended = attempt => match ended {
                // A stopped buildlet serves no one again.
                _ if buildlet.stopping() => return,
                Ok(Ended::Served) => {
                    tracing::warn!(coordinator = %registration.coordinator, "coordinator connection closed; registering again");
                    backoff = FIRST_BACKOFF;
                    backoff
                }
                Ok(Ended::Refused(status, why)) => {
                    tracing::error!(coordinator = %registration.coordinator, status, why, "registration refused");
                    MAX_BACKOFF
                }
                Err(e) => {
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(coordinator = %registration.coordinator, error = %e, ?wait, "cannot reach the coordinator");
                    wait
                }
            },
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = buildlet.stopped() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn connect_and_serve(reg: &Registration, buildlet: &Buildlet) -> anyhow::Result<Ended> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&reg.coordinator),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {} timed out", reg.coordinator))??;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(conn.with_upgrades());
    let request = http::Request::get("/reverse")
        .header(http::header::HOST, reg.coordinator.as_str())
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, UPGRADE)
        .header("X-Go-Host-Type", reg.host_type.as_str())
        .header("X-Go-Builder-Key", reg.key.expose())
        .header("X-Go-Builder-Hostname", reg.hostname.as_str())
        .header("X-Go-Builder-Version", super::VERSION.to_string())
        .header("X-Revdial-Version", REVDIAL_VERSION)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            response.into_body(),
            4096,
        ))
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
        driver.abort();
        return Ok(Ended::Refused(status, body));
    }
    let upgraded = hyper::upgrade::on(response).await?;
    tracing::info!(coordinator = %reg.coordinator, host_type = %reg.host_type, hostname = %reg.hostname, "registered; serving the coordinator");
    let service = hyper_util::service::TowerToHyperService::new(super::router(buildlet.clone()));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // A coordinator that vanishes without closing is noticed within a
    // minute: pings go unanswered and the connection ends.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(upgraded, service);
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = buildlet.stopped() => {
            // Halted (or shut down): finish the requests in flight, the
            // `/halt` answer among them, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::info!(error = %e, "coordinator connection ended");
    }
    // Whatever was running for a coordinator that is gone is abandoned.
    buildlet.kill_execs();
    Ok(Ended::Served)
}

//! The reverse pool: buildlets that dial the coordinator and register
//! (spec/coordinator.md §2), each then served over its own connection as an
//! HTTP/2 client (see `buildlet::reverse` for the wire protocol).
//!
//! Registration checks, in Go's order and with Go's statuses: the revdial
//! version (`400`), the host-type and hostname headers (`400`), then the
//! key, which must be the host type's key derived from the master key
//! (`412`); a refusal is remembered with its reason (the coordinator
//! records it in the log). A registered machine is asked for `/status`
//! before it joins the pool, as Go does. It leaves the pool when its
//! connection ends: closed, reset, or silent past the HTTP/2 keep-alive.
//!
//! This module holds the live connections only. Which machine runs which
//! build is decided and recorded by the scheduler, never here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

use super::client::BuildletClient;
use crate::buildlet::reverse::{REVDIAL_VERSION, UPGRADE};
use crate::ingest::config::Secret;

/// A connected machine, as status pages and tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub id: u64,
    /// Unique across coordinator runs: what the log calls it.
    pub machine_id: String,
    pub host_type: String,
    pub hostname: String,
    pub version: String,
    pub busy: bool,
    pub connected_at: SystemTime,
}

/// A registration that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub host_type: String,
    pub hostname: String,
    pub status: u16,
    pub reason: String,
    pub at: SystemTime,
}

/// What happened to the pool, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    Registered(MachineInfo),
    Refused(Refusal),
    /// The connection ended.
    Lost {
        id: u64,
        machine_id: String,
        hostname: String,
    },
}

impl PoolEvent {
    /// The event as the log records it (`almanac.farm.v1.MachineEvent`).
    pub fn to_machine_event(&self) -> almanac_proto::pb::farm::MachineEvent {
        use almanac_proto::pb::farm::{
            MachineEvent, MachineLost, MachineLostReason, MachineRegistered,
            MachineRegistrationRejected, machine_event::Event,
        };
        let event = match self {
            PoolEvent::Registered(m) => Event::Registered(MachineRegistered {
                machine_id: m.machine_id.clone(),
                pool: "reverse".into(),
                host_type: m.host_type.clone(),
                hostname: m.hostname.clone(),
                remote_addr: String::new(),
                buildlet_version: m.version.clone(),
                revdial_version: REVDIAL_VERSION.into(),
            }),
            PoolEvent::Refused(r) => Event::RegistrationRejected(MachineRegistrationRejected {
                host_type: r.host_type.clone(),
                hostname: r.hostname.clone(),
                remote_addr: String::new(),
                http_status: i32::from(r.status),
                reason: r.reason.clone(),
            }),
            PoolEvent::Lost { machine_id, .. } => Event::Lost(MachineLost {
                machine_id: machine_id.clone(),
                reason: MachineLostReason::ConnectionClosed as i32,
                detail: "connection ended".into(),
            }),
        };
        MachineEvent {
            meta: None,
            event: Some(event),
        }
    }
}

#[derive(Debug)]
struct Machine {
    info: MachineInfo,
    client: BuildletClient,
    /// Aborting it drops the connection.
    connection: tokio::task::AbortHandle,
}

#[derive(Debug, Default)]
struct PoolState {
    machines: BTreeMap<u64, Machine>,
    refusals: Vec<Refusal>,
    /// Every refusal since the pool started (`refusals` keeps the last
    /// [`REMEMBERED`]).
    refused_total: u64,
    events: Vec<PoolEvent>,
    next_id: u64,
}

/// The reverse pool.
#[derive(Debug)]
pub struct ReversePool {
    master_key: Secret,
    /// Prefixes machine ids, so ids from two runs of the coordinator never
    /// collide in the log.
    instance: String,
    state: Mutex<PoolState>,
    /// Bumped on every change, so waiters wake.
    changed: watch::Sender<u64>,
}

/// How long a silent connection lives: pings every 20 s, 20 s to answer.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Refusals and events remembered (the log keeps the rest).
const REMEMBERED: usize = 1000;

impl ReversePool {
    pub fn new(master_key: Secret) -> Arc<ReversePool> {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self::with_instance(
            master_key,
            &format!("rev{:x}{:x}", started.as_nanos(), std::process::id()),
        )
    }

    /// A pool whose machine ids start with `instance` (the coordinator's
    /// random instance id, so ids never repeat across runs).
    pub fn with_instance(master_key: Secret, instance: &str) -> Arc<ReversePool> {
        Arc::new(ReversePool {
            master_key,
            instance: instance.to_owned(),
            state: Mutex::new(PoolState::default()),
            changed: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn record(state: &mut PoolState, event: PoolEvent) {
        if state.events.len() >= REMEMBERED {
            state.events.remove(0);
        }
        state.events.push(event);
    }

    /// `GET /reverse`, for the coordinator's router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/reverse", axum::routing::get(register))
            .with_state(self.clone())
    }

    /// Connected machines, by id.
    pub fn machines(&self) -> Vec<MachineInfo> {
        self.lock()
            .machines
            .values()
            .map(|m| m.info.clone())
            .collect()
    }

    /// Refused registrations, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.lock().refusals.clone()
    }

    /// Refusals after the first `seen` (up to the last [`REMEMBERED`]),
    /// and how many there have been in all.
    pub fn refusals_since(&self, seen: u64) -> (Vec<Refusal>, u64) {
        let state = self.lock();
        let new = state.refused_total.saturating_sub(seen);
        let keep = usize::try_from(new)
            .unwrap_or(usize::MAX)
            .min(state.refusals.len());
        (
            state.refusals[state.refusals.len() - keep..].to_vec(),
            state.refused_total,
        )
    }

    /// The client of the connected machine the log calls `machine_id`.
    pub fn client_for(&self, machine_id: &str) -> Option<BuildletClient> {
        self.lock()
            .machines
            .values()
            .find(|m| m.info.machine_id == machine_id)
            .map(|m| m.client.clone())
    }

    /// Drops a machine's connection (it leaves the pool as if it had gone;
    /// a supervised buildlet registers again as a new machine).
    pub fn disconnect(&self, machine_id: &str) {
        if let Some(m) = self
            .lock()
            .machines
            .values()
            .find(|m| m.info.machine_id == machine_id)
        {
            m.connection.abort();
        }
    }

    /// A receiver that changes whenever the pool does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Everything that happened, oldest first (the last [`REMEMBERED`]).
    pub fn events(&self) -> Vec<PoolEvent> {
        self.lock().events.clone()
    }

    /// A connected machine's client.
    pub fn client(&self, id: u64) -> Option<BuildletClient> {
        self.lock().machines.get(&id).map(|m| m.client.clone())
    }

    /// Takes an idle machine of `host_type`, marking it busy.
    pub fn take(&self, host_type: &str) -> Option<(MachineInfo, BuildletClient)> {
        let taken = {
            let mut state = self.lock();
            let machine = state
                .machines
                .values_mut()
                .find(|m| m.info.host_type == host_type && !m.info.busy && !m.client.is_closed())?;
            machine.info.busy = true;
            (machine.info.clone(), machine.client.clone())
        };
        self.notify();
        Some(taken)
    }

    /// Marks a machine idle again.
    pub fn release(&self, id: u64) {
        if let Some(m) = self.lock().machines.get_mut(&id) {
            m.info.busy = false;
        }
        self.notify();
    }

    /// Waits until `ready` holds for the pool's machines and refusals, or
    /// `timeout` passes (then false).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        ready: impl Fn(&[MachineInfo], &[Refusal]) -> bool,
    ) -> bool {
        let mut rx = self.changed.subscribe();
        let check = || {
            let state = self.lock();
            let machines: Vec<MachineInfo> =
                state.machines.values().map(|m| m.info.clone()).collect();
            ready(&machines, &state.refusals)
        };
        tokio::time::timeout(timeout, async {
            loop {
                rx.borrow_and_update();
                if check() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && check()
    }

    fn refuse(
        &self,
        host_type: &str,
        hostname: &str,
        status: StatusCode,
        reason: &str,
    ) -> Response {
        let refusal = Refusal {
            host_type: host_type.to_string(),
            hostname: hostname.to_string(),
            status: status.as_u16(),
            reason: reason.to_string(),
            at: SystemTime::now(),
        };
        tracing::warn!(
            host_type,
            hostname,
            status = status.as_u16(),
            reason,
            "reverse registration refused"
        );
        {
            let mut state = self.lock();
            if state.refusals.len() >= REMEMBERED {
                state.refusals.remove(0);
            }
            state.refusals.push(refusal.clone());
            state.refused_total += 1;
            Self::record(&mut state, PoolEvent::Refused(refusal));
        }
        self.notify();
        (status, format!("{reason}\n")).into_response()
    }

    /// Serves one registered connection until it ends.
    async fn serve(
        self: Arc<Self>,
        upgraded: hyper::upgrade::Upgraded,
        host_type: String,
        hostname: String,
        version: String,
    ) {
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .keep_alive_while_idle(true)
            .handshake::<_, Full<Bytes>>(upgraded)
            .await;
        let (sender, connection) = match handshake {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(hostname, error = %e, "reverse connection: HTTP/2 handshake failed");
                return;
            }
        };
        let mut connection = tokio::spawn(connection);
        let key = Secret::new(crate::buildlet::host_key(
            self.master_key.expose().as_bytes(),
            &host_type,
        ));
        let client = BuildletClient::new(sender, key, hostname.clone());
        // Go asks a new machine for its status before using it.
        let status = tokio::select! {
            s = client.status() => s,
            _ = &mut connection => {
                tracing::warn!(hostname, "reverse connection closed before its status check");
                return;
            }
        };
        if let Err(e) = status {
            tracing::warn!(hostname, error = %e, "reverse buildlet failed its status check; dropped");
            connection.abort();
            return;
        }
        let info = {
            let mut state = self.lock();
            state.next_id += 1;
            let info = MachineInfo {
                id: state.next_id,
                machine_id: format!("{}-r{}", self.instance, state.next_id),
                host_type: host_type.clone(),
                hostname: hostname.clone(),
                version,
                busy: false,
                connected_at: SystemTime::now(),
            };
            state.machines.insert(
                info.id,
                Machine {
                    info: info.clone(),
                    client,
                    connection: connection.abort_handle(),
                },
            );
            Self::record(&mut state, PoolEvent::Registered(info.clone()));
            info
        };
        tracing::info!(
            id = info.id,
            host_type,
            hostname,
            "reverse buildlet registered"
        );
        self.notify();
        let ended = connection.await;
        tracing::info!(
            id = info.id,
            hostname,
            ?ended,
            "reverse buildlet connection ended"
        );
        {
            let mut state = self.lock();
            state.machines.remove(&info.id);
            Self::record(
                &mut state,
                PoolEvent::Lost {
                    id: info.id,
                    machine_id: info.machine_id.clone(),
                    hostname: hostname.clone(),
                },
            );
        }
        self.notify();
    }
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `GET /reverse`: Go's checks, then `101` and the connection is the
/// machine's.
async fn register(State(pool): State<Arc<ReversePool>>, mut req: Request) -> Response {
    let host_type = header(&req, "X-Go-Host-Type").to_string();
    let hostname = header(&req, "X-Go-Builder-Hostname").to_string();
    let version = header(&req, "X-Go-Builder-Version").to_string();
    let revdial = header(&req, "X-Revdial-Version");
    if revdial.is_empty() {
        return pool.refuse(
            &host_type,
            &hostname,
            StatusCode::BAD_REQUEST,
            "buildlet binary is too old",
        );
    }
    if revdial != REVDIAL_VERSION {
        return pool.refuse(
            &host_type,
            &hostname,
            StatusCode::BAD_REQUEST,
            &format!("unsupported X-Revdial-Version {revdial:?} (want {REVDIAL_VERSION})"),
        );
    }
    if host_type.is_empty() || hostname.is_empty() {
        return pool.refuse(
            &host_type,
            &hostname,
            StatusCode::BAD_REQUEST,
            "missing X-Go-Host-Type or X-Go-Builder-Hostname",
        );
    }
    let want = crate::buildlet::host_key(pool.master_key.expose().as_bytes(), &host_type);
    let given = header(&req, "X-Go-Builder-Key");
    if !crate::buildlet::keys_match(given.as_bytes(), want.as_bytes()) {
        return pool.refuse(
            &host_type,
            &hostname,
            StatusCode::PRECONDITION_FAILED,
            "bad key for this host type",
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let serving = pool.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serving.serve(upgraded, host_type, hostname, version).await,
            Err(e) => tracing::warn!(error = %e, "reverse registration: upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (http::header::CONNECTION, "Upgrade"),
            (http::header::UPGRADE, UPGRADE),
        ],
    )
        .into_response()
}

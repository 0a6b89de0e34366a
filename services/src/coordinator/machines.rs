//! The machines the coordinator can reach right now: reverse buildlets that
//! registered (the [`ReversePool`]) and listen-mode buildlets at addresses
//! its configuration names, each dialed and redialed with backoff.
//!
//! Every machine is asked for `/status` at an interval (Go's health loop;
//! HTTP/2 lets the check run beside a build's commands); one that does not
//! answer in time is dropped as lost by heartbeat, which also catches a
//! buildlet whose connection is alive but whose process is stuck.
//!
//! This is the live side only: which machines are connected and how to talk
//! to them. Whether a machine is busy, and with what, is the farm fold's
//! business (the coordinator records every assignment in the log); the
//! coordinator compares this registry with the fold and records the
//! difference (registered, lost).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use almanac_proto::pb::farm::MachineLostReason;

use super::client::BuildletClient;
use super::reverse::ReversePool;
use crate::ingest::config::Secret;

/// A connected machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMachine {
    /// Unique across connections and coordinator runs.
    pub machine_id: String,
    pub host_type: String,
    pub hostname: String,
    /// "reverse" or "static".
    pub pool: &'static str,
    pub version: String,
    pub connected_at: SystemTime,
}

/// A listen-mode buildlet the coordinator dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBuildlet {
    pub host_type: String,
    /// `host:port`.
    pub addr: String,
}

#[derive(Debug)]
struct StaticMachine {
    info: LiveMachine,
    client: BuildletClient,
    driver: tokio::task::AbortHandle,
}

/// Every reachable machine.
#[derive(Debug)]
pub struct Machines {
    reverse: Arc<ReversePool>,
    statics: Mutex<BTreeMap<String, StaticMachine>>,
    /// Why machines dropped here were dropped, until the loss is recorded.
    losses: Mutex<BTreeMap<String, (MachineLostReason, String)>>,
    changed: watch::Sender<u64>,
    instance: String,
}

/// The longest wait between dials of an unreachable listen-mode buildlet.
const MAX_REDIAL: Duration = Duration::from_secs(10);
/// A connection that lasts this long resets the redial backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

impl Machines {
    /// A registry over `reverse`; `instance` prefixes the ids of machines
    /// dialed here.
    pub fn new(reverse: Arc<ReversePool>, instance: &str) -> Arc<Machines> {
        Arc::new(Machines {
            reverse,
            statics: Mutex::new(BTreeMap::new()),
            losses: Mutex::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
            instance: instance.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StaticMachine>> {
        self.statics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every connected machine, by machine id.
    pub fn live(&self) -> Vec<LiveMachine> {
        let mut all: Vec<LiveMachine> = self
            .reverse
            .machines()
            .into_iter()
            .map(|m| LiveMachine {
                machine_id: m.machine_id,
                host_type: m.host_type,
                hostname: m.hostname,
                pool: "reverse",
                version: m.version,
                connected_at: m.connected_at,
            })
            .collect();
        all.extend(self.lock().values().map(|m| m.info.clone()));
        all.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        all
    }

    /// How to talk to a connected machine.
    pub fn client(&self, machine_id: &str) -> Option<BuildletClient> {
        if let Some(m) = self.lock().get(machine_id) {
            return (!m.client.is_closed()).then(|| m.client.clone());
        }
        self.reverse.client_for(machine_id)
    }

    /// [`Machines::disconnect`], remembering why for the loss's record (the
    /// first reason given stands: a build that fails because its machine
    /// was dropped does not rename the cause).
    pub fn disconnect_because(&self, machine_id: &str, reason: MachineLostReason, detail: &str) {
        if self.client(machine_id).is_none() {
            // Already gone (and its loss maybe recorded): nothing to add.
            self.disconnect(machine_id);
            return;
        }
        self.losses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(machine_id.to_owned())
            .or_insert_with(|| (reason, detail.to_owned()));
        self.disconnect(machine_id);
    }

    /// Forgets loss reasons of machines `keep` does not want (ones dropped
    /// before their registration was recorded, whose loss never will be).
    pub fn retain_losses(&self, keep: impl Fn(&str) -> bool) {
        self.losses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| keep(id));
    }

    /// Why a machine that left was dropped here, if it was (once).
    pub fn take_loss(&self, machine_id: &str) -> Option<(MachineLostReason, String)> {
        self.losses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(machine_id)
    }

    /// Asks every machine for `/status` each `every`; one that fails or
    /// takes longer than `timeout` twice in a row is dropped as lost by
    /// heartbeat (once would drop a machine that is merely loaded).
    pub fn spawn_health_checks(self: &Arc<Self>, every: Duration, timeout: Duration) {
        let machines = self.clone();
        tokio::spawn(async move {
            let mut missed: BTreeMap<String, u32> = BTreeMap::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let checks: Vec<_> = machines
                    .live()
                    .into_iter()
                    .filter_map(|m| {
                        let client = machines.client(&m.machine_id)?;
                        Some(async move {
                            let answer = tokio::time::timeout(timeout, client.status()).await;
                            (m, answer)
                        })
                    })
                    .map(tokio::spawn)
                    .collect();
                let mut checked = std::collections::BTreeSet::new();
                for check in checks {
                    let Ok((m, answer)) = check.await else {
                        continue;
                    };
                    checked.insert(m.machine_id.clone());
                    let why = match answer {
                        Ok(Ok(_)) => {
                            missed.remove(&m.machine_id);
                            continue;
                        }
                        Ok(Err(e)) => format!("status checks failed: {e}"),
                        Err(_) => format!("no answer to two status checks within {timeout:?}"),
                    };
                    let count = missed.entry(m.machine_id.clone()).or_insert(0);
                    *count += 1;
                    if *count < 2 {
                        tracing::info!(machine = %m.machine_id, why, "machine missed a health check");
                        continue;
                    }
                    missed.remove(&m.machine_id);
                    tracing::warn!(machine = %m.machine_id, hostname = %m.hostname, why, "machine failed its health checks; dropping it");
                    machines.disconnect_because(&m.machine_id, MachineLostReason::Heartbeat, &why);
                }
                missed.retain(|id, _| checked.contains(id));
            }
        });
    }

    /// Drops a machine's connection: it is gone from [`Machines::live`] at
    /// once (a listen-mode buildlet is redialed as a new machine; a reverse
    /// one registers again).
    pub fn disconnect(&self, machine_id: &str) {
        if let Some(m) = self.lock().remove(machine_id) {
            m.driver.abort();
        }
        self.reverse.disconnect(machine_id);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Resolves when the set of machines may have changed.
    pub fn changes(&self) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        (self.changed.subscribe(), self.reverse.changes())
    }

    /// Dials `buildlet` and keeps it connected for as long as the task
    /// runs: each connection that passes its status check is a new machine,
    /// gone when the connection ends; then it redials with backoff.
    pub fn spawn_static(self: &Arc<Self>, buildlet: StaticBuildlet, key: Secret) {
        let machines = self.clone();
        tokio::spawn(async move {
            let mut connection = 0u64;
            let mut delay = Duration::from_millis(100);
            loop {
                match machines.dial(&buildlet, &key, connection).await {
                    Ok(mut driver) => {
                        connection += 1;
                        let connected = std::time::Instant::now();
                        let _ = (&mut driver).await;
                        let id = format!("{}-s{}-{}", machines.instance, buildlet.addr, connection);
                        machines.lock().remove(&id);
                        machines.changed.send_modify(|n| *n += 1);
                        tracing::info!(addr = %buildlet.addr, "listen-mode buildlet connection ended");
                        // A connection that lasted is a fresh start; one that
                        // ended at once (a buildlet that breaks every build)
                        // keeps backing off.
                        if connected.elapsed() > STABLE_CONNECTION {
                            delay = Duration::from_millis(100);
                        } else {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(MAX_REDIAL);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(addr = %buildlet.addr, error = %e, ?delay, "dialing buildlet failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_REDIAL);
                    }
                }
            }
        });
    }

    async fn dial(
        &self,
        buildlet: &StaticBuildlet,
        key: &Secret,
        connection: u64,
    ) -> Result<tokio::task::JoinHandle<()>, super::client::ClientError> {
        let (client, driver) = BuildletClient::connect_watched(&buildlet.addr, key.clone()).await?;
        let status = match tokio::time::timeout(Duration::from_secs(10), client.status()).await {
            Ok(s) => s,
            Err(_) => Err(super::client::ClientError::Timeout(Duration::from_secs(10))),
        };
        if let Err(e) = status {
            driver.abort();
            return Err(e);
        }
        let info = LiveMachine {
            machine_id: format!("{}-s{}-{}", self.instance, buildlet.addr, connection + 1),
            host_type: buildlet.host_type.clone(),
            hostname: buildlet.addr.clone(),
            pool: "static",
            version: String::new(),
            connected_at: SystemTime::now(),
        };
        tracing::info!(addr = %buildlet.addr, machine = %info.machine_id, "listen-mode buildlet connected");
        self.lock().insert(
            info.machine_id.clone(),
            StaticMachine {
                info,
                client,
                driver: driver.abort_handle(),
            },
        );
        self.changed.send_modify(|n| *n += 1);
        Ok(driver)
    }

    /// The reverse pool (for its `/reverse` route and refusals).
    pub fn reverse(&self) -> &Arc<ReversePool> {
        &self.reverse
    }
}

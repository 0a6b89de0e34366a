//! The coordinator's status ("farmer") pages, rendered from the projections
//! alone (spec/coordinator.md §6): the HTML status page `/`, one build's
//! page `/build/<id>`, the JSON status `/status.json`, Go's
//! `/status/reverse.json` (`types.ReverseBuilderStatus`, §2.3) and
//! `/status/post-submit-active.json` (§4.8).
//!
//! Everything shown comes from the farm fold ([`Farm`]: queues, machines,
//! builds with their steps, refused registrations) and the build
//! environments ([`Environments`]: expected machines, notes, known issues),
//! so a page shows exactly what a replay of the log would show, and two
//! coordinators that folded the same prefix render the same bytes.
//!
//! These are pure functions: the current time is a parameter. This module
//! never does IO, never reads a clock, never appends to the log and never
//! talks to a machine; a page that needs something the fold does not keep
//! says so instead of asking anyone. Every string that came from the log or
//! the configuration is HTML-escaped before it reaches a page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use almanac_projections::farm::{Blob, Build, BuildState, Farm, Machine, Nanos, Step, TrySet};
use almanac_proto::pb::farm::{BuildKind, BuildOutcome, PriorityClass};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::gerrit::BuilderVerdict;
use crate::farm::env::{Environments, HostType, Pool};

/// How many finished builds the pages list (Go's `statusDone` ring).
pub const RECENT_BUILDS: usize = 30;

/// How many of an active build's last steps the status page shows (Go
/// shows an active build's last 3 events).
pub const LAST_STEPS: usize = 3;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// What the page header shows about the running coordinator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Header {
    /// The coordinator instance id (as EventMeta.coordinator_instance).
    pub instance: String,
    pub version: String,
    /// Unix seconds when this process started.
    pub started_unix: i64,
    /// How far the coordinator has folded the log (a byte position).
    pub log_position: u64,
}

/// Everything the status page shows, serializable as the JSON status
/// (`/status.json`). Times are RFC 3339 in UTC (`None` when the log did not
/// say), durations are Go-like text ("1m3s", "4.2s").
#[derive(Debug, Clone, Serialize)]
pub struct FarmStatus {
    pub header: Header,
    /// When this status was computed.
    pub now: String,
    /// When the process started (from [`Header::started_unix`]).
    pub started: String,
    /// Time since the process started.
    pub uptime: String,
    pub totals: Totals,
    /// Every host type that is configured, has a machine or has a waiting
    /// request, by name.
    pub host_types: Vec<HostTypeStatus>,
    /// Every connected machine, by host type, then hostname, then id (Go's
    /// `byTypeThenHostname`).
    pub machines: Vec<MachineStatus>,
    /// Running builds, by id.
    pub active_builds: Vec<ActiveBuild>,
    /// Builds requested and not started, oldest request first.
    pub pending_builds: Vec<PendingBuild>,
    /// The last [`RECENT_BUILDS`] finished builds, most recent first.
    pub recent_builds: Vec<RecentBuild>,
    /// The refused registrations the fold keeps, newest first.
    pub rejections: Vec<RejectionStatus>,
    /// Every refused registration ever recorded.
    pub rejections_total: u64,
    /// Every configured builder, by name.
    pub builders: Vec<BuilderStatus>,
}

/// The counts the "Running" section shows.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Builds not done, queued or running (Go's active map).
    pub live_builds: usize,
    /// Builds running on a machine.
    pub running_builds: usize,
    /// Of those, how many run on a reverse machine.
    pub running_on_reverse: usize,
    /// Builds requested and not started.
    pub pending_builds: usize,
    pub machines_connected: usize,
    pub machines_busy: usize,
    /// Buildlet requests waiting in every queue (gomote sessions included).
    pub requests_waiting: usize,
}

/// One host type: its pool as configured and as connected, and its queue.
#[derive(Debug, Clone, Serialize)]
pub struct HostTypeStatus {
    pub host_type: String,
    /// `reverse` or `listen` as `env/hosts.toml` says; empty for a host
    /// type the configuration does not define.
    pub pool: &'static str,
    /// `expected_machines` of the configuration (0 when not configured).
    pub expected: u32,
    pub connected: usize,
    pub idle: usize,
    pub busy: usize,
    /// `expected - connected`, never below 0.
    pub missing: usize,
    pub waiting: Waiters,
    /// The configuration's notes.
    pub notes: String,
}

/// The requests waiting in one host type's queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Waiters {
    pub count: usize,
    /// The earliest request time among them.
    pub oldest: Option<String>,
    /// The latest request time among them.
    pub newest: Option<String>,
    /// How long the oldest has waited.
    pub oldest_wait: Option<String>,
    pub gomote: usize,
    #[serde(rename = "try")]
    pub trybot: usize,
    /// Post-submit requests (and requests of no class, which the queue
    /// serves as post-submit).
    pub regular: usize,
}

/// One connected machine.
#[derive(Debug, Clone, Serialize)]
pub struct MachineStatus {
    pub machine_id: String,
    pub host_type: String,
    pub hostname: String,
    pub pool: String,
    /// The buildlet's version.
    pub version: String,
    /// When it registered.
    pub registered: Option<String>,
    /// How long ago it registered.
    pub connected_for: Option<String>,
    /// Assigned to a request or running a build.
    pub busy: bool,
    /// The request it is assigned to, while busy.
    pub assigned_request: Option<String>,
    /// The build it runs, once started.
    pub running_build: Option<String>,
}

/// What every build list shows of a build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRow {
    pub build_id: String,
    /// The build's page, `/build/<id>`.
    pub url: String,
    pub builder: String,
    pub rev: String,
    /// The x/ repository, empty for the go repository.
    pub sub_name: String,
    pub sub_rev: String,
    pub host_type: String,
    /// `post-submit`, `try`, `slowbot`, `try-xrepo`, `try-go-release`,
    /// `gomote` or `unspecified`.
    pub kind: &'static str,
    pub attempt: i32,
    pub branch: String,
    /// Go's displayed state (spec §4.4): `waiting_for_machine`, `assigned`
    /// (a machine is assigned, the build has not started), `running`,
    /// `succeeded`, `failed`, `canceled`, `skipped`, or `comm_error` (ended
    /// by a communication error; its work is requested again).
    pub state: &'static str,
    /// The machine it runs on or is assigned to (the fold forgets it once
    /// the build ends).
    pub machine: Option<String>,
    pub requested: Option<String>,
    pub started: Option<String>,
    pub done: Option<String>,
    /// Waiting: since the request. Running: since the start. Done: from the
    /// start (or the request, if it never started) to the end.
    pub duration: Option<String>,
}

/// One step of a build.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub name: String,
    pub detail: String,
    /// `running`, `ok`, `failed`, or `unfinished` (the build ended while
    /// the step had not).
    pub state: &'static str,
    /// The step's error, when it failed.
    pub error: Option<String>,
    pub started: Option<String>,
    /// Finished: its recorded duration. Running: how long it has run.
    pub duration: Option<String>,
}

/// A running build.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveBuild {
    #[serde(flatten)]
    pub build: BuildRow,
    /// Every step so far, in order.
    pub steps: Vec<StepStatus>,
    /// The last [`LAST_STEPS`] of them, which the status page shows.
    pub last_steps: Vec<StepStatus>,
}

/// A build waiting for a machine.
#[derive(Debug, Clone, Serialize)]
pub struct PendingBuild {
    #[serde(flatten)]
    pub build: BuildRow,
    /// How many requests are ahead of its first waiting request in its host
    /// type's queue (in Go's priority order); `None` when none of its
    /// requests waits (it has a machine assigned, or its request was
    /// withdrawn).
    pub ahead: Option<usize>,
}

/// A finished build.
#[derive(Debug, Clone, Serialize)]
pub struct RecentBuild {
    #[serde(flatten)]
    pub build: BuildRow,
    /// `passed`, `failed`, `comm_error`, `canceled`, `skipped` or
    /// `unspecified`.
    pub outcome: &'static str,
    /// The completion's message (or the cancel or skip reason).
    pub done_msg: String,
    /// The stored log, when the completion named one.
    pub log: Option<LogLink>,
}

/// A stored build log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLink {
    pub sha256: String,
    pub size: u64,
    /// `/log/<sha256>`.
    pub url: String,
}

/// A registration the coordinator refused.
#[derive(Debug, Clone, Serialize)]
pub struct RejectionStatus {
    pub host_type: String,
    pub hostname: String,
    pub remote_addr: String,
    pub http_status: i32,
    pub reason: String,
    pub time: Option<String>,
    /// How long ago.
    pub age: Option<String>,
}

/// A configured builder.
#[derive(Debug, Clone, Serialize)]
pub struct BuilderStatus {
    pub name: String,
    pub host_type: String,
    pub try_bot: bool,
    pub try_only: bool,
    pub notes: String,
    /// Go issue numbers.
    pub known_issues: Vec<i64>,
}

/// The status of the whole farm at `now_unix_nanos`.
pub fn farm_status(
    farm: &Farm,
    envs: &Environments,
    header: &Header,
    now_unix_nanos: i128,
) -> FarmStatus {
    let now = now_unix_nanos;

    let mut hosts: BTreeMap<&str, HostTypeStatus> = BTreeMap::new();
    for (name, host) in &envs.hosts {
        hosts.insert(name.as_str(), host_row(name, Some(host)));
    }
    let mut machines = Vec::new();
    for m in farm.machines() {
        let row = hosts
            .entry(m.host_type.as_str())
            .or_insert_with(|| host_row(&m.host_type, None));
        row.connected += 1;
        if is_busy(m) {
            row.busy += 1;
        } else {
            row.idle += 1;
        }
        machines.push(machine_status(m, now));
    }
    machines.sort_by(|a, b| {
        (&a.host_type, &a.hostname, &a.machine_id).cmp(&(&b.host_type, &b.hostname, &b.machine_id))
    });
    for (host_type, _) in farm.queue_lengths() {
        let row = hosts
            .entry(host_type)
            .or_insert_with(|| host_row(host_type, None));
        row.waiting = waiters(farm, host_type, now);
    }
    for row in hosts.values_mut() {
        row.missing = (row.expected as usize).saturating_sub(row.connected);
    }

    let active_builds: Vec<ActiveBuild> = farm
        .active_builds()
        .map(|b| {
            let steps: Vec<StepStatus> = b.steps.iter().map(|s| step_status(b, s, now)).collect();
            let last_steps = steps[steps.len().saturating_sub(LAST_STEPS)..].to_vec();
            ActiveBuild {
                build: build_row(farm, b, now),
                steps,
                last_steps,
            }
        })
        .collect();
    let running_on_reverse = farm
        .active_builds()
        .filter(|b| match &b.state {
            BuildState::Running { machine_id } => farm
                .machine(machine_id)
                .is_some_and(|m| m.pool == Pool::Reverse.as_str()),
            _ => false,
        })
        .count();

    let ahead = queue_positions(farm);
    let pending_builds: Vec<PendingBuild> = farm
        .pending_builds()
        .into_iter()
        .map(|b| PendingBuild {
            ahead: ahead.get(b.build_id.as_str()).copied(),
            build: build_row(farm, b, now),
        })
        .collect();

    let recent_builds: Vec<RecentBuild> = farm
        .recent_builds(RECENT_BUILDS)
        .into_iter()
        .map(|b| {
            let (outcome, done_msg) = match &b.state {
                BuildState::Done { outcome, done_msg } => {
                    (outcome_name(*outcome), done_msg.clone())
                }
                _ => ("", String::new()),
            };
            RecentBuild {
                build: build_row(farm, b, now),
                outcome,
                done_msg,
                log: b.log.as_ref().map(log_link),
            }
        })
        .collect();

    let mut rejections: Vec<RejectionStatus> = farm
        .rejections()
        .map(|r| RejectionStatus {
            host_type: r.host_type.clone(),
            hostname: r.hostname.clone(),
            remote_addr: r.remote_addr.clone(),
            http_status: r.http_status,
            reason: r.reason.clone(),
            time: rfc3339(r.time),
            age: age(now, r.time),
        })
        .collect();
    rejections.reverse();

    let builders = envs
        .builders
        .values()
        .map(|b| BuilderStatus {
            name: b.name.clone(),
            host_type: b.host_type.clone(),
            try_bot: b.try_bot,
            try_only: b.try_only,
            notes: b.notes.clone(),
            known_issues: b.known_issues.clone(),
        })
        .collect();

    let started_nanos = i128::from(header.started_unix) * NANOS_PER_SEC;
    let totals = Totals {
        live_builds: farm.live_builds().count(),
        running_builds: active_builds.len(),
        running_on_reverse,
        pending_builds: pending_builds.len(),
        machines_connected: machines.len(),
        machines_busy: machines.iter().filter(|m| m.busy).count(),
        requests_waiting: farm.queue_lengths().map(|(_, n)| n).sum(),
    };
    FarmStatus {
        header: header.clone(),
        now: rfc3339(now).unwrap_or_default(),
        started: rfc3339(started_nanos).unwrap_or_default(),
        uptime: duration(now - started_nanos),
        totals,
        host_types: hosts.into_values().collect(),
        machines,
        active_builds,
        pending_builds,
        recent_builds,
        rejections,
        rejections_total: farm.rejections_total(),
        builders,
    }
}

fn host_row(name: &str, config: Option<&HostType>) -> HostTypeStatus {
    HostTypeStatus {
        host_type: name.to_string(),
        pool: config.map_or("", |h| h.pool.as_str()),
        expected: config.map_or(0, |h| h.expected_machines),
        connected: 0,
        idle: 0,
        busy: 0,
        missing: 0,
        waiting: Waiters::default(),
        notes: config.map_or_else(String::new, |h| h.notes.clone()),
    }
}

/// Busy as the pool means it: assigned to a request or running a build.
fn is_busy(m: &Machine) -> bool {
    m.assigned_to.is_some() || m.running.is_some()
}

fn waiters(farm: &Farm, host_type: &str, now: Nanos) -> Waiters {
    let mut w = Waiters::default();
    let mut oldest: Option<Nanos> = None;
    let mut newest: Option<Nanos> = None;
    for it in farm.queue(host_type) {
        w.count += 1;
        match it.class {
            PriorityClass::Gomote => w.gomote += 1,
            PriorityClass::Try => w.trybot += 1,
            PriorityClass::Regular | PriorityClass::Unspecified => w.regular += 1,
        }
        if it.request_time != 0 {
            oldest = Some(oldest.map_or(it.request_time, |t| t.min(it.request_time)));
            newest = Some(newest.map_or(it.request_time, |t| t.max(it.request_time)));
        }
    }
    w.oldest = oldest.and_then(rfc3339);
    w.newest = newest.and_then(rfc3339);
    w.oldest_wait = oldest.map(|t| duration(now - t));
    w
}

/// Each build with a waiting request to how many requests are ahead of its
/// first one in its host type's queue. One pass over every queue.
fn queue_positions(farm: &Farm) -> HashMap<&str, usize> {
    let mut out: HashMap<&str, usize> = HashMap::new();
    for (host_type, _) in farm.queue_lengths() {
        for (i, w) in farm.queue(host_type).enumerate() {
            if w.build_id.is_empty() {
                continue;
            }
            let ahead = out.entry(w.build_id.as_str()).or_insert(i);
            *ahead = (*ahead).min(i);
        }
    }
    out
}

fn machine_status(m: &Machine, now: Nanos) -> MachineStatus {
    MachineStatus {
        machine_id: m.machine_id.clone(),
        host_type: m.host_type.clone(),
        hostname: m.hostname.clone(),
        pool: m.pool.clone(),
        version: m.version.clone(),
        registered: rfc3339(m.registered_time),
        connected_for: age(now, m.registered_time),
        busy: is_busy(m),
        assigned_request: m.assigned_to.clone(),
        running_build: m.running.clone(),
    }
}

fn build_row(farm: &Farm, b: &Build, now: Nanos) -> BuildRow {
    BuildRow {
        build_id: b.build_id.clone(),
        url: build_url(&b.build_id),
        builder: b.builder.clone(),
        rev: b.rev.clone(),
        sub_name: b.sub_name.clone(),
        sub_rev: b.sub_rev.clone(),
        host_type: b.host_type.clone(),
        kind: kind_name(b.kind),
        attempt: b.attempt,
        branch: b.branch.clone(),
        state: display_state(farm, b),
        machine: machine_of(farm, b).map(str::to_string),
        requested: rfc3339(b.requested_time),
        started: b.started_time.and_then(rfc3339),
        done: b.done_time.and_then(rfc3339),
        duration: build_duration(b, now).map(duration),
    }
}

/// The machine a build runs on, or is assigned to while it has not started.
fn machine_of<'a>(farm: &'a Farm, b: &'a Build) -> Option<&'a str> {
    match &b.state {
        BuildState::Running { machine_id } => Some(machine_id.as_str()),
        BuildState::Queued => farm
            .machine_of(&b.build_id)
            .filter(|id| farm.machine(id).is_some()),
        BuildState::Done { .. } => b.ran_on.as_deref(),
    }
}

fn display_state(farm: &Farm, b: &Build) -> &'static str {
    match &b.state {
        BuildState::Queued if machine_of(farm, b).is_some() => "assigned",
        BuildState::Queued => "waiting_for_machine",
        BuildState::Running { .. } => "running",
        BuildState::Done { outcome, .. } => match outcome {
            BuildOutcome::Passed => "succeeded",
            BuildOutcome::Canceled => "canceled",
            BuildOutcome::Skipped => "skipped",
            BuildOutcome::CommError => "comm_error",
            BuildOutcome::Failed | BuildOutcome::Unspecified => "failed",
        },
    }
}

fn outcome_name(outcome: BuildOutcome) -> &'static str {
    match outcome {
        BuildOutcome::Passed => "passed",
        BuildOutcome::Failed => "failed",
        BuildOutcome::CommError => "comm_error",
        BuildOutcome::Canceled => "canceled",
        BuildOutcome::Skipped => "skipped",
        BuildOutcome::Unspecified => "unspecified",
    }
}

fn kind_name(kind: BuildKind) -> &'static str {
    match kind {
        BuildKind::PostSubmit => "post-submit",
        BuildKind::Try => "try",
        BuildKind::Slowbot => "slowbot",
        BuildKind::TryXrepo => "try-xrepo",
        BuildKind::TryGoRelease => "try-go-release",
        BuildKind::Gomote => "gomote",
        BuildKind::Unspecified => "unspecified",
    }
}

/// Whether a build belongs to a try set (Go's `isTry`: a trybot, a slowbot,
/// or an x/ repo or release try run).
fn is_try(kind: BuildKind) -> bool {
    matches!(
        kind,
        BuildKind::Try | BuildKind::Slowbot | BuildKind::TryXrepo | BuildKind::TryGoRelease
    )
}

fn build_duration(b: &Build, now: Nanos) -> Option<Nanos> {
    let requested = Some(b.requested_time).filter(|&t| t != 0);
    let started = b.started_time.filter(|&t| t != 0);
    match &b.state {
        BuildState::Queued => requested.map(|t| now - t),
        BuildState::Running { .. } => started.or(requested).map(|t| now - t),
        BuildState::Done { .. } => {
            let end = b.done_time.filter(|&t| t != 0)?;
            started.or(requested).map(|t| end - t)
        }
    }
}

fn step_status(b: &Build, s: &Step, now: Nanos) -> StepStatus {
    let build_done = matches!(b.state, BuildState::Done { .. });
    let (state, error, took) = match &s.error {
        None if build_done => ("unfinished", None, None),
        None => {
            let took = if s.started_time != 0 {
                Some(now - s.started_time)
            } else {
                None
            };
            ("running", None, took)
        }
        Some(e) if e.is_empty() => ("ok", None, s.duration_ns),
        Some(e) => ("failed", Some(e.clone()), s.duration_ns),
    };
    StepStatus {
        name: s.name.clone(),
        detail: s.detail.clone(),
        state,
        error,
        started: rfc3339(s.started_time),
        duration: took.map(duration),
    }
}

fn log_link(blob: &Blob) -> LogLink {
    LogLink {
        sha256: blob.sha256.clone(),
        size: blob.size,
        url: format!("/log/{}", path_segment(&blob.sha256)),
    }
}

/// `/build/<id>`, the id percent-encoded as a path segment.
fn build_url(id: &str) -> String {
    format!("/build/{}", path_segment(id))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so an
/// id from the log can never break out of its path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// RFC 3339 in UTC, whole seconds; `None` for 0 (the log did not say) and
/// for times chrono cannot represent.
fn rfc3339(t: Nanos) -> Option<String> {
    if t == 0 {
        return None;
    }
    let secs = i64::try_from(t.div_euclid(NANOS_PER_SEC)).ok()?;
    let nanos = u32::try_from(t.rem_euclid(NANOS_PER_SEC)).ok()?;
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// How long ago `t` was, or `None` when `t` is unknown.
fn age(now: Nanos, t: Nanos) -> Option<String> {
    if t == 0 {
        None
    } else {
        Some(duration(now - t))
    }
}

/// A duration as Go-like text: "350ms", "4.2s" (tenths, truncated), "1m3s",
/// "1h2m3s". Negative durations (clock skew between appenders) show as 0.
fn duration(ns: i128) -> String {
    let ns = ns.max(0);
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", ns / 1_000);
    }
    if ns < NANOS_PER_SEC {
        return format!("{}ms", ns / 1_000_000);
    }
    let secs = ns / NANOS_PER_SEC;
    if secs < 60 {
        let tenths = ns % NANOS_PER_SEC / 100_000_000;
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An optional text, escaped, or a dash.
fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "-".to_string(), escape)
}

/// The first 12 characters of a revision (whole characters, so a malformed
/// revision from the log never splits one).
fn short(rev: &str) -> String {
    rev.chars().take(12).collect()
}

const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222;line-height:1.4}\
h1{font-size:1.4em}\
h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}\
th,td{padding:2px 10px 2px 0;text-align:left;vertical-align:top;border-bottom:1px solid #eee}\
code,pre{font-family:ui-monospace,monospace;font-size:0.95em}\
pre{white-space:pre-wrap;margin:0}\
.ok{color:#060}.failed{color:#a00}.running{color:#04a}.muted{color:#777}";

fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

fn page_end(out: &mut String) {
    out.push_str("</body>\n</html>\n");
}

fn build_link(row: &BuildRow) -> String {
    format!(
        "<a href=\"{}\"><code>{}</code></a>",
        escape(&row.url),
        escape(&row.build_id)
    )
}

/// A build's revision, with its x/ repository and revision when it has one.
fn revision_html(row: &BuildRow) -> String {
    let mut s = format!("<code>{}</code>", escape(&short(&row.rev)));
    if !row.sub_name.is_empty() {
        let _ = write!(
            s,
            " {}@<code>{}</code>",
            escape(&row.sub_name),
            escape(&short(&row.sub_rev))
        );
    }
    s
}

/// The CSS class of a state or outcome word.
fn state_class(state: &str) -> &'static str {
    match state {
        "ok" | "passed" | "succeeded" => "ok",
        "failed" => "failed",
        "running" | "assigned" => "running",
        _ => "muted",
    }
}

/// `/`: the status page as a full HTML document.
pub fn render_html(status: &FarmStatus) -> String {
    let mut out = String::with_capacity(16 * 1024);
    page_start(&mut out, "almanac coordinator");
    out.push_str("<h1>almanac coordinator</h1>\n");
    write_running(&mut out, status);
    write_scheduler(&mut out, status);
    write_pools(&mut out, status);
    write_active(&mut out, status);
    write_pending(&mut out, status);
    write_recent(&mut out, status);
    write_rejections(&mut out, status);
    write_builders(&mut out, status);
    page_end(&mut out);
    out
}

fn write_running(out: &mut String, s: &FarmStatus) {
    let t = &s.totals;
    let h = &s.header;
    out.push_str("<h2 id=\"running\">Running</h2>\n<ul>\n");
    let _ = writeln!(
        out,
        "<li>Builds: {} ({} running, {} of them on reverse machines; {} waiting)</li>",
        t.live_builds, t.running_builds, t.running_on_reverse, t.pending_builds
    );
    let _ = writeln!(
        out,
        "<li>Buildlet requests waiting: {}</li>",
        t.requests_waiting
    );
    let _ = writeln!(
        out,
        "<li>Machines: {} connected, {} busy</li>",
        t.machines_connected, t.machines_busy
    );
    let _ = writeln!(
        out,
        "<li>Uptime: {} (started {})</li>",
        escape(&s.uptime),
        escape(&s.started)
    );
    let _ = writeln!(out, "<li>Version: <code>{}</code></li>", escape(&h.version));
    let _ = writeln!(
        out,
        "<li>Instance: <code>{}</code></li>",
        escape(&h.instance)
    );
    let _ = writeln!(out, "<li>Log position: {}</li>", h.log_position);
    let _ = writeln!(out, "<li>As of: {}</li>", escape(&s.now));
    out.push_str("</ul>\n");
}

fn write_scheduler(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"scheduler\">Scheduler state</h2>\n");
    let waiting: Vec<&HostTypeStatus> = s
        .host_types
        .iter()
        .filter(|h| h.waiting.count > 0)
        .collect();
    if waiting.is_empty() {
        out.push_str("<p class=\"muted\">No requests waiting.</p>\n");
        return;
    }
    out.push_str(
        "<table>\n<tr><th>Host type</th><th>Waiting</th><th>Oldest</th><th>Newest</th>\
         <th>Longest wait</th><th>gomote</th><th>try</th><th>regular</th></tr>\n",
    );
    for h in waiting {
        let w = &h.waiting;
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&h.host_type),
            w.count,
            opt(&w.oldest),
            opt(&w.newest),
            opt(&w.oldest_wait),
            w.gomote,
            w.trybot,
            w.regular
        );
    }
    out.push_str("</table>\n");
}

fn write_pools(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"pools\">Buildlet pools</h2>\n");
    let _ = writeln!(
        out,
        "<p>Machines connected: {}; busy: {}.</p>",
        s.totals.machines_connected, s.totals.machines_busy
    );
    out.push_str("<p>By host type (busy / connected):</p>\n<ul>\n");
    let mut any = false;
    for h in s
        .host_types
        .iter()
        .filter(|h| h.expected > 0 || h.connected > 0)
    {
        any = true;
        let name = if h.host_type.is_empty() {
            "(none)".to_string()
        } else {
            escape(&h.host_type)
        };
        let pool = if h.pool.is_empty() {
            String::new()
        } else {
            format!(" [{}]", h.pool)
        };
        let missing = if h.missing > 0 {
            format!(" ({} missing)", h.missing)
        } else {
            String::new()
        };
        let notes = if h.notes.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"muted\">{}</span>", escape(&h.notes))
        };
        let _ = writeln!(
            out,
            "<li><code>{name}</code>{pool}: {}/{}{missing}{notes}</li>",
            h.busy, h.connected
        );
    }
    if !any {
        out.push_str("<li class=\"muted\">no machines expected or connected</li>\n");
    }
    out.push_str("</ul>\n");
    if s.machines.is_empty() {
        return;
    }
    out.push_str(
        "<table>\n<tr><th>Hostname</th><th>Machine</th><th>Host type</th><th>Pool</th>\
         <th>Version</th><th>Connected for</th><th>State</th></tr>\n",
    );
    for m in &s.machines {
        let state = match (&m.running_build, &m.assigned_request) {
            (Some(build), _) => format!(
                "working on <a href=\"{}\"><code>{}</code></a>",
                escape(&build_url(build)),
                escape(build)
            ),
            (None, Some(request)) => {
                format!("assigned to request <code>{}</code>", escape(request))
            }
            (None, None) => "<span class=\"muted\">idle</span>".to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{state}</td></tr>",
            escape(&m.hostname),
            escape(&m.machine_id),
            escape(&m.host_type),
            escape(&m.pool),
            escape(&m.version),
            opt(&m.connected_for)
        );
    }
    out.push_str("</table>\n");
}

fn write_active(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"active\">Active builds</h2>\n");
    if s.active_builds.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
        return;
    }
    out.push_str("<ul>\n");
    for a in &s.active_builds {
        let b = &a.build;
        let machine = b
            .machine
            .as_deref()
            .map(|m| format!(" on <code>{}</code>", escape(m)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<li>{} <b>{}</b> {} [{}]{machine}, running for {}",
            build_link(b),
            escape(&b.builder),
            revision_html(b),
            b.kind,
            opt(&b.duration)
        );
        if !a.last_steps.is_empty() {
            out.push_str("<ul>\n");
            let earlier = a.steps.len() - a.last_steps.len();
            if earlier > 0 {
                let _ = writeln!(out, "<li class=\"muted\">({earlier} earlier steps)</li>");
            }
            for step in &a.last_steps {
                let _ = writeln!(out, "<li>{}</li>", step_line(step));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
}

/// One step as a line: its name, state, duration and error.
fn step_line(step: &StepStatus) -> String {
    let mut s = format!(
        "{}: <span class=\"{}\">{}</span>",
        escape(&step.name),
        state_class(step.state),
        step.state
    );
    if let Some(d) = &step.duration {
        let _ = write!(s, " ({})", escape(d));
    }
    if let Some(e) = &step.error {
        let _ = write!(s, ": {}", escape(e));
    }
    s
}

fn write_pending(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"pending\">Pending builds</h2>\n");
    if s.pending_builds.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
        return;
    }
    out.push_str(
        "<table>\n<tr><th>Build</th><th>Builder</th><th>Revision</th><th>Host type</th>\
         <th>Kind</th><th>State</th><th>Waiting for</th><th>Ahead in queue</th></tr>\n",
    );
    for p in &s.pending_builds {
        let b = &p.build;
        let ahead = p.ahead.map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{ahead}</td></tr>",
            build_link(b),
            escape(&b.builder),
            revision_html(b),
            escape(&b.host_type),
            b.kind,
            b.state,
            opt(&b.duration)
        );
    }
    out.push_str("</table>\n");
}

fn write_recent(out: &mut String, s: &FarmStatus) {
    let _ = writeln!(
        out,
        "<h2 id=\"recent\">Recently completed (last {RECENT_BUILDS})</h2>"
    );
    if s.recent_builds.is_empty() {
        out.push_str("<p class=\"muted\">None yet.</p>\n");
        return;
    }
    out.push_str(
        "<table>\n<tr><th>Build</th><th>Builder</th><th>Revision</th><th>Kind</th>\
         <th>Outcome</th><th>Message</th><th>Duration</th><th>Finished</th><th>Log</th></tr>\n",
    );
    for r in &s.recent_builds {
        let b = &r.build;
        let log = r.log.as_ref().map_or_else(
            || "-".to_string(),
            |l| format!("<a href=\"{}\">log</a>", escape(&l.url)),
        );
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{log}</td></tr>",
            build_link(b),
            escape(&b.builder),
            revision_html(b),
            b.kind,
            state_class(r.outcome),
            r.outcome,
            escape(&r.done_msg),
            opt(&b.duration),
            opt(&b.done)
        );
    }
    out.push_str("</table>\n");
}

fn write_rejections(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"refused\">Refused registrations</h2>\n");
    if s.rejections_total == 0 {
        out.push_str("<p class=\"muted\">None.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<p>{} refused in total; the last {}, newest first:</p>",
        s.rejections_total,
        s.rejections.len()
    );
    out.push_str(
        "<table>\n<tr><th>Time</th><th>Host type</th><th>Hostname</th>\
         <th>Remote address</th><th>Status</th><th>Reason</th></tr>\n",
    );
    for r in &s.rejections {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            opt(&r.time),
            escape(&r.host_type),
            escape(&r.hostname),
            escape(&r.remote_addr),
            r.http_status,
            escape(&r.reason)
        );
    }
    out.push_str("</table>\n");
}

fn write_builders(out: &mut String, s: &FarmStatus) {
    out.push_str("<h2 id=\"builders\">Builders</h2>\n");
    if s.builders.is_empty() {
        out.push_str("<p class=\"muted\">None configured.</p>\n");
        return;
    }
    out.push_str(
        "<table>\n<tr><th>Builder</th><th>Host type</th><th>Trybot</th><th>Notes</th>\
         <th>Known issues</th></tr>\n",
    );
    for b in &s.builders {
        let trybot = match (b.try_bot, b.try_only) {
            (true, true) => "only",
            (true, false) => "yes",
            (false, _) => "no",
        };
        let issues: Vec<String> = b
            .known_issues
            .iter()
            .map(|n| format!("<a href=\"https://go.dev/issue/{n}\">#{n}</a>"))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td><b>{}</b></td><td><code>{}</code></td><td>{trybot}</td><td>{}</td>\
             <td>{}</td></tr>",
            escape(&b.name),
            escape(&b.host_type),
            escape(&b.notes),
            issues.join(" ")
        );
    }
    out.push_str("</table>\n");
}

/// A `<tr>` of a key/value table; `value` is already HTML.
fn kv(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "<tr><th>{key}</th><td>{value}</td></tr>");
}

/// `/build/<id>`: one build's page (HTML), or `None` if the build is
/// unknown.
pub fn render_build_html(farm: &Farm, build_id: &str, now_unix_nanos: i128) -> Option<String> {
    let b = farm.build(build_id)?;
    let now = now_unix_nanos;
    let row = build_row(farm, b, now);
    let mut out = String::with_capacity(4 * 1024);
    page_start(&mut out, &format!("Build {}", b.build_id));
    out.push_str("<p><a href=\"/\">&larr; farm status</a></p>\n");
    let _ = writeln!(out, "<h1>Build <code>{}</code></h1>", escape(&b.build_id));
    out.push_str("<table>\n");
    kv(
        &mut out,
        "Builder",
        &format!("<b>{}</b>", escape(&b.builder)),
    );
    kv(
        &mut out,
        "Revision",
        &format!("<code>{}</code>", escape(&b.rev)),
    );
    if !b.sub_name.is_empty() {
        kv(&mut out, "Repository", &escape(&b.sub_name));
        kv(
            &mut out,
            "Repository revision",
            &format!("<code>{}</code>", escape(&b.sub_rev)),
        );
    }
    kv(&mut out, "Kind", row.kind);
    kv(&mut out, "Attempt", &b.attempt.to_string());
    if !b.branch.is_empty() {
        kv(&mut out, "Branch", &escape(&b.branch));
    }
    if !b.try_id.is_empty() {
        kv(
            &mut out,
            "Try set",
            &format!("<code>{}</code>", escape(&b.try_id)),
        );
    }
    kv(
        &mut out,
        "Host type",
        &format!("<code>{}</code>", escape(&b.host_type)),
    );
    kv(
        &mut out,
        "State",
        &format!(
            "<span class=\"{}\">{}</span>",
            state_class(row.state),
            row.state
        ),
    );
    if let BuildState::Done { outcome, done_msg } = &b.state {
        let outcome = outcome_name(*outcome);
        kv(
            &mut out,
            "Outcome",
            &format!("<span class=\"{}\">{outcome}</span>", state_class(outcome)),
        );
        if !done_msg.is_empty() {
            kv(
                &mut out,
                "Message",
                &format!("<pre>{}</pre>", escape(done_msg)),
            );
        }
    }
    let machine = match (&row.machine, &b.state) {
        (Some(m), _) => format!("<code>{}</code>", escape(m)),
        (None, BuildState::Done { .. }) => "<span class=\"muted\">never started</span>".to_string(),
        (None, _) => "<span class=\"muted\">none yet</span>".to_string(),
    };
    kv(&mut out, "Machine", &machine);
    if let Some(t) = rfc3339(b.commit_time) {
        kv(&mut out, "Commit time", &escape(&t));
    }
    kv(&mut out, "Requested", &opt(&row.requested));
    kv(&mut out, "Started", &opt(&row.started));
    kv(&mut out, "Finished", &opt(&row.done));
    kv(&mut out, "Duration", &opt(&row.duration));
    let log = match (&b.log, &b.state) {
        (Some(blob), _) => {
            let link = log_link(blob);
            format!(
                "<a href=\"{}\">{}</a> ({} bytes)",
                escape(&link.url),
                escape(&link.sha256),
                link.size
            )
        }
        (None, BuildState::Done { .. }) => format!(
            "<span class=\"muted\">no log stored ({} chunks recorded)</span>",
            b.log_chunks
        ),
        (None, _) => format!("log chunks so far: {}", b.log_chunks),
    };
    kv(&mut out, "Log", &log);
    if !b.supersedes.is_empty() {
        kv(
            &mut out,
            "Supersedes",
            &format!(
                "<a href=\"{}\"><code>{}</code></a>",
                escape(&build_url(&b.supersedes)),
                escape(&b.supersedes)
            ),
        );
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Steps</h2>\n");
    if b.steps.is_empty() {
        out.push_str("<p class=\"muted\">No steps yet.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>#</th><th>Step</th><th>Detail</th><th>State</th>\
             <th>Started</th><th>Duration</th><th>Error</th></tr>\n",
        );
        for (i, step) in b.steps.iter().enumerate() {
            let st = step_status(b, step, now);
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                i + 1,
                escape(&st.name),
                escape(&st.detail),
                state_class(st.state),
                st.state,
                opt(&st.started),
                opt(&st.duration),
                st.error
                    .as_deref()
                    .map(|e| format!("<pre>{}</pre>", escape(e)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</table>\n");
    }
    page_end(&mut out);
    Some(out)
}

/// `/status/reverse.json`: Go's `types.ReverseBuilderStatus`, for the host
/// types configured as reverse pools and every host type with a machine in
/// the reverse pool, with Go's key names.
///
/// `Connected`, `Idle` and `Busy` count the machines whose pool is
/// `reverse`; `Expect` is the configured `expected_machines` of a reverse
/// host type (0 otherwise); `Waiters` is the length of the host type's
/// queue. `Machines` is keyed by hostname, as Go's is; if one hostname is
/// connected twice, the later registration is the one shown (both are
/// counted). An empty `Machines` is `{}` where Go writes `null`.
///
/// The fold keeps no per-machine time of the last assignment or release
/// (Go's `inUseTime`), so the times are approximations: `ConnectedSec` is
/// exact (since the registration); `BusySec` is the time since the build
/// it runs started, and is left out when the machine is assigned but its
/// build has not started; `IdleSec` is the time since the registration,
/// which is exact for a reverse machine that has never been used and an
/// upper bound otherwise. As in Go, `IdleSec` and `BusySec` are left out
/// when zero.
pub fn reverse_json(farm: &Farm, envs: &Environments, now_unix_nanos: i128) -> Value {
    #[derive(Default)]
    struct Host {
        connected: usize,
        expect: u32,
        idle: usize,
        busy: usize,
        machines: Map<String, Value>,
    }

    let now = now_unix_nanos;
    let mut hosts: BTreeMap<&str, Host> = BTreeMap::new();
    for (name, h) in &envs.hosts {
        if h.pool == Pool::Reverse {
            hosts.entry(name.as_str()).or_default().expect = h.expected_machines;
        }
    }
    let mut machines: Vec<&Machine> = farm
        .machines()
        .filter(|m| m.pool == Pool::Reverse.as_str())
        .collect();
    // Oldest registration first, so a hostname connected twice shows its
    // latest registration.
    machines.sort_by(|a, b| {
        (a.registered_time, &a.machine_id).cmp(&(b.registered_time, &b.machine_id))
    });
    for m in machines {
        let host = hosts.entry(m.host_type.as_str()).or_default();
        host.connected += 1;
        let busy = is_busy(m);
        let mut entry = Map::new();
        entry.insert("Name".into(), Value::from(m.hostname.as_str()));
        entry.insert("HostType".into(), Value::from(m.host_type.as_str()));
        entry.insert(
            "ConnectedSec".into(),
            Value::from(seconds_since(now, m.registered_time)),
        );
        if busy {
            host.busy += 1;
            let since = m
                .running
                .as_deref()
                .and_then(|id| farm.build(id))
                .and_then(|b| b.started_time)
                .map_or(0.0, |t| seconds_since(now, t));
            if since > 0.0 {
                entry.insert("BusySec".into(), Value::from(since));
            }
        } else {
            host.idle += 1;
            let since = seconds_since(now, m.registered_time);
            if since > 0.0 {
                entry.insert("IdleSec".into(), Value::from(since));
            }
        }
        entry.insert("Version".into(), Value::from(m.version.as_str()));
        entry.insert("Busy".into(), Value::from(busy));
        host.machines
            .insert(m.hostname.clone(), Value::Object(entry));
    }

    let mut host_types = Map::new();
    for (name, host) in hosts {
        let mut o = Map::new();
        o.insert("HostType".into(), Value::from(name));
        o.insert("Connected".into(), Value::from(host.connected));
        o.insert("Expect".into(), Value::from(host.expect));
        o.insert("Idle".into(), Value::from(host.idle));
        o.insert("Busy".into(), Value::from(host.busy));
        o.insert("Waiters".into(), Value::from(farm.queue(name).count()));
        o.insert("Machines".into(), Value::Object(host.machines));
        host_types.insert(name.to_string(), Value::Object(o));
    }
    let mut root = Map::new();
    root.insert("HostTypes".into(), Value::Object(host_types));
    Value::Object(root)
}

/// Seconds from `t` to `now` (0 when `t` is unknown or in the future).
fn seconds_since(now: Nanos, t: Nanos) -> f64 {
    if t == 0 {
        return 0.0;
    }
    (now - t).max(0) as f64 / 1e9
}

/// `/status/post-submit-active.json`: `[{"builder", "commit", "goCommit"?,
/// "statusURL"}]` for running builds outside try sets (Go's
/// `activePostSubmitBuilds`): `commit` is the x/ repository's revision for
/// an x/ repository build and the go revision otherwise; `goCommit` is the
/// go revision, present only for x/ repository builds; `statusURL` is the
/// build's page. Try-set builds (trybots, slowbots, x/ repo and release try
/// runs) and gomote builds are left out: they are not post-submit work. An
/// empty list is `[]` where Go writes `null`. By build id.
pub fn post_submit_active_json(farm: &Farm) -> Value {
    let list = farm
        .active_builds()
        .filter(|b| !is_try(b.kind) && b.kind != BuildKind::Gomote)
        .map(|b| {
            let mut o = Map::new();
            o.insert("builder".into(), Value::from(b.builder.as_str()));
            let commit = if b.sub_rev.is_empty() {
                &b.rev
            } else {
                &b.sub_rev
            };
            o.insert("commit".into(), Value::from(commit.as_str()));
            if !b.sub_name.is_empty() {
                o.insert("goCommit".into(), Value::from(b.rev.as_str()));
            }
            o.insert("statusURL".into(), Value::from(build_url(&b.build_id)));
            Value::Object(o)
        })
        .collect();
    Value::Array(list)
}

/// A try set as `/try.json` reports it: the newest set whose commit starts
/// with `commit_prefix`, with each builder's latest attempt. Sets still on
/// their way to Gerrit come first, answered from the set's own record (so
/// they are whole even once their builds are let go); then sets already
/// reported whose builds the fold still keeps. An unreported set lists
/// only the builders `in_force` counts, as its Gerrit review does. `None`
/// if no try build has such a commit (or the prefix is empty).
pub fn try_status(
    farm: &Farm,
    commit_prefix: &str,
    in_force: impl Fn(&str, &TrySet) -> bool,
) -> Option<TryStatus> {
    if commit_prefix.is_empty() {
        return None;
    }
    if let Some(unreported) = unreported_try_status(farm, commit_prefix, in_force) {
        return Some(unreported);
    }
    let commit_of = |b: &Build| {
        if b.sub_rev.is_empty() {
            b.rev.clone()
        } else {
            b.sub_rev.clone()
        }
    };
    let matching: Vec<&Build> = farm
        .builds()
        .filter(|b| is_try(b.kind) && commit_of(b).starts_with(commit_prefix))
        .collect();
    let newest = matching.iter().max_by_key(|b| b.requested_at)?;
    let (change_id, commit) = (newest.try_id.clone(), commit_of(newest));
    let mut latest: BTreeMap<&str, &Build> = BTreeMap::new();
    for b in matching
        .into_iter()
        .filter(|b| b.try_id == change_id && commit_of(b) == commit)
    {
        let slot = latest.entry(b.builder.as_str()).or_insert(b);
        if b.requested_at > slot.requested_at {
            *slot = b;
        }
    }
    let builds = latest
        .values()
        .map(|b| TryBuildStatus {
            name: b.builder.clone(),
            start_time: rfc3339(b.started_time.unwrap_or(b.requested_time)),
            done: matches!(b.state, BuildState::Done { .. }),
            succeeded: matches!(
                b.state,
                BuildState::Done {
                    outcome: BuildOutcome::Passed,
                    ..
                }
            ),
            url: build_url(&b.build_id),
        })
        .collect();
    Some(TryStatus {
        change_id,
        commit,
        builds,
    })
}

/// The newest unreported try set whose commit starts with `commit_prefix`
/// (newest by its builds' requests, where the fold still keeps them).
fn unreported_try_status(
    farm: &Farm,
    commit_prefix: &str,
    in_force: impl Fn(&str, &TrySet) -> bool,
) -> Option<TryStatus> {
    let newest_request = |set: &TrySet| {
        set.builds
            .values()
            .filter_map(|id| farm.build(id))
            .map(|b| b.requested_at)
            .max()
    };
    let ((change_id, commit), set) = farm
        .unposted_try_sets()
        .filter(|((_, commit), _)| commit.starts_with(commit_prefix))
        .max_by_key(|(_, set)| newest_request(set))?;
    let builds = set
        .builds
        .iter()
        .filter(|(builder, _)| in_force(builder, set))
        .map(|(builder, build_id)| {
            let verdict = BuilderVerdict::in_set(set, builder);
            TryBuildStatus {
                name: builder.clone(),
                start_time: farm
                    .build(build_id)
                    .and_then(|b| rfc3339(b.started_time.unwrap_or(b.requested_time))),
                done: verdict != BuilderVerdict::Pending,
                succeeded: verdict == BuilderVerdict::Passed,
                url: build_url(build_id),
            }
        })
        .collect();
    Some(TryStatus {
        change_id: change_id.clone(),
        commit: commit.clone(),
        builds,
    })
}

/// `/try.json`'s payload (Go's keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TryStatus {
    #[serde(rename = "changeId")]
    pub change_id: String,
    pub commit: String,
    pub builds: Vec<TryBuildStatus>,
}

/// One builder of a try set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TryBuildStatus {
    pub name: String,
    #[serde(rename = "startTime")]
    pub start_time: Option<String>,
    pub done: bool,
    pub succeeded: bool,
    /// The build's page (not in Go's payload; extra keys are ignored by
    /// its readers).
    pub url: String,
}

/// `/try?commit=`: the try set as a page.
pub fn render_try_html(status: &TryStatus) -> String {
    let mut out = String::new();
    page_start(&mut out, &format!("TryBots for {}", short(&status.commit)));
    let _ = write!(
        out,
        "<p><a href=\"/\">&larr; farm status</a></p>\n<h1>TryBots</h1>\n\
         <p>Change <code>{}</code>, commit <code>{}</code></p>\n<table>\n\
         <tr><th>Builder</th><th>Started</th><th>State</th></tr>\n",
        escape(&status.change_id),
        escape(&status.commit)
    );
    for b in &status.builds {
        let (class, state) = match (b.done, b.succeeded) {
            (false, _) => ("running", "running"),
            (true, true) => ("ok", "passed"),
            (true, false) => ("failed", "failed"),
        };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td class=\"{class}\">{state}</td></tr>",
            escape(&b.url),
            escape(&b.name),
            escape(b.start_time.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n");
    page_end(&mut out);
    out
}

#[cfg(test)]
mod tests;

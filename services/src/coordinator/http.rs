//! The coordinator's HTTP routes: the status pages (`/`, `/status.json`,
//! `/status/reverse.json`, `/status/post-submit-active.json`,
//! `/build/{id}`, `/try` and `/try.json`), build logs (`/log/{sha256}`), `/metrics`, and the
//! reverse pool's `/reverse`. Pages are rendered from the farm fold alone
//! (see `status`); nothing here changes state except a buildlet
//! registering.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::run::Inner;
use super::status;

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

pub(crate) fn router(inner: Arc<Inner>) -> axum::Router {
    let reverse = inner.machines.reverse().router();
    axum::Router::new()
        .route("/", get(index))
        .route("/status.json", get(status_json))
        .route("/status/reverse.json", get(reverse_json))
        .route("/status/post-submit-active.json", get(post_submit_active))
        .route("/build/{id}", get(build_page))
        .route("/try", get(try_page))
        .route("/try.json", get(try_json))
        .route("/log/{sha256}", get(log))
        .route("/metrics", get(metrics))
        .with_state(inner)
        .merge(reverse)
}

/// The header, with the position of the fold `farm` is (read under its
/// lock, which the fold holds while it publishes the position).
fn header_of(inner: &Inner) -> status::Header {
    status::Header {
        instance: inner.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_unix: inner
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
        log_position: *inner.folded.borrow(),
    }
}

fn farm_status(inner: &Inner) -> status::FarmStatus {
    let farm = inner.read_farm();
    let header = header_of(inner);
    status::farm_status(&farm, &inner.config.envs, &header, now_nanos())
}

async fn index(State(inner): State<Arc<Inner>>) -> Html<String> {
    Html(status::render_html(&farm_status(&inner)))
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text + "\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn status_json(State(inner): State<Arc<Inner>>) -> Response {
    json(&farm_status(&inner))
}

async fn reverse_json(State(inner): State<Arc<Inner>>) -> Response {
    let farm = inner.read_farm();
    json(&status::reverse_json(
        &farm,
        &inner.config.envs,
        now_nanos(),
    ))
}

async fn post_submit_active(State(inner): State<Arc<Inner>>) -> Response {
    let farm = inner.read_farm();
    json(&status::post_submit_active_json(&farm))
}

async fn build_page(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let farm = inner.read_farm();
    match status::render_build_html(&farm, &id, now_nanos()) {
        Some(page) => Html(page).into_response(),
        None if farm.knows_build_id(&id) => (
            StatusCode::NOT_FOUND,
            format!(
                "build {id:?} finished before the last {} and is no longer kept here; the log has its events\n",
                almanac_projections::farm::DONE_BUILDS_KEPT
            ),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no build {id:?}\n")).into_response(),
    }
}

/// The `commit` of `/try?commit=<prefix>` ("" if absent).
fn commit_param(query: Option<&str>) -> String {
    query
        .and_then(|q| crate::form::first_value(q, "commit"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn try_set(inner: &Inner, commit: &str) -> Option<status::TryStatus> {
    status::try_status(&inner.read_farm(), commit, |builder, set| {
        inner.try_builder_in_force(builder, set)
    })
}

/// `/try.json?commit=`: Go's shape, `{success, error?, payload}`, CORS open.
async fn try_json(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let (status, body) = match try_set(&inner, &commit_param(query.as_deref())) {
        Some(set) => (
            StatusCode::OK,
            serde_json::json!({ "success": true, "payload": set }),
        ),
        None => (
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "success": false,
                "error": "no try set has a commit with that prefix (done long ago, not yet discovered, or never asked for)",
            }),
        ),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body.to_string() + "\n",
    )
        .into_response()
}

/// `/try?commit=`: the same as a page.
async fn try_page(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let commit = commit_param(query.as_deref());
    match try_set(&inner, &commit) {
        Some(set) => Html(status::render_try_html(&set)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no try set has a commit starting with {commit:?}\n"),
        )
            .into_response(),
    }
}

async fn log(State(inner): State<Arc<Inner>>, Path(sha256): Path<String>) -> Response {
    let blobs = inner.blobs.clone();
    let name = sha256.clone();
    match tokio::task::spawn_blocking(move || blobs.get(&name)).await {
        Ok(Ok(Some(bytes))) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response()
        }
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, format!("no log {sha256}\n")).into_response(),
        Ok(Err(super::blobs::BlobError::BadName(_))) => (
            StatusCode::BAD_REQUEST,
            "a log is named by its SHA-256 in lowercase hex\n",
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let m = &inner.metrics;
    let mut out = String::new();
    let counters = [
        (
            "almanac_coordinator_builds_requested_total",
            "Builds requested by discovery.",
            &m.builds_requested,
        ),
        (
            "almanac_coordinator_builds_requeued_total",
            "Builds requested again after a communication error or a restart.",
            &m.builds_requeued,
        ),
        (
            "almanac_coordinator_assignments_total",
            "Machines assigned to waiting requests.",
            &m.assignments,
        ),
        (
            "almanac_coordinator_builds_passed_total",
            "Builds run here that passed.",
            &m.builds_passed,
        ),
        (
            "almanac_coordinator_builds_failed_total",
            "Builds run here that failed.",
            &m.builds_failed,
        ),
        (
            "almanac_coordinator_builds_comm_error_total",
            "Builds run here that ended in a communication error.",
            &m.builds_comm_error,
        ),
        (
            "almanac_coordinator_machines_registered_total",
            "Machines recorded as registered.",
            &m.machines_registered,
        ),
        (
            "almanac_coordinator_machines_lost_total",
            "Machines recorded as lost.",
            &m.machines_lost,
        ),
        (
            "almanac_coordinator_registrations_refused_total",
            "Reverse registrations refused.",
            &m.registrations_refused,
        ),
        (
            "almanac_coordinator_append_failures_total",
            "Appends to the log that failed.",
            &m.append_failures,
        ),
        (
            "almanac_coordinator_appends_after_stop_total",
            "Appends refused because the coordinator is stopping.",
            &m.appends_after_stop,
        ),
        (
            "almanac_coordinator_builds_left_running_total",
            "Builds cut short after stop whose end was left for the next coordinator.",
            &m.builds_left_running,
        ),
        (
            "almanac_coordinator_decision_rounds_total",
            "Rounds of the decision loop.",
            &m.decisions,
        ),
        (
            "almanac_coordinator_discovery_passes_total",
            "Discovery passes over the corpus.",
            &m.discovery_passes,
        ),
        (
            "almanac_coordinator_try_discovery_passes_total",
            "Discovery passes that also looked for try work.",
            &m.try_discovery_passes,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let executing = inner
        .executing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let farm = inner.read_farm();
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_log_position Where the farm fold has read the log to.\n# TYPE almanac_coordinator_log_position gauge\nalmanac_coordinator_log_position {}",
        *inner.folded.borrow()
    );
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_farm_events Farm events folded.\n# TYPE almanac_coordinator_farm_events gauge\nalmanac_coordinator_farm_events {}",
        farm.events()
    );
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_builds_kept Builds the farm fold keeps whole (live, and the most recently finished).\n# TYPE almanac_coordinator_builds_kept gauge\nalmanac_coordinator_builds_kept {}",
        farm.builds_kept()
    );
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_builds_retired Finished builds the farm fold has let go (their ids and verdicts stay).\n# TYPE almanac_coordinator_builds_retired gauge\nalmanac_coordinator_builds_retired {}",
        farm.retired_builds()
    );
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_executing Builds this process is running.\n# TYPE almanac_coordinator_executing gauge\nalmanac_coordinator_executing {executing}"
    );
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_machines Machines in the pool, by host type.\n# TYPE almanac_coordinator_machines gauge"
    );
    let mut per_host = std::collections::BTreeMap::<&str, usize>::new();
    for m in farm.machines() {
        *per_host.entry(m.host_type.as_str()).or_default() += 1;
    }
    for (host, n) in per_host {
        let _ = writeln!(
            out,
            "almanac_coordinator_machines{{host_type=\"{}\"}} {n}",
            host.replace(['"', '\\', '\n'], "_")
        );
    }
    let _ = writeln!(
        out,
        "# HELP almanac_coordinator_queue_length Requests waiting for a machine, by host type.\n# TYPE almanac_coordinator_queue_length gauge"
    );
    for (host, n) in farm.queue_lengths() {
        let _ = writeln!(
            out,
            "almanac_coordinator_queue_length{{host_type=\"{}\"}} {n}",
            host.replace(['"', '\\', '\n'], "_")
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

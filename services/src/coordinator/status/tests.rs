//! The status pages over a small scripted farm: per host type counts, the
//! build lists, escaping, and Go's JSON shapes.

use std::path::Path;

use almanac_log::Position;
use almanac_projections::Projection as _;
use almanac_projections::farm::Farm;
use almanac_proto::pb::farm::{
    BlobRef, BuildCompleted, BuildEvent, BuildKind, BuildOutcome, BuildRequested, BuildStarted,
    BuilderRev, BuildletAssigned, BuildletRequested, EventMeta, MachineEvent, MachineRegistered,
    MachineRegistrationRejected, Priority, PriorityClass, StepFinished, StepStarted, build_event,
    machine_event,
};
use almanac_proto::pb::maintpb::Mutation;
use prost_types::Timestamp;
use serde_json::json;

use super::{
    FarmStatus, Header, TryBuildStatus, duration, escape, farm_status, post_submit_active_json,
    render_build_html, render_html, reverse_json, try_status,
};
use crate::farm::env::Environments;

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;
const HOST: &str = "host-linux-amd64-local";
const LISTEN: &str = "host-linux-listen";

const HOSTS: &str = r#"
[[host]]
type = "host-linux-amd64-local"
pool = "reverse"
expected_machines = 4
setup = "setup.sh"
notes = "Local <reverse> machines"

[[host]]
type = "host-linux-listen"
pool = "listen"
expected_machines = 1
setup = "setup.sh"
"#;

const BUILDERS: &str = r#"
[[builder]]
name = "linux-amd64"
host_type = "host-linux-amd64-local"
steps = ["./make.bash"]
try_bot = true
known_issues = [61234]
notes = "The <first> port"
"#;

fn envs() -> Environments {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("setup.sh"), "#!/bin/sh\n").expect("write setup.sh");
    Environments::parse(
        dir.path(),
        Path::new("env/hosts.toml"),
        HOSTS,
        Path::new("env/builders.toml"),
        BUILDERS,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn header() -> Header {
    Header {
        instance: "P0123456789".into(),
        version: "devel <test>".into(),
        started_unix: T0,
        log_position: 4096,
    }
}

/// `T0 + secs`, in the fold's nanoseconds.
fn nanos(secs: i64) -> i128 {
    i128::from(T0 + secs) * 1_000_000_000
}

fn ts(secs: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: T0 + secs,
        nanos: 0,
    })
}

fn meta(at: i64) -> Option<EventMeta> {
    Some(EventMeta {
        time: ts(at),
        ..Default::default()
    })
}

fn build(at: i64, e: build_event::Event) -> Mutation {
    Mutation {
        build: Some(BuildEvent {
            meta: meta(at),
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn machine(at: i64, e: machine_event::Event) -> Mutation {
    Mutation {
        machine: Some(MachineEvent {
            meta: meta(at),
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn register(at: i64, id: &str) -> Mutation {
    machine(
        at,
        machine_event::Event::Registered(MachineRegistered {
            machine_id: id.into(),
            pool: "reverse".into(),
            host_type: HOST.into(),
            hostname: format!("{}.local", id.to_lowercase()),
            buildlet_version: "48".into(),
            ..Default::default()
        }),
    )
}

fn requested(at: i64, id: &str, kind: BuildKind, work: BuilderRev, supersedes: &str) -> Mutation {
    build(
        at,
        build_event::Event::BuildRequested(BuildRequested {
            build_id: id.into(),
            work: Some(work),
            host_type: HOST.into(),
            kind: kind as i32,
            branch: "master".into(),
            attempt: 1,
            supersedes_build_id: supersedes.into(),
            ..Default::default()
        }),
    )
}

fn go_work(rev: &str) -> BuilderRev {
    BuilderRev {
        builder: "linux-amd64".into(),
        rev: rev.into(),
        ..Default::default()
    }
}

fn wants(
    at: i64,
    request: &str,
    build_id: &str,
    class: PriorityClass,
    commit_secs: i64,
) -> Mutation {
    build(
        at,
        build_event::Event::BuildletRequested(BuildletRequested {
            request_id: request.into(),
            host_type: HOST.into(),
            build_id: build_id.into(),
            priority: Some(Priority {
                class: class as i32,
                request_time: ts(at),
                commit_time: ts(commit_secs),
            }),
            ..Default::default()
        }),
    )
}

fn assign_and_start(at: i64, request: &str, machine_id: &str, build_id: &str) -> [Mutation; 2] {
    [
        build(
            at,
            build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: request.into(),
                machine_id: machine_id.into(),
                ahead_at_assign: 0,
            }),
        ),
        build(
            at,
            build_event::Event::BuildStarted(BuildStarted {
                build_id: build_id.into(),
                machine_id: machine_id.into(),
            }),
        ),
    ]
}

fn step(at: i64, build_id: &str, step_id: &str, name: &str) -> Mutation {
    build(
        at,
        build_event::Event::StepStarted(StepStarted {
            build_id: build_id.into(),
            step_id: step_id.into(),
            name: name.into(),
            ..Default::default()
        }),
    )
}

fn step_done(at: i64, build_id: &str, step_id: &str, error: &str, secs: i64) -> Mutation {
    build(
        at,
        build_event::Event::StepFinished(StepFinished {
            build_id: build_id.into(),
            step_id: step_id.into(),
            error: error.into(),
            duration: Some(prost_types::Duration {
                seconds: secs,
                nanos: 0,
            }),
        }),
    )
}

fn fold(farm: &mut Farm, mutations: &[Mutation]) {
    for m in mutations {
        let pos = Position(farm.events() * 100);
        farm.apply(pos, m).expect("infallible");
    }
}

/// Three reverse machines; B1 ran and failed on M3; B2 (try) runs on M1
/// and B3 (x/net) on M2; B4 and a gomote session wait; one registration
/// was refused. "Now" is `T0 + 200`.
fn scenario() -> Farm {
    let mut events = vec![
        register(0, "M1"),
        register(0, "M2"),
        register(0, "M3"),
        requested(1, "B1", BuildKind::PostSubmit, go_work("aaaa"), ""),
        wants(1, "R1", "B1", PriorityClass::Regular, -100),
    ];
    events.extend(assign_and_start(2, "R1", "M3", "B1"));
    events.extend([
        step(2, "B1", "S1", "make.bash"),
        step_done(32, "B1", "S1", "exit status 1", 30),
        build(
            40,
            build_event::Event::BuildCompleted(BuildCompleted {
                build_id: "B1".into(),
                outcome: BuildOutcome::Failed as i32,
                done_msg: "<script>alert(1)</script>".into(),
                log: Some(BlobRef {
                    sha256: "ab12".into(),
                    size: 10,
                }),
                ..Default::default()
            }),
        ),
        requested(50, "B2", BuildKind::Try, go_work("bbbb"), ""),
        wants(50, "R2", "B2", PriorityClass::Try, 0),
        requested(
            51,
            "B3",
            BuildKind::PostSubmit,
            BuilderRev {
                builder: "linux-amd64".into(),
                rev: "aaaa".into(),
                sub_name: "net".into(),
                sub_rev: "cccc".into(),
            },
            "",
        ),
        wants(51, "R3", "B3", PriorityClass::Regular, -50),
        wants(52, "R4", "", PriorityClass::Gomote, 0),
        requested(53, "B4", BuildKind::PostSubmit, go_work("dddd"), "B1"),
        wants(53, "R5", "B4", PriorityClass::Regular, -200),
    ]);
    events.extend(assign_and_start(60, "R2", "M1", "B2"));
    events.push(step(60, "B2", "S1", "make.bash"));
    events.extend(assign_and_start(61, "R3", "M2", "B3"));
    events.extend([
        machine(
            70,
            machine_event::Event::RegistrationRejected(MachineRegistrationRejected {
                host_type: "host-nope".into(),
                hostname: "evil<host>".into(),
                remote_addr: "10.0.0.9:4000".into(),
                http_status: 412,
                reason: "invalid build key".into(),
            }),
        ),
        step_done(123, "B2", "S1", "", 63),
        step(123, "B2", "S2", "run tests"),
    ]);
    let mut farm = Farm::new();
    fold(&mut farm, &events);
    farm
}

/// An object's keys, sorted (whatever order the map keeps).
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

fn status(farm: &Farm) -> FarmStatus {
    farm_status(farm, &envs(), &header(), nanos(200))
}

#[test]
fn host_types_count_machines_and_waiting_requests() {
    let farm = scenario();
    let s = status(&farm);
    let names: Vec<&str> = s.host_types.iter().map(|h| h.host_type.as_str()).collect();
    assert_eq!(names, [HOST, LISTEN]);

    let h = &s.host_types[0];
    assert_eq!(h.pool, "reverse");
    assert_eq!(
        (h.expected, h.connected, h.idle, h.busy, h.missing),
        (4, 3, 1, 2, 1)
    );
    let w = &h.waiting;
    assert_eq!((w.count, w.gomote, w.trybot, w.regular), (2, 1, 0, 1));
    assert_eq!(w.oldest.as_deref(), Some("2023-11-14T22:14:12Z"));
    assert_eq!(w.newest.as_deref(), Some("2023-11-14T22:14:13Z"));
    assert_eq!(w.oldest_wait.as_deref(), Some("2m28s"));
    assert_eq!(h.notes, "Local <reverse> machines");

    let l = &s.host_types[1];
    assert_eq!(l.pool, "listen");
    assert_eq!(
        (
            l.expected,
            l.connected,
            l.idle,
            l.busy,
            l.missing,
            l.waiting.count
        ),
        (1, 0, 0, 0, 1, 0)
    );

    let t = &s.totals;
    assert_eq!(
        (
            t.live_builds,
            t.running_builds,
            t.running_on_reverse,
            t.pending_builds,
            t.machines_connected,
            t.machines_busy,
            t.requests_waiting
        ),
        (3, 2, 2, 1, 3, 2, 2)
    );
    assert_eq!(s.started, "2023-11-14T22:13:20Z");
    assert_eq!(s.now, "2023-11-14T22:16:40Z");
    assert_eq!(s.uptime, "3m20s");
}

#[test]
fn machines_and_builds_are_listed() {
    let farm = scenario();
    let s = status(&farm);

    let machines: Vec<(&str, bool, Option<&str>)> = s
        .machines
        .iter()
        .map(|m| (m.hostname.as_str(), m.busy, m.running_build.as_deref()))
        .collect();
    assert_eq!(
        machines,
        [
            ("m1.local", true, Some("B2")),
            ("m2.local", true, Some("B3")),
            ("m3.local", false, None)
        ]
    );
    assert_eq!(s.machines[0].connected_for.as_deref(), Some("3m20s"));
    assert_eq!(s.machines[0].version, "48");

    let active: Vec<&str> = s
        .active_builds
        .iter()
        .map(|a| a.build.build_id.as_str())
        .collect();
    assert_eq!(active, ["B2", "B3"]);
    let b2 = &s.active_builds[0];
    assert_eq!(b2.build.state, "running");
    assert_eq!(b2.build.kind, "try");
    assert_eq!(b2.build.machine.as_deref(), Some("M1"));
    assert_eq!(b2.build.duration.as_deref(), Some("2m20s"));
    let steps: Vec<(&str, &str, Option<&str>)> = b2
        .steps
        .iter()
        .map(|st| (st.name.as_str(), st.state, st.duration.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            ("make.bash", "ok", Some("1m3s")),
            ("run tests", "running", Some("1m17s"))
        ]
    );
    assert_eq!(b2.last_steps.len(), 2);

    assert_eq!(s.pending_builds.len(), 1);
    let b4 = &s.pending_builds[0];
    assert_eq!(b4.build.build_id, "B4");
    assert_eq!(b4.build.state, "waiting_for_machine");
    assert_eq!(b4.ahead, Some(1), "behind the gomote session");
    assert_eq!(b4.build.duration.as_deref(), Some("2m27s"));

    assert_eq!(s.recent_builds.len(), 1);
    let b1 = &s.recent_builds[0];
    assert_eq!(b1.build.build_id, "B1");
    assert_eq!(b1.build.state, "failed");
    assert_eq!(b1.outcome, "failed");
    assert_eq!(b1.done_msg, "<script>alert(1)</script>");
    assert_eq!(b1.build.duration.as_deref(), Some("38s"));
    assert_eq!(b1.log.as_ref().map(|l| l.url.as_str()), Some("/log/ab12"));

    assert_eq!(s.rejections_total, 1);
    assert_eq!(s.rejections[0].hostname, "evil<host>");
    assert_eq!(s.rejections[0].http_status, 412);
    assert_eq!(s.rejections[0].age.as_deref(), Some("2m10s"));

    assert_eq!(s.builders.len(), 1);
    assert_eq!(s.builders[0].known_issues, [61234]);

    let v = serde_json::to_value(&s).expect("status serializes");
    assert_eq!(v["host_types"][0]["waiting"]["try"], 0);
    assert_eq!(v["host_types"][0]["waiting"]["gomote"], 1);
    assert_eq!(v["pending_builds"][0]["build_id"], "B4");
    assert_eq!(v["pending_builds"][0]["ahead"], 1);
    assert_eq!(v["recent_builds"][0]["log"]["url"], "/log/ab12");
    assert_eq!(v["header"]["instance"], "P0123456789");
}

#[test]
fn the_status_page_has_its_sections_in_order_and_escapes() {
    let farm = scenario();
    let html = render_html(&status(&farm));
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<title>almanac coordinator</title>"));
    let sections = [
        "<h2 id=\"running\">Running</h2>",
        "<h2 id=\"scheduler\">Scheduler state</h2>",
        "<h2 id=\"pools\">Buildlet pools</h2>",
        "<h2 id=\"active\">Active builds</h2>",
        "<h2 id=\"pending\">Pending builds</h2>",
        "<h2 id=\"recent\">Recently completed (last 30)</h2>",
        "<h2 id=\"refused\">Refused registrations</h2>",
        "<h2 id=\"builders\">Builders</h2>",
    ];
    let at: Vec<usize> = sections
        .iter()
        .map(|s| html.find(s).unwrap_or_else(|| panic!("no {s} in {html}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");

    assert!(html.contains("2/3 (1 missing)"), "{html}");
    assert!(html.contains("0/0 (1 missing)"), "{html}");
    assert!(html.contains("href=\"/build/B2\""));
    assert!(html.contains("href=\"/log/ab12\""));
    assert!(html.contains("evil&lt;host&gt;"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("The &lt;first&gt; port"));
    assert!(html.contains("https://go.dev/issue/61234"));
    assert!(html.contains("devel &lt;test&gt;"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<test>"));
}

#[test]
fn a_build_page_lists_its_steps_and_escapes() {
    let farm = scenario();
    let now = nanos(200);

    let b1 = render_build_html(&farm, "B1", now).expect("B1");
    assert!(b1.contains("<title>Build B1</title>"));
    assert!(b1.contains("make.bash"));
    assert!(b1.contains("exit status 1"));
    assert!(b1.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!b1.contains("<script>"), "{b1}");
    assert!(b1.contains("href=\"/log/ab12\""));
    assert!(b1.contains("30s"));

    let b2 = render_build_html(&farm, "B2", now).expect("B2");
    assert!(b2.contains("run tests"));
    assert!(b2.contains(">running<"));
    assert!(b2.contains("log chunks so far: 0"));
    assert!(b2.contains("<code>M1</code>"));

    let b4 = render_build_html(&farm, "B4", now).expect("B4");
    assert!(b4.contains("href=\"/build/B1\""), "{b4}");
    assert!(b4.contains("No steps yet."));

    assert!(render_build_html(&farm, "B-nope", now).is_none());
}

#[test]
fn reverse_json_is_gos_shape() {
    let farm = scenario();
    let v = reverse_json(&farm, &envs(), nanos(200));
    assert_eq!(keys(&v), ["HostTypes"]);
    assert_eq!(keys(&v["HostTypes"]), [HOST], "listen pools are left out");

    let h = &v["HostTypes"][HOST];
    assert_eq!(
        keys(h),
        [
            "Busy",
            "Connected",
            "Expect",
            "HostType",
            "Idle",
            "Machines",
            "Waiters"
        ]
    );
    assert_eq!(h["HostType"], HOST);
    assert_eq!(h["Connected"], 3);
    assert_eq!(h["Expect"], 4);
    assert_eq!(h["Idle"], 1);
    assert_eq!(h["Busy"], 2);
    assert_eq!(h["Waiters"], 2);
    assert_eq!(keys(&h["Machines"]), ["m1.local", "m2.local", "m3.local"]);

    let m1 = &h["Machines"]["m1.local"];
    assert_eq!(
        keys(m1),
        [
            "Busy",
            "BusySec",
            "ConnectedSec",
            "HostType",
            "Name",
            "Version"
        ]
    );
    assert_eq!(m1["Name"], "m1.local");
    assert_eq!(m1["HostType"], HOST);
    assert_eq!(m1["Version"], "48");
    assert_eq!(m1["Busy"], true);
    assert_eq!(m1["ConnectedSec"], 200.0);
    assert_eq!(m1["BusySec"], 140.0);

    let m3 = &h["Machines"]["m3.local"];
    assert_eq!(
        keys(m3),
        [
            "Busy",
            "ConnectedSec",
            "HostType",
            "IdleSec",
            "Name",
            "Version"
        ]
    );
    assert_eq!(m3["Busy"], false);
    assert_eq!(m3["IdleSec"], 200.0);
}

#[test]
fn post_submit_active_lists_running_non_try_builds() {
    let mut farm = scenario();
    // B2 is a trybot, so only the x/net build counts.
    assert_eq!(
        post_submit_active_json(&farm),
        json!([{
            "builder": "linux-amd64",
            "commit": "cccc",
            "goCommit": "aaaa",
            "statusURL": "/build/B3",
        }])
    );
    // B4 starts on the idle machine: a go repository build has no goCommit.
    fold(&mut farm, &assign_and_start(150, "R5", "M3", "B4"));
    assert_eq!(
        post_submit_active_json(&farm),
        json!([
            {
                "builder": "linux-amd64",
                "commit": "cccc",
                "goCommit": "aaaa",
                "statusURL": "/build/B3",
            },
            {
                "builder": "linux-amd64",
                "commit": "dddd",
                "statusURL": "/build/B4",
            }
        ])
    );
    assert_eq!(post_submit_active_json(&Farm::new()), json!([]));
}

#[test]
fn an_empty_farm_renders() {
    let farm = Farm::new();
    let s = status(&farm);
    assert_eq!(s.totals.machines_connected, 0);
    assert_eq!(s.host_types[0].missing, 4);
    let html = render_html(&s);
    assert!(html.contains("No requests waiting."));
    assert_eq!(
        reverse_json(&farm, &envs(), nanos(0))["HostTypes"][HOST]["Machines"],
        json!({})
    );
}

#[test]
fn durations_read_like_gos() {
    let s = 1_000_000_000_i128;
    assert_eq!(duration(0), "0s");
    assert_eq!(duration(-5 * s), "0s");
    assert_eq!(duration(350_000_000), "350ms");
    assert_eq!(duration(4 * s), "4s");
    assert_eq!(duration(4 * s + 250_000_000), "4.2s");
    assert_eq!(duration(63 * s), "1m3s");
    assert_eq!(duration(3723 * s), "1h2m3s");
}

#[test]
fn escape_covers_html_specials() {
    assert_eq!(
        escape("<a href=\"x\">&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
    );
    assert_eq!(escape("plain"), "plain");
}

/// An unreported try set is whole on `/try.json` however many of its
/// builds the fold has let go: each builder's latest build, done and
/// passed from the set's own record; a communication error is not done.
#[test]
fn an_unreported_try_set_is_whole_after_its_builds_are_let_go() {
    let mut farm = Farm::keeping_done_builds(0);
    let try_build = |at: i64, id: &str, builder: &str| {
        let mut m = requested(
            at,
            id,
            BuildKind::Try,
            BuilderRev {
                builder: builder.into(),
                rev: "abcdef0123456789".into(),
                ..Default::default()
            },
            "",
        );
        if let Some(build_event::Event::BuildRequested(r)) =
            m.build.as_mut().and_then(|e| e.event.as_mut())
        {
            r.try_id = "I0123".into();
        }
        m
    };
    let ended = |at: i64, id: &str, outcome: BuildOutcome| {
        build(
            at,
            build_event::Event::BuildCompleted(BuildCompleted {
                build_id: id.into(),
                outcome: outcome as i32,
                ..Default::default()
            }),
        )
    };
    fold(
        &mut farm,
        &[
            try_build(0, "T1", "linux-386"),
            try_build(0, "T2", "linux-amd64"),
            try_build(0, "T3", "windows-amd64"),
            try_build(0, "T4", "linux-arm64"),
            ended(10, "T1", BuildOutcome::Passed),
            ended(20, "T2", BuildOutcome::Failed),
            ended(30, "T3", BuildOutcome::CommError),
        ],
    );
    assert_eq!(farm.builds_kept(), 1, "only the running T4");
    let status = try_status(&farm, "abcdef01", |_, _| true).expect("the set");
    assert_eq!(
        (status.change_id.as_str(), status.commit.as_str()),
        ("I0123", "abcdef0123456789")
    );
    let row = |name: &str, id: &str, done: bool, succeeded: bool, started: bool| TryBuildStatus {
        name: name.into(),
        start_time: started.then(|| "2023-11-14T22:13:20Z".to_owned()),
        done,
        succeeded,
        url: format!("/build/{id}"),
    };
    assert_eq!(
        status.builds,
        [
            row("linux-386", "T1", true, true, false),
            row("linux-amd64", "T2", true, false, false),
            row("linux-arm64", "T4", false, false, true),
            row("windows-amd64", "T3", false, false, false),
        ]
    );
    assert_eq!(try_status(&farm, "0000", |_, _| true), None);
    // A builder the configuration no longer runs is not listed, as its
    // review leaves it out.
    let in_force =
        try_status(&farm, "abcdef01", |builder, _| builder != "linux-amd64").expect("the set");
    assert_eq!(
        in_force
            .builds
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["linux-386", "linux-arm64", "windows-amd64"]
    );
}

//! The build farm as real processes on 127.0.0.1: `almanac maintnerd`
//! syncing a git repository made here, `almanac coordinator` following its
//! log over gRPC, two reverse buildlets and one listen-mode buildlet. A
//! builder's step runs the repository's own `build.sh`, which passes, fails
//! or waits for the test's go-ahead, as the commit says.
//!
//! What is checked, all from the log (folded here over gRPC) and the
//! coordinator's status pages: results of every builder for every commit;
//! a reverse buildlet killed mid-build (the build ends in a communication
//! error, not a result, and its retry passes on the other machine); a
//! registration with the wrong key (refused and recorded); the coordinator
//! killed mid-build and restarted (interrupted builds are retried, nothing
//! that finished runs again, and its status matches a replay of the log);
//! maintnerd killed and restarted under it.
//! Tarballs with `../` entries are refused by the buildlet process itself
//! (see `buildlet.rs`, `nothing_escapes_the_work_directory`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use almanac_log::Position;
use almanac_log_client::grpc::Subscription;
use almanac_projections::Projection as _;
use almanac_projections::farm::{BuildState, Farm};
use almanac_proto::pb::farm::{BuildKind, BuildOutcome, MachineLostReason, machine_event};
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

use crate::support::{almanac, arg, git, wait_for_addr_file};

const WAIT: Duration = Duration::from_secs(180);
const MASTER: &str = "farm test master key";

const BUILD_SH: &str = r#"#!/bin/sh
echo "building on $WORKDIR as $GO_BUILDER_NAME"
if [ -f slow ]; then
  tag="$(cat slow)-$GO_BUILDER_NAME"
  echo "$WORKDIR" > "$MARKERS/started-$tag.tmp" && mv "$MARKERS/started-$tag.tmp" "$MARKERS/started-$tag"
  while [ ! -f "$MARKERS/release-$(cat slow)" ]; do sleep 0.05; done
fi
if [ -f fail ]; then echo "failing as asked"; exit 1; fi
echo "all good"
"#;

/// Kills the child when dropped, so a failing test leaves no daemons.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Sends `signal` (`STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal}");
    }

    fn kill(&mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("wait");
    }
}

fn spawn(args: &[&str], log: &Path) -> Daemon {
    let out = std::fs::File::create(log).expect("daemon log");
    Daemon(
        almanac()
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn almanac"),
    )
}

/// The farm as the log says, folded here from maintnerd's gRPC stream.
struct LogWatch {
    rt: tokio::runtime::Runtime,
    sub: Subscription,
    farm: Farm,
    position: u64,
    /// Every `MachineLost`: machine id and reason.
    losses: Vec<(String, MachineLostReason)>,
}

impl LogWatch {
    fn new(maintnerd: SocketAddr) -> LogWatch {
        LogWatch {
            rt: crate::support::runtime(),
            sub: Subscription::new(&maintnerd.to_string(), 0),
            farm: Farm::new(),
            position: 0,
            losses: Vec::new(),
        }
    }

    fn apply(&mut self, rec: &almanac_proto::pb::log::LogRecord) {
        let m = Mutation::decode(rec.mutation.as_ref()).expect("decode");
        if let Some(machine_event::Event::Lost(l)) =
            m.machine.as_ref().and_then(|e| e.event.as_ref())
        {
            self.losses.push((l.machine_id.clone(), l.reason()));
        }
        self.farm
            .apply(Position(rec.position), &m)
            .expect("farm fold");
        self.position = almanac_log_client::grpc::record_end(rec);
    }

    /// Folds records until `ready` holds.
    fn wait(&mut self, what: &str, ready: impl Fn(&Farm) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ready(&self.farm) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what}: not within {WAIT:?}; builds:\n{}",
                describe(&self.farm)
            );
            let rec = self
                .rt
                .block_on(async { tokio::time::timeout(left, self.sub.next()).await });
            if let Ok(rec) = rec {
                let rec = rec.expect("subscription");
                self.apply(&rec);
            }
        }
    }

    /// Folds records until `machine_id`'s loss is recorded; returns its
    /// reason.
    fn wait_loss(&mut self, machine_id: &str) -> MachineLostReason {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((_, reason)) = self.losses.iter().find(|(id, _)| id == machine_id) {
                return *reason;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{machine_id} not lost within {WAIT:?}");
            let rec = self
                .rt
                .block_on(async { tokio::time::timeout(left, self.sub.next()).await });
            if let Ok(rec) = rec {
                let rec = rec.expect("subscription");
                self.apply(&rec);
            }
        }
    }

    /// Folds exactly up to `position`.
    fn fold_to(&mut self, position: u64) {
        while self.position < position {
            let rec = self
                .rt
                .block_on(async { tokio::time::timeout(WAIT, self.sub.next()).await })
                .expect("records up to the position")
                .expect("subscription");
            self.apply(&rec);
        }
        assert_eq!(self.position, position, "folded past the position");
    }
}

fn describe(farm: &Farm) -> String {
    farm.builds()
        .map(|b| {
            format!(
                "  {} {}@{} attempt {} {:?}\n",
                b.build_id, b.builder, b.sub_rev, b.attempt, b.state
            )
        })
        .collect()
}

/// Builds of `builder` at `commit`, in request order.
fn builds_of<'a>(
    farm: &'a Farm,
    builder: &str,
    commit: &str,
) -> Vec<&'a almanac_projections::farm::Build> {
    let mut v: Vec<_> = farm
        .builds()
        .filter(|b| b.builder == builder && b.sub_rev == commit)
        .collect();
    v.sort_by_key(|b| b.requested_at);
    v
}

fn outcome(b: &almanac_projections::farm::Build) -> Option<BuildOutcome> {
    match &b.state {
        BuildState::Done { outcome, .. } => Some(*outcome),
        _ => None,
    }
}

fn verdicts(farm: &Farm, builder: &str, commit: &str) -> Vec<BuildOutcome> {
    builds_of(farm, builder, commit)
        .into_iter()
        .filter_map(outcome)
        .filter(|o| matches!(o, BuildOutcome::Passed | BuildOutcome::Failed))
        .collect()
}

fn commit(repo: &Path, message: &str, files: &[(&str, Option<&str>)]) -> String {
    for (name, content) in files {
        let path = repo.join(name);
        match content {
            Some(text) => std::fs::write(&path, text).expect("write"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    String::from_utf8(git(repo, &["rev-parse", "HEAD"]))
        .expect("utf8")
        .trim()
        .to_owned()
}

fn http_get(addr: SocketAddr, path: &str) -> crate::support::HttpResponse {
    crate::support::exchange(addr, "GET", path, &[], b"", true)
}

/// The coordinator's `/status.json` once its own fold (fed by its own
/// subscription) has read the log at least to `position`: the pages are
/// rendered from that fold, not from the test's.
fn status_at(addr: SocketAddr, position: u64) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = http_get(addr, "/status.json").json();
        if status["header"]["log_position"].as_u64() >= Some(position) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator's fold did not reach {position} within {WAIT:?}: {:#}",
            status["header"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Setup {
    dir: tempfile::TempDir,
    repo: PathBuf,
    markers: PathBuf,
    maintnerd: SocketAddr,
    coordinator_args: Vec<String>,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a coordinator on `listen` (a restart takes the same address,
    /// which the reverse buildlets keep dialing).
    fn start_coordinator(&self, n: u32, listen: &str) -> (Daemon, SocketAddr) {
        let addr_file = self.path(&format!("coordinator-{n}.addr"));
        let mut args: Vec<&str> = self.coordinator_args.iter().map(String::as_str).collect();
        args.extend(["--addr-file", arg(&addr_file), "--listen", listen]);
        let mut daemon = spawn(&args, &self.path(&format!("coordinator-{n}.log")));
        let addr = wait_for_addr_file(&addr_file, &mut daemon.0);
        (daemon, addr)
    }

    fn reverse_buildlet(&self, coordinator: SocketAddr, hostname: &str, key: &[&str]) -> Daemon {
        let workdir = self.path("work").join(hostname);
        let mut args = vec!["buildlet", "--reverse"];
        let coordinator = coordinator.to_string();
        args.push(&coordinator);
        args.extend([
            "--host-type",
            "host-rev",
            "--hostname",
            hostname,
            "--workdir",
            arg(&workdir),
        ]);
        args.extend(key);
        spawn(&args, &self.path(&format!("{hostname}.log")))
    }

    fn release(&self, tag: &str) {
        std::fs::write(self.markers.join(format!("release-{tag}")), "go").expect("release");
    }

    /// The work directory a waiting build reported, once it has.
    fn started(&self, tag: &str) -> String {
        let path = self.markers.join(format!("started-{tag}"));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "{tag} never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts maintnerd over the test's log, syncing its repository, on
/// `listen` (a restart takes the same address).
fn start_maintnerd(root: &Path, n: u32, listen: &str) -> (Daemon, SocketAddr) {
    let addr_file = root.join(format!("maintnerd-{n}.addr"));
    let mut daemon = spawn(
        &[
            "maintnerd",
            "--data",
            arg(&root.join("log")),
            "--listen",
            listen,
            "--addr-file",
            arg(&addr_file),
            "--token-file",
            arg(&root.join("token")),
            "--config",
            arg(&root.join("ingest.toml")),
            "--repos",
            arg(&root.join("repos")),
        ],
        &root.join(format!("maintnerd-{n}.log")),
    );
    let addr = wait_for_addr_file(&addr_file, &mut daemon.0);
    (daemon, addr)
}

fn setup() -> (Setup, Daemon, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let repo = root.join("demo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("build.sh"), BUILD_SH).expect("build.sh");
    let mut perms = std::fs::metadata(repo.join("build.sh"))
        .expect("meta")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(repo.join("build.sh"), perms).expect("chmod");
    let markers = root.join("markers");
    std::fs::create_dir_all(&markers).expect("mkdir");
    let env = root.join("env");
    std::fs::create_dir_all(&env).expect("mkdir");
    std::fs::write(env.join("setup.sh"), "#!/bin/sh\n").expect("setup");
    std::fs::write(
        env.join("hosts.toml"),
        r#"
[[host]]
type = "host-rev"
pool = "reverse"
expected_machines = 2
setup = "setup.sh"

[[host]]
type = "host-listen"
pool = "listen"
setup = "setup.sh"
"#,
    )
    .expect("hosts");
    std::fs::write(
        env.join("builders.toml"),
        format!(
            r#"
[[builder]]
name = "rev-script"
host_type = "host-rev"
steps = ["./build.sh"]
env = ["MARKERS={markers}"]
repos = ["demo"]
branches = ["main"]

[[builder]]
name = "listen-script"
host_type = "host-listen"
steps = ["./build.sh"]
env = ["MARKERS={markers}"]
repos = ["demo"]
branches = ["main"]
"#,
            markers = markers.display()
        ),
    )
    .expect("builders");
    std::fs::write(
        root.join("ingest.toml"),
        format!(
            "[[git]]\nname = \"demo\"\nurl = \"{}\"\n\n[poll]\ngit = 1\n",
            repo.display()
        ),
    )
    .expect("ingest config");
    std::fs::write(root.join("token"), "farm-test-token\n").expect("token");
    std::fs::write(root.join("master"), MASTER).expect("master");
    std::fs::write(root.join("wrong-key"), "not the host key").expect("wrong key");

    let (maintnerd, maintnerd_addr) = start_maintnerd(root, 1, "127.0.0.1:0");
    let mut listen = spawn(
        &[
            "buildlet",
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            arg(&root.join("listen.addr")),
            "--host-type",
            "host-listen",
            "--master-key-file",
            arg(&root.join("master")),
            "--workdir",
            arg(&root.join("work").join("listen")),
        ],
        &root.join("listen.log"),
    );
    let listen_addr = wait_for_addr_file(&root.join("listen.addr"), &mut listen.0);
    let coordinator_args = vec![
        "coordinator".to_owned(),
        "--server".to_owned(),
        maintnerd_addr.to_string(),
        "--token-file".to_owned(),
        arg(&root.join("token")).to_owned(),
        "--env".to_owned(),
        arg(&env).to_owned(),
        "--data".to_owned(),
        arg(&root.join("coordinator")).to_owned(),
        "--master-key-file".to_owned(),
        arg(&root.join("master")).to_owned(),
        "--repo".to_owned(),
        format!("demo={}", repo.display()),
        "--buildlet".to_owned(),
        format!("host-listen={listen_addr}"),
        "--discovery-interval".to_owned(),
        "1".to_owned(),
        "--depth".to_owned(),
        "1".to_owned(),
        "--health-interval".to_owned(),
        "1".to_owned(),
    ];
    (
        Setup {
            dir,
            repo,
            markers,
            maintnerd: maintnerd_addr,
            coordinator_args,
        },
        maintnerd,
        listen,
    )
}

#[test]
fn the_farm_builds_commits_survives_lost_machines_and_a_coordinator_restart() {
    let (s, mut maintnerd, listen) = setup();
    let mut watch = LogWatch::new(s.maintnerd);
    let builders = ["rev-script", "listen-script"];

    // One passing commit before anything runs.
    let c1 = commit(&s.repo, "first", &[]);
    let (mut coordinator, coordinator_addr) = s.start_coordinator(1, "127.0.0.1:0");
    let master = s.path("master");
    let key = ["--master-key-file", arg(&master)];
    let _r1 = s.reverse_buildlet(coordinator_addr, "r1", &key);
    let _r2 = s.reverse_buildlet(coordinator_addr, "r2", &key);
    watch.wait("c1 passes on every builder", |f| {
        builders
            .iter()
            .all(|b| f.result(b, "demo", &c1, "").is_some_and(|r| r.ok))
    });
    watch.wait("both reverse machines registered", |f| {
        f.machines().filter(|m| m.host_type == "host-rev").count() == 2
    });

    // A failing commit fails on every builder, with its log stored.
    let c2 = commit(&s.repo, "second", &[("fail", Some("yes"))]);
    watch.wait("c2 fails on every builder", |f| {
        builders
            .iter()
            .all(|b| f.result(b, "demo", &c2, "").is_some_and(|r| !r.ok))
    });
    let failed = builds_of(&watch.farm, "rev-script", &c2)[0].clone();
    let log = failed.log.clone().expect("a failed build has its log");
    let text = http_get(coordinator_addr, &format!("/log/{}", log.sha256)).text();
    assert!(text.contains("failing as asked"), "{text}");
    assert!(text.contains(&c2), "{text}");
    let status = status_at(coordinator_addr, watch.position);
    let recent: Vec<(String, String)> = status["recent_builds"]
        .as_array()
        .expect("recent builds")
        .iter()
        .map(|b| {
            (
                b["build_id"].as_str().unwrap_or("").to_owned(),
                b["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        recent.contains(&(failed.build_id.clone(), "failed".to_owned())),
        "{recent:?}"
    );
    let page = http_get(coordinator_addr, "/").text();
    assert!(
        page.contains(&failed.build_id),
        "the status page lists the build"
    );

    // A registration with the wrong key is refused and recorded.
    let wrong_key = s.path("wrong-key");
    let mut bad = s.reverse_buildlet(coordinator_addr, "bad", &["--key-file", arg(&wrong_key)]);
    watch.wait("the wrong key is refused and logged", |f| {
        f.rejections()
            .any(|r| r.hostname == "bad" && r.http_status == 412 && r.host_type == "host-rev")
    });
    bad.kill();

    // A reverse buildlet killed mid-build: communication error, requeued,
    // passes on the other machine.
    let c3 = commit(&s.repo, "third", &[("fail", None), ("slow", Some("c3"))]);
    let workdir = s.started("c3-rev-script");
    let (victim, mut victim_process, survivor) = if workdir.ends_with("/r1") {
        ("r1", _r1, "r2")
    } else {
        assert!(workdir.ends_with("/r2"), "{workdir}");
        ("r2", _r2, "r1")
    };
    victim_process.kill();
    watch.wait(
        "the killed machine's build ends in a communication error",
        |f| {
            builds_of(f, "rev-script", &c3)
                .iter()
                .any(|b| outcome(b) == Some(BuildOutcome::CommError))
        },
    );
    s.release("c3");
    watch.wait("c3 passes on every builder", |f| {
        builders
            .iter()
            .all(|b| f.result(b, "demo", &c3, "").is_some_and(|r| r.ok))
    });
    let c3_builds = builds_of(&watch.farm, "rev-script", &c3);
    assert_eq!(c3_builds.len(), 2, "{}", describe(&watch.farm));
    assert_eq!(outcome(c3_builds[0]), Some(BuildOutcome::CommError));
    assert_eq!(c3_builds[1].attempt, 2);
    assert_eq!(c3_builds[1].supersedes, c3_builds[0].build_id);
    let ran_on = c3_builds[1].ran_on.clone().expect("the retry started");
    let machine_host = |id: &str| {
        watch
            .farm
            .machines()
            .find(|m| m.machine_id == id)
            .map(|m| m.hostname.clone())
    };
    assert_eq!(machine_host(&ran_on).as_deref(), Some(survivor));
    watch.wait("the killed machine left the pool", |f| {
        !f.machines().any(|m| m.hostname == victim)
    });

    // A machine that stops answering (its process stopped, its connection
    // still open) fails its health check: lost by heartbeat, its build
    // requeued, and once it runs again it is redialed as a new machine.
    let c3b = commit(&s.repo, "third and a half", &[("slow", Some("c3b"))]);
    s.started("c3b-listen-script");
    let stalled: Vec<String> = watch
        .farm
        .machines()
        .filter(|m| m.host_type == "host-listen")
        .map(|m| m.machine_id.clone())
        .collect();
    assert_eq!(stalled.len(), 1);
    listen.signal("STOP");
    watch.wait("its build ends in a communication error", |f| {
        builds_of(f, "listen-script", &c3b)
            .iter()
            .any(|b| outcome(b) == Some(BuildOutcome::CommError))
    });
    assert_eq!(watch.wait_loss(&stalled[0]), MachineLostReason::Heartbeat);
    listen.signal("CONT");
    s.release("c3b");
    watch.wait("c3b passes on every builder", |f| {
        builders
            .iter()
            .all(|b| f.result(b, "demo", &c3b, "").is_some_and(|r| r.ok))
    });
    assert!(
        watch
            .farm
            .machines()
            .any(|m| m.host_type == "host-listen" && m.machine_id != stalled[0]),
        "the listen buildlet is back as a new machine"
    );

    // The coordinator killed mid-build and restarted.
    let c4 = commit(&s.repo, "fourth", &[("slow", Some("c4"))]);
    s.started("c4-listen-script");
    coordinator.kill();
    let (_coordinator2, coordinator2_addr) = s.start_coordinator(2, &coordinator_addr.to_string());
    assert_eq!(coordinator2_addr, coordinator_addr);
    watch.wait("the interrupted build is retried", |f| {
        builds_of(f, "listen-script", &c4)
            .iter()
            .any(|b| b.attempt == 2)
    });
    s.release("c4");
    watch.wait("c4 passes on every builder", |f| {
        builders
            .iter()
            .all(|b| f.result(b, "demo", &c4, "").is_some_and(|r| r.ok))
    });
    let interrupted = builds_of(&watch.farm, "listen-script", &c4);
    assert_eq!(outcome(interrupted[0]), Some(BuildOutcome::CommError));
    assert!(
        matches!(&interrupted[0].state, BuildState::Done { done_msg, .. } if done_msg.contains("the coordinator running it went away")),
        "{:?}",
        interrupted[0].state
    );

    // maintnerd itself killed and restarted on the same address: the
    // coordinator's subscriptions and appends reconnect, and the next
    // commit is built as before.
    maintnerd.kill();
    let (_maintnerd2, again) = start_maintnerd(s.dir.path(), 2, &s.maintnerd.to_string());
    assert_eq!(again, s.maintnerd);
    let c5 = commit(&s.repo, "fifth", &[("slow", None)]);
    watch.wait(
        "c5 passes on every builder after maintnerd's restart",
        |f| {
            builders
                .iter()
                .all(|b| f.result(b, "demo", &c5, "").is_some_and(|r| r.ok))
        },
    );

    // The configuration was recorded once: the restart found the same hash.
    assert_eq!(watch.farm.config_snapshots(), 1);
    assert!(watch.farm.config_hash().is_some_and(|h| h.len() == 64));

    // Nothing that finished ran twice: one verdict per builder and commit.
    for c in [&c1, &c2, &c3, &c3b, &c4, &c5] {
        for b in builders {
            assert_eq!(
                verdicts(&watch.farm, b, c).len(),
                1,
                "{b}@{c}:\n{}",
                describe(&watch.farm)
            );
        }
    }
    assert!(watch.farm.builds().all(|b| b.kind == BuildKind::PostSubmit));

    // The restarted coordinator's view is a replay of the log: compare its
    // status with one rendered here from a fold to the same position.
    let status = http_get(coordinator2_addr, "/status.json").json();
    let position = status["header"]["log_position"].as_u64().expect("position");
    let mut replay = LogWatch::new(s.maintnerd);
    replay.fold_to(position);
    let envs = almanac_services::farm::env::Environments::load(&s.path("env")).expect("env");
    let header = almanac_services::coordinator::status::Header {
        instance: status["header"]["instance"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        version: status["header"]["version"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        started_unix: status["header"]["started_unix"].as_i64().unwrap_or(0),
        log_position: position,
    };
    let mine = serde_json::to_value(almanac_services::coordinator::status::farm_status(
        &replay.farm,
        &envs,
        &header,
        0,
    ))
    .expect("json");
    let ids = |v: &serde_json::Value, section: &str, key: &str| -> Vec<String> {
        v[section]
            .as_array()
            .expect(section)
            .iter()
            .map(|x| format!("{}:{}", x[key], x["outcome"]))
            .collect()
    };
    for (section, key) in [
        ("machines", "machine_id"),
        ("active_builds", "build_id"),
        ("pending_builds", "build_id"),
        ("recent_builds", "build_id"),
    ] {
        assert_eq!(
            ids(&status, section, key),
            ids(&mine, section, key),
            "{section}"
        );
    }
    assert_eq!(status["totals"], mine["totals"]);
}

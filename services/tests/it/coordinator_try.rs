//! Trybots end to end in one process: a Gerrit CL voted Run-TryBot+1 (its
//! patch set a real commit in a git repository) is found by the
//! coordinator's try discovery, built on a listen-mode buildlet from that
//! commit's tree, concluded in the log (`TryBuildConcluded`, no dashboard
//! result), and not built again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use almanac_projections::farm::{BuildState, Farm};
use almanac_proto::pb::farm::{BuildKind, BuildOutcome, result_event};
use almanac_proto::pb::maintpb::GitCommit;
use almanac_services::coordinator::machines::StaticBuildlet;
use almanac_services::coordinator::upstream::Upstream;
use almanac_services::coordinator::{Config, Coordinator};
use almanac_services::farm::env::Environments;
use almanac_services::ingest::config::Secret;

use crate::support::{
    GO, RUN_TRYBOT, change_id, cl_mutation_of, git, go_history, logged, runtime, write_log,
};

const WAIT: Duration = Duration::from_secs(120);
const MASTER: &str = "try master key";

fn try_builds<'a>(farm: &'a Farm, commit: &str) -> Vec<&'a almanac_projections::farm::Build> {
    farm.builds()
        .filter(|b| b.kind == BuildKind::Try && b.rev == commit)
        .collect()
}

/// One trybot-only builder, `linux-try`, of `host-try`, running
/// `./build.sh` for go's master.
const TRY_ONLY_BUILDERS: &str = "[[builder]]\nname = \"linux-try\"\nhost_type = \"host-try\"\nsteps = [\"./build.sh\"]\nrepos = [\"go\"]\nbranches = [\"master\"]\ntry_bot = true\ntry_only = true\n";

/// A repository at `repo` with one commit, CL `number` (Change-Id and
/// all), whose tree is an executable `build.sh` with `script`; returns the
/// commit and the CL's mutation, voted Run-TryBot+1.
fn cl_with_build_script(
    repo: &std::path::Path,
    number: u32,
    script: &str,
) -> (String, bytes::Bytes) {
    std::fs::create_dir_all(repo).expect("mkdir");
    git(repo, &["init", "-q", "-b", "master"]);
    std::fs::write(repo.join("build.sh"), script).expect("write");
    let mut perms = std::fs::metadata(repo.join("build.sh"))
        .expect("meta")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(repo.join("build.sh"), perms).expect("chmod");
    git(repo, &["add", "-A"]);
    let message = format!(
        "runtime: change {number}\n\nChange-Id: {}\n",
        change_id(number)
    );
    git(repo, &["commit", "-q", "-m", &message]);
    let sha = String::from_utf8(git(repo, &["rev-parse", "HEAD"]))
        .expect("utf-8")
        .trim()
        .to_owned();
    let raw = git(repo, &["cat-file", "commit", "HEAD"]);
    let (cl, ps) = cl_mutation_of(
        GO,
        number,
        GitCommit {
            sha1: sha.clone(),
            raw: raw.into(),
            diff_tree: None,
        },
        &[(5555, RUN_TRYBOT)],
    );
    assert_eq!(ps, sha);
    (sha, cl)
}

/// maintnerd over the log in `data`, one listen-mode buildlet of
/// `host-try`, and a coordinator with `builders` (a builders.toml) and the
/// source repositories `repos`, all in this process.
struct InProcess {
    rt: tokio::runtime::Runtime,
    server: almanac_services::maintnerd::Server,
    _buildlet: almanac_services::buildlet::Server,
    coordinator: Coordinator,
}

fn start_in_process(
    dir: &std::path::Path,
    data: std::path::PathBuf,
    builders: &str,
    repos: &[(&str, std::path::PathBuf)],
) -> InProcess {
    start_with(dir, data, builders, repos, None)
}

fn start_with(
    dir: &std::path::Path,
    data: std::path::PathBuf,
    builders: &str,
    repos: &[(&str, std::path::PathBuf)],
    gerrit: Option<almanac_services::coordinator::gerrit::GerritConfig>,
) -> InProcess {
    let env = dir.join("env");
    std::fs::create_dir_all(&env).expect("mkdir");
    std::fs::write(env.join("setup.sh"), "#!/bin/sh\n").expect("setup");
    std::fs::write(
        env.join("hosts.toml"),
        "[[host]]\ntype = \"host-try\"\npool = \"listen\"\nsetup = \"setup.sh\"\n",
    )
    .expect("hosts");
    std::fs::write(env.join("builders.toml"), builders).expect("builders");
    let rt = runtime();
    let mut server = rt
        .block_on(almanac_services::maintnerd::Server::start(
            almanac_services::maintnerd::Config::new(data, "127.0.0.1:0".parse().expect("addr")),
        ))
        .expect("maintnerd");
    rt.block_on(server.corpus_ready());
    let key = Secret::new(almanac_services::buildlet::host_key(
        MASTER.as_bytes(),
        "host-try",
    ));
    let buildlet = rt
        .block_on(almanac_services::buildlet::Server::start(
            almanac_services::buildlet::Config::new(
                "127.0.0.1:0".parse().expect("addr"),
                dir.join("work"),
                "host-try".into(),
                key,
            ),
        ))
        .expect("buildlet");
    let mut config = Config::new(
        Environments::load(&env).expect("env"),
        Secret::new(MASTER.into()),
        dir.join("blobs"),
    );
    for (name, path) in repos {
        config.repos.insert((*name).to_owned(), path.clone());
    }
    config.statics.push(StaticBuildlet {
        host_type: "host-try".into(),
        addr: buildlet.addr().to_string(),
    });
    config.discovery_interval = Duration::from_millis(100);
    // A work item that failed waits an hour, not 10 s: the tests count
    // discovery passes after a failure and must never see a retry.
    config.retry_backoff = Duration::from_secs(3600);
    config.gerrit = gerrit;
    config.public_url = Some("http://farmer.example".into());
    let coordinator = rt
        .block_on(Coordinator::start(Upstream::Local(server.sink()), config))
        .expect("coordinator");
    InProcess {
        rt,
        server,
        _buildlet: buildlet,
        coordinator,
    }
}

/// The part of Gerrit the coordinator's reviews use: one change's
/// patch-set-level comments, listed by `GET .../comments` and added to by
/// `POST .../revisions/REV/review` (each posted comment gets an id, the
/// review's tag and the revision), and every review posted, as (path,
/// authorization, body).
struct FakeGerrit {
    comments: Vec<serde_json::Value>,
    posted: Vec<(String, String, serde_json::Value)>,
    /// Answer every `GET .../comments` with 500.
    fail_listing: bool,
}

impl FakeGerrit {
    /// Serves `self` on 127.0.0.1 from `rt`; returns it and its URL.
    fn serve(self, rt: &tokio::runtime::Runtime) -> (Arc<Mutex<FakeGerrit>>, String) {
        let gerrit = Arc::new(Mutex::new(self));
        let state = gerrit.clone();
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let gerrit = state.clone();
            async move { gerrit_answer(&gerrit, req).await }
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move { axum::serve(listener, router).await });
        (gerrit, format!("http://{addr}"))
    }
}

async fn gerrit_answer(
    gerrit: &Mutex<FakeGerrit>,
    req: axum::extract::Request,
) -> (http::StatusCode, String) {
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let is_get = req.method() == http::Method::GET;
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut gerrit = gerrit.lock().expect("lock");
    if is_get && path.ends_with("/comments") {
        if gerrit.fail_listing {
            return (http::StatusCode::INTERNAL_SERVER_ERROR, "down".into());
        }
        let listed = serde_json::json!({ "/PATCHSET_LEVEL": gerrit.comments });
        return (http::StatusCode::OK, format!(")]}}'\n{listed}"));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let revision = path.rsplit('/').nth(1).unwrap_or_default().to_owned();
    for posted in json["comments"]["/PATCHSET_LEVEL"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let n = gerrit.comments.len();
        let mut stored = posted.clone();
        stored["id"] = format!("posted-{n}").into();
        stored["tag"] = json["tag"].clone();
        stored["commit_id"] = revision.clone().into();
        stored["updated"] = format!("2026-11-28 10:00:{n:02}.000000000").into();
        gerrit.comments.push(stored);
    }
    gerrit.posted.push((path, auth, json));
    (http::StatusCode::OK, ")]}'\n{}".to_owned())
}

#[test]
fn a_cl_voted_run_trybot_is_built_once_and_concluded() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The CL's patch set: a real commit whose tree has the build script.
    let repo = dir.path().join("go");
    let (sha, cl) = cl_with_build_script(
        &repo,
        101,
        "#!/bin/sh\necho trybot ran on \"$GO_BUILDER_NAME\"\n",
    );
    let data = dir.path().join("log");
    let mut records = go_history();
    records.push(cl);
    write_log(&data, records);

    // Try only: the go history's own commits are not in the repository.
    let builders = TRY_ONLY_BUILDERS;
    // A Gerrit that keeps the change's patch-set-level comments, lists
    // them, and records the reviews posted to it. It already holds an
    // earlier try set's thread, which failed and is still open, and a
    // thread a person started.
    let gerrit_rt = runtime();
    let (gerrit, gerrit_url) = FakeGerrit {
        comments: vec![
            serde_json::json!({"id": "old-begin", "tag": "autogenerated:trybots~beginning",
                "unresolved": true, "updated": "2026-11-01 10:00:00.000000000",
                "message": "TryBots beginning."}),
            serde_json::json!({"id": "old-failed", "in_reply_to": "old-begin",
                "tag": "autogenerated:trybots~failed", "unresolved": true,
                "updated": "2026-11-01 10:05:00.000000000", "message": "1 of 1 TryBots failed."}),
            serde_json::json!({"id": "person", "unresolved": true,
                "updated": "2026-11-02 09:00:00.000000000", "message": "Please add a test."}),
        ],
        posted: Vec::new(),
        fail_listing: false,
    }
    .serve(&gerrit_rt);
    let InProcess {
        rt,
        server,
        _buildlet,
        coordinator,
    } = start_with(
        dir.path(),
        data,
        builders,
        &[("go", repo.clone())],
        Some(almanac_services::coordinator::gerrit::GerritConfig {
            url: gerrit_url,
            auth: Some(Secret::new("git-gobot:secret".into())),
        }),
    );

    let done = rt.block_on(coordinator.wait_until(WAIT, |f| {
        try_builds(f, &sha)
            .iter()
            .any(|b| matches!(b.state, BuildState::Done { .. }))
    }));
    assert!(done, "no try build finished");
    let build = coordinator.read_farm(|f| try_builds(f, &sha)[0].clone());
    assert_eq!(build.builder, "linux-try");
    assert!(
        matches!(
            build.state,
            BuildState::Done {
                outcome: BuildOutcome::Passed,
                ..
            }
        ),
        "{:?}",
        build.state
    );
    assert_eq!(build.try_id, change_id(101));

    // Concluded in the log, with no dashboard result.
    let events: Vec<_> = logged(&server)
        .into_iter()
        .filter_map(|m| m.result?.event)
        .collect();
    assert!(events.iter().any(|e| matches!(e,
        result_event::Event::TryBuildConcluded(c)
            if c.build_id == build.build_id && c.succeeded && c.try_id == change_id(101))));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, result_event::Event::ResultRecorded(_)))
    );
    let log = build.log.clone().expect("log");
    let blobs = almanac_services::coordinator::blobs::BlobStore::open(&dir.path().join("blobs"))
        .expect("blobs");
    let text =
        String::from_utf8(blobs.get(&log.sha256).expect("get").expect("stored")).expect("utf-8");
    assert!(text.contains("trybot ran on linux-try"), "{text}");

    // The try set on /try.json (Go's shape, CORS open) and /try.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = coordinator.router();
    rt.spawn(async move { axum::serve(listener, router).await });
    let short = &sha[..8];
    let answer = crate::support::exchange(
        addr,
        "GET",
        &format!("/try.json?commit={short}"),
        &[],
        b"",
        true,
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let json = answer.json();
    assert_eq!(json["success"], true, "{json:#}");
    assert_eq!(json["payload"]["changeId"], change_id(101).as_str());
    assert_eq!(json["payload"]["commit"], sha.as_str());
    let builds = json["payload"]["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 1, "{json:#}");
    assert_eq!(builds[0]["name"], "linux-try");
    assert_eq!(builds[0]["done"], true);
    assert_eq!(builds[0]["succeeded"], true);
    let missing =
        crate::support::exchange(addr, "GET", "/try.json?commit=deadbeef", &[], b"", true);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["success"], false);
    let page =
        crate::support::exchange(addr, "GET", &format!("/try?commit={short}"), &[], b"", true);
    assert!(page.text().contains("linux-try"), "{}", page.text());

    // Later try discovery passes do not build it again.
    let passes = || {
        coordinator
            .metrics()
            .try_discovery_passes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let seen = passes();
    let deadline = std::time::Instant::now() + WAIT;
    while passes() < seen + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no more try discovery passes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(coordinator.read_farm(|f| try_builds(f, &sha).len()), 1);

    // The set went to Gerrit as the bot account, in Go's order: a
    // "beginning" review without a vote, then the result, once each; both
    // are on the record.
    let reported =
        rt.block_on(coordinator.wait_until(WAIT, |f| f.unposted_try_sets().count() == 0));
    assert!(reported, "the try set was not reported");
    let posted = gerrit.lock().expect("lock").posted.clone();
    assert_eq!(posted.len(), 2, "{posted:?}");
    for (path, auth, _) in &posted {
        assert_eq!(
            path,
            &format!(
                "/a/changes/go~master~{}/revisions/{sha}/review",
                change_id(101)
            )
        );
        assert_eq!(auth, "Basic Z2l0LWdvYm90OnNlY3JldA==");
    }
    // Everything is a patch-set-level comment. The beginning opens an
    // unresolved thread and answers "Superseded." in the earlier set's
    // thread, resolving it; the person's thread is left alone.
    let beginning = &posted[0].2;
    assert_eq!(beginning["tag"], "autogenerated:trybots~beginning");
    assert!(beginning.get("labels").is_none(), "{beginning}");
    assert_eq!(
        beginning["comments"]["/PATCHSET_LEVEL"],
        serde_json::json!([
            {
                "message": format!(
                    "TryBots beginning. Status page: http://farmer.example/try?commit={}",
                    &sha[..8]
                ),
                "unresolved": true,
            },
            {"message": "Superseded.", "in_reply_to": "old-failed", "unresolved": false},
        ])
    );
    // The result replies in the beginning's thread and, happy, resolves it.
    let beginning_id = gerrit
        .lock()
        .expect("lock")
        .comments
        .iter()
        .find(|c| c["tag"] == "autogenerated:trybots~beginning" && c["commit_id"] == sha.as_str())
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .expect("the beginning comment");
    let result = &posted[1].2;
    assert_eq!(result["labels"]["TryBot-Result"], 1);
    assert_eq!(result["tag"], "autogenerated:trybots~happy");
    assert_eq!(
        result["comments"]["/PATCHSET_LEVEL"],
        serde_json::json!([
            {"message": "TryBots are happy.", "in_reply_to": beginning_id, "unresolved": false},
        ])
    );
    let events: Vec<_> = logged(&server)
        .into_iter()
        .filter_map(|m| m.result?.event)
        .collect();
    let reviews: Vec<(&str, Option<&i32>, &str)> = events
        .iter()
        .filter_map(|e| match e {
            result_event::Event::GerritReviewPosted(p) if p.revision == sha => Some((
                p.tag.as_str(),
                p.labels.get("TryBot-Result"),
                p.in_reply_to.as_str(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        reviews,
        [
            ("autogenerated:trybots~beginning", None, ""),
            (
                "autogenerated:trybots~happy",
                Some(&1),
                beginning_id.as_str()
            )
        ]
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// Builds in the log that this coordinator cannot run (an unknown builder,
/// a repository it has no source for) are canceled, never handed to a
/// machine; one whose builder now runs on another host type is requested
/// again there.
#[test]
fn builds_this_coordinator_cannot_run_are_canceled() {
    use almanac_proto::pb::farm::{
        BuildEvent, BuildRequested, BuilderRev, BuildletRequested, Priority, PriorityClass,
        build_event,
    };
    use prost::Message as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let build = |e: build_event::Event| {
        bytes::Bytes::from(
            almanac_proto::pb::maintpb::Mutation {
                build: Some(BuildEvent {
                    meta: None,
                    event: Some(e),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let mut records = Vec::new();
    for (id, builder, sub_name, host_type) in [
        ("B000000001", "linux-try", "tools", "host-try"),
        ("B000000002", "linux-ghost", "", "host-try"),
        ("B000000003", "linux-try", "", "host-old"),
    ] {
        records.push(build(build_event::Event::BuildRequested(BuildRequested {
            build_id: id.into(),
            work: Some(BuilderRev {
                builder: builder.into(),
                rev: "c0ffee".repeat(6) + "c0ff",
                sub_name: sub_name.into(),
                sub_rev: if sub_name.is_empty() {
                    String::new()
                } else {
                    "decade".repeat(6) + "deca"
                },
            }),
            host_type: host_type.into(),
            kind: BuildKind::PostSubmit as i32,
            attempt: 1,
            ..Default::default()
        })));
        records.push(build(build_event::Event::BuildletRequested(
            BuildletRequested {
                request_id: format!("{id}.main"),
                host_type: host_type.into(),
                build_id: id.into(),
                priority: Some(Priority {
                    class: PriorityClass::Regular as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )));
    }
    let data = dir.path().join("log");
    write_log(&data, records);
    let InProcess {
        rt,
        server,
        _buildlet,
        coordinator,
    } = start_in_process(
        dir.path(),
        data,
        "[[builder]]\nname = \"linux-try\"\nhost_type = \"host-try\"\nsteps = [\"./build.sh\"]\n",
        // A "go" repository that is not one: the requeued build may run,
        // and fail, after the checks below.
        &[("go", dir.path().join("no-such-repository"))],
    );
    let all_done = rt.block_on(coordinator.wait_until(WAIT, |f| {
        ["B000000001", "B000000002", "B000000003"].iter().all(|id| {
            f.build(id)
                .is_some_and(|b| matches!(b.state, BuildState::Done { .. }))
        })
    }));
    assert!(all_done, "the builds were not ended");
    let moved = coordinator
        .read_farm(|f| f.build("B000000003").cloned())
        .expect("build");
    match &moved.state {
        BuildState::Done {
            outcome: BuildOutcome::Canceled,
            done_msg,
        } => assert_eq!(done_msg, "moved: linux-try now runs on host-try"),
        other => panic!("B000000003: {other:?}"),
    }
    let again = coordinator
        .read_farm(|f| {
            f.builds().find(|b| b.supersedes == "B000000003").map(|b| {
                (
                    b.host_type.clone(),
                    b.builder.clone(),
                    b.rev.clone(),
                    b.attempt,
                )
            })
        })
        .expect("B000000003 was requested again");
    assert_eq!(
        again,
        ("host-try".into(), "linux-try".into(), moved.rev.clone(), 2)
    );
    for (id, why) in [
        ("B000000001", "no source repository for \"tools\""),
        ("B000000002", "no builder \"linux-ghost\""),
    ] {
        let b = coordinator
            .read_farm(|f| f.build(id).cloned())
            .expect("build");
        match &b.state {
            BuildState::Done {
                outcome: BuildOutcome::Canceled,
                done_msg,
            } => assert!(
                done_msg.starts_with("not_buildable") && done_msg.contains(why),
                "{done_msg}"
            ),
            other => panic!("{id}: {other:?}"),
        }
        assert!(b.started_time.is_none(), "{id} never ran");
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// A build whose source this coordinator cannot read (a commit its copy
/// of the repository lacks) ends without a result, and its work waits
/// before it is tried again instead of spinning.
#[test]
fn a_missing_source_is_no_result_and_backs_off() {
    use almanac_proto::pb::maintpb::{GitMutation, GitRepo, Mutation};
    use prost::Message as _;

    let dir = tempfile::tempdir().expect("tempdir");
    // The log knows demo's main at hand-made commit 7, which no git
    // repository holds.
    let git_mutation = |m: GitMutation| {
        bytes::Bytes::from(
            Mutation {
                git: Some(m),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let repo = Some(GitRepo {
        go_repo: "demo".into(),
    });
    let records = vec![
        git_mutation(GitMutation {
            repo: repo.clone(),
            commit: Some(crate::support::commit(7, None, "demo: first")),
            ..Default::default()
        }),
        git_mutation(GitMutation {
            repo,
            refs: vec![crate::support::git_ref("refs/heads/main", 7)],
            ..Default::default()
        }),
    ];
    let data = dir.path().join("log");
    write_log(&data, records);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    git(&empty, &["init", "-q", "-b", "main"]);

    let InProcess {
        rt,
        server,
        _buildlet,
        coordinator,
    } = start_in_process(
        dir.path(),
        data,
        "[[builder]]\nname = \"linux-demo\"\nhost_type = \"host-try\"\nsteps = [\"./build.sh\"]\nrepos = [\"demo\"]\nbranches = [\"main\"]\n",
        &[("demo", empty)],
    );
    let commit = crate::support::hash(7);
    let ended = rt.block_on(coordinator.wait_until(WAIT, |f| {
        f.builds()
            .any(|b| b.sub_rev == commit && matches!(b.state, BuildState::Done { .. }))
    }));
    assert!(ended, "the build did not end");
    // Several discovery passes later, still one build and no result.
    let passes = || {
        coordinator
            .metrics()
            .discovery_passes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let seen = passes();
    let deadline = std::time::Instant::now() + WAIT;
    while passes() < seen + 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no more discovery passes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (builds, results) = coordinator.read_farm(|f| {
        (
            f.builds()
                .filter(|b| b.sub_rev == commit)
                .cloned()
                .collect::<Vec<_>>(),
            f.results().count(),
        )
    });
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(results, 0);
    match &builds[0].state {
        BuildState::Done {
            outcome: BuildOutcome::CommError,
            done_msg,
        } => assert!(done_msg.contains("fetching the source"), "{done_msg}"),
        other => panic!("{other:?}"),
    }
    // The machine was not blamed: it is still the same one, idle.
    assert_eq!(
        coordinator.read_farm(|f| f.machines().filter(|m| m.assigned_to.is_none()).count()),
        1
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// A Gerrit whose comments cannot be read still gets the set's reviews,
/// and with them the vote: each as a thread of its own, superseding
/// nothing.
#[test]
fn reviews_go_without_threads_when_the_comments_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("go");
    let (sha, cl) = cl_with_build_script(&repo, 103, "#!/bin/sh\necho ok\n");
    let data = dir.path().join("log");
    let mut records = go_history();
    records.push(cl);
    write_log(&data, records);
    let builders = TRY_ONLY_BUILDERS;
    let gerrit_rt = runtime();
    let (gerrit, gerrit_url) = FakeGerrit {
        comments: vec![serde_json::json!({"id": "old-begin",
            "tag": "autogenerated:trybots~beginning", "unresolved": true,
            "updated": "2026-11-01 10:00:00.000000000"})],
        posted: Vec::new(),
        fail_listing: true,
    }
    .serve(&gerrit_rt);
    let InProcess {
        rt,
        server,
        _buildlet,
        coordinator,
    } = start_with(
        dir.path(),
        data,
        builders,
        &[("go", repo.clone())],
        Some(almanac_services::coordinator::gerrit::GerritConfig {
            url: gerrit_url,
            auth: None,
        }),
    );
    let done = rt.block_on(coordinator.wait_until(WAIT, |f| {
        try_builds(f, &sha)
            .iter()
            .any(|b| matches!(b.state, BuildState::Done { .. }))
    }));
    assert!(done, "no try build finished");
    let reported =
        rt.block_on(coordinator.wait_until(WAIT, |f| f.unposted_try_sets().count() == 0));
    assert!(reported, "the try set was not reported");
    let posted = gerrit.lock().expect("lock").posted.clone();
    let threads: Vec<_> = posted
        .iter()
        .map(|(path, _, body)| {
            assert!(path.starts_with("/changes/"), "{path}");
            (
                body["tag"].clone(),
                body["comments"]["/PATCHSET_LEVEL"].clone(),
            )
        })
        .collect();
    assert_eq!(
        threads,
        [
            (
                serde_json::json!("autogenerated:trybots~beginning"),
                serde_json::json!([{
                    "message": format!(
                        "TryBots beginning. Status page: http://farmer.example/try?commit={}",
                        &sha[..8]
                    ),
                    "unresolved": true,
                }])
            ),
            (
                serde_json::json!("autogenerated:trybots~happy"),
                serde_json::json!([{"message": "TryBots are happy.", "unresolved": false}])
            ),
        ]
    );
    assert_eq!(posted[1].2["labels"]["TryBot-Result"], 1);
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// A stopped coordinator appends nothing more: a build cut short by the
/// buildlet going away afterwards stays running in the log, for the next
/// coordinator to take over, instead of being recorded as failed.
#[test]
fn a_stopped_coordinator_leaves_a_running_build_to_its_successor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&markers).expect("mkdir");
    // A CL whose build says it started, then waits (at most a minute) for
    // a release that never comes.
    let repo = dir.path().join("go");
    let (sha, cl) = cl_with_build_script(
        &repo,
        102,
        &format!(
            "#!/bin/sh\ntouch '{m}/started'\ni=0\nwhile [ ! -f '{m}/release' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n",
            m = markers.display()
        ),
    );
    let data = dir.path().join("log");
    let mut records = go_history();
    records.push(cl);
    write_log(&data, records);
    let builders = TRY_ONLY_BUILDERS;
    let InProcess {
        rt,
        server,
        _buildlet: buildlet,
        coordinator,
    } = start_in_process(dir.path(), data, builders, &[("go", repo.clone())]);

    // The build runs: the log says so, and its command has started.
    let running = rt.block_on(coordinator.wait_until(WAIT, |f| {
        try_builds(f, &sha)
            .iter()
            .any(|b| matches!(b.state, BuildState::Running { .. }))
    }));
    assert!(running, "the build never ran");
    let deadline = std::time::Instant::now() + WAIT;
    while !markers.join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    rt.block_on(coordinator.stop());
    let end = server.log().end();
    // The buildlet goes away with the build in flight: its execution
    // ends, and the end it tries to record is refused and left.
    rt.block_on(buildlet.shutdown()).expect("buildlet shutdown");
    let left = || {
        coordinator
            .metrics()
            .builds_left_running
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while left() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-short build never tried to record its end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.log().end(), end, "something was appended after stop");
    let states: Vec<_> = coordinator.read_farm(|f| {
        try_builds(f, &sha)
            .iter()
            .map(|b| b.state.clone())
            .collect()
    });
    assert!(!states.is_empty());
    assert!(
        states
            .iter()
            .all(|s| matches!(s, BuildState::Running { .. })),
        "{states:?}"
    );
    assert!(
        coordinator
            .metrics()
            .appends_after_stop
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

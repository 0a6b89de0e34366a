//! `almanac retrybuilds` as a process against a real maintnerd: it folds
//! the log's results, clears exactly the chosen failures by appending
//! `ResultCleared` events with the append token, and appends nothing on a
//! dry run or with a wrong token; `--redo-flaky` and `--substr` read the
//! failures' logs from a coordinator.

use bytes::Bytes;
use prost::Message as _;

use almanac_projections::Projection as _;
use almanac_projections::farm::Farm;
use almanac_proto::pb::farm::{ResultEvent, ResultKey, ResultRecorded, result_event};
use almanac_proto::pb::maintpb::Mutation;
use almanac_services::coordinator::Coordinator;
use almanac_services::coordinator::blobs::BlobStore;
use almanac_services::coordinator::upstream::Upstream;
use almanac_services::farm::env::Environments;
use almanac_services::ingest::config::Secret;
use almanac_services::maintnerd::{Config, Server};

use crate::support::{almanac, arg, logged, runtime, stderr, stdout};

const TOKEN: &str = "retry-token-1234";

fn recorded(builder: &str, hash: &str, ok: bool, log_hash: &str) -> Bytes {
    Bytes::from(
        Mutation {
            result: Some(ResultEvent {
                meta: None,
                event: Some(result_event::Event::ResultRecorded(ResultRecorded {
                    key: Some(ResultKey {
                        builder: builder.into(),
                        hash: hash.into(),
                        ..Default::default()
                    }),
                    ok,
                    log_hash: log_hash.into(),
                    run_time_ns: 1,
                    build_id: format!("B-{builder}-{hash}"),
                })),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn fold(server: &Server) -> Farm {
    let mut farm = Farm::new();
    for (i, m) in logged(server).iter().enumerate() {
        farm.apply(almanac_log::Position(i as u64), m)
            .expect("fold");
    }
    farm
}

#[test]
fn retrybuilds_clears_exactly_the_chosen_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write");
    let wrong_token = dir.path().join("wrong");
    std::fs::write(&wrong_token, "not-the-token").expect("write");
    let rt = runtime();
    let mut config = Config::new(dir.path().join("log"), "127.0.0.1:0".parse().expect("addr"));
    config.append_token = Some(TOKEN.into());
    let server = rt.block_on(Server::start(config)).expect("start");
    let addr = server.addr().to_string();
    rt.block_on(server.log().append(vec![
        recorded("linux-amd64", "aaaa1111", false, "log1"),
        recorded("linux-amd64", "bbbb2222", false, "log2"),
        recorded("linux-amd64", "cccc3333", true, ""),
        recorded("linux-arm64", "aaaa1111", false, "log3"),
    ]))
    .expect("append");
    let end = server.log().end();

    // A dry run lists and appends nothing.
    let out = almanac()
        .args([
            "retrybuilds",
            "--server",
            &addr,
            "--builder",
            "linux-amd64",
            "--dry-run",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "linux-amd64\taaaa1111\tlog1\nlinux-amd64\tbbbb2222\tlog2\n"
    );
    assert_eq!(server.log().end(), end);

    // A wrong token is refused by maintnerd; nothing is appended.
    let out = almanac()
        .args(["retrybuilds", "--server", &addr, "--builder", "linux-amd64"])
        .args(["--token-file", arg(&wrong_token)])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    assert_eq!(server.log().end(), end);

    // A builder and a hash prefix: one failure cleared, recorded with who.
    let out = almanac()
        .args([
            "retrybuilds",
            "--server",
            &addr,
            "--builder",
            "linux-amd64",
            "--hash",
            "bbbb",
        ])
        .args(["--token-file", arg(&token_file), "--actor", "gopher"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let farm = fold(&server);
    assert!(farm.result("linux-amd64", "", "bbbb2222", "").is_none());
    assert!(farm.result("linux-amd64", "", "aaaa1111", "").is_some());
    assert!(farm.result("linux-arm64", "", "aaaa1111", "").is_some());
    let cleared: Vec<_> = logged(&server)
        .into_iter()
        .filter_map(|m| match m.result?.event? {
            result_event::Event::ResultCleared(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].actor, "gopher");

    // By log hash.
    let out = almanac()
        .args(["retrybuilds", "--server", &addr, "--loghash", "log3"])
        .args(["--token-file", arg(&token_file)])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let farm = fold(&server);
    assert!(farm.result("linux-arm64", "", "aaaa1111", "").is_none());
    assert!(farm.result("linux-amd64", "", "aaaa1111", "").is_some());

    // The log-reading selectors read each failure's log from a real
    // coordinator's /log route (its blob store holds them).
    let blobs = dir.path().join("blobs");
    let store = BlobStore::open(&blobs).expect("blob store");
    let flaky = store
        .put(b"exit status 2\ncompile: signal: killed\n")
        .expect("put")
        .sha256;
    let real = store
        .put(("ok\n".repeat(30) + "--- FAIL: TestParse (0.01s)\nFAIL\n").as_bytes())
        .expect("put")
        .sha256;
    rt.block_on(server.log().append(vec![
        recorded("linux-386", "cccc0001", false, &flaky),
        recorded("linux-386", "dddd0002", false, &real),
        recorded("windows-amd64", "eeee0003", false, &flaky),
        recorded("windows-amd64", "ffff0004", false, "no-such-log"),
    ]))
    .expect("append");
    let coordinator = rt
        .block_on(Coordinator::start(
            Upstream::Local(server.sink()),
            almanac_services::coordinator::Config::new(
                Environments {
                    hosts: Default::default(),
                    builders: Default::default(),
                },
                Secret::new("master".into()),
                blobs,
            ),
        ))
        .expect("coordinator");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let logs_url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = coordinator.router();
    rt.spawn(async move { axum::serve(listener, router).await });
    let retry = |selector: &[&str]| {
        let out = almanac()
            .args(["retrybuilds", "--server", &addr, "--coordinator", &logs_url])
            .args(selector)
            .args(["--token-file", arg(&token_file)])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (listed, _) = retry(&["--redo-flaky", "--builder", "linux-386"]);
    assert_eq!(listed, format!("linux-386\tcccc0001\t{flaky}\n"));
    let farm = fold(&server);
    assert!(farm.result("linux-386", "", "cccc0001", "").is_none());
    assert!(farm.result("linux-386", "", "dddd0002", "").is_some());
    assert!(farm.result("windows-amd64", "", "eeee0003", "").is_some());

    let (listed, _) = retry(&["--substr", "TestParse"]);
    assert_eq!(listed, format!("linux-386\tdddd0002\t{real}\n"));

    // Every builder's flaky failures; a log the coordinator does not have
    // is reported and left alone.
    let (listed, errors) = retry(&["--redo-flaky"]);
    assert_eq!(listed, format!("windows-amd64\teeee0003\t{flaky}\n"));
    assert!(errors.contains("ffff0004"), "{errors}");
    let farm = fold(&server);
    assert!(farm.result("windows-amd64", "", "eeee0003", "").is_none());
    assert!(farm.result("windows-amd64", "", "ffff0004", "").is_some());
    rt.block_on(server.shutdown()).expect("shutdown");
}

//! maintnerd over real sockets on 127.0.0.1: the `/logs` protocol byte for
//! byte, Go's netsource algorithm against it (`Corpus::open_network`), the
//! gRPC LogService (subscribe, append, head) and MaintnerService, health and
//! reflection.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio_stream::StreamExt as _;

use almanac_log::Options;
use almanac_log::segment::Sha224Digest;
use almanac_log_client::NetOptions;
use almanac_log_client::grpc::{LogClient, Subscription, record_end};
use almanac_projections::corpus::Corpus;
use almanac_projections::load::LoadOptions;
use almanac_services::maintnerd::{Config, Server};
use almanac_services::sample::SampleHistory;

use crate::support::{HttpResponse, exchange, runtime, segment_files};

const TOKEN: &str = "test-token-1234";

fn http(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> HttpResponse {
    exchange(addr, method, path, extra, b"", true)
}

fn sample_records(seed: u64, n: usize) -> Vec<Bytes> {
    SampleHistory::new(seed)
        .take(n)
        .map(|m| Bytes::from(m.encode_to_vec()))
        .collect()
}

/// Starts maintnerd with `cfg`; the test fails with the reason if it
/// cannot.
fn start(rt: &tokio::runtime::Runtime, cfg: Config) -> Server {
    rt.block_on(Server::start(cfg))
        .unwrap_or_else(|e| panic!("maintnerd did not start: {e:#}"))
}

/// Brings `corpus` (cached in `cache`) up to date with a server whose
/// history split from the one it was loaded from, and checks that the
/// split was handled by a reload: the corpus and the cache now hold
/// exactly the log in `truth`.
fn check_reloaded_after_split(corpus: &mut Corpus, truth: &Path, cache: &Path) {
    let folded = std::thread::scope(|s| s.spawn(|| corpus.update()).join().expect("thread"))
        .expect("update after split");
    assert_eq!(corpus.split_reloads(), 1);
    let truth_corpus = Corpus::open(truth).expect("open the new history");
    assert_eq!(folded, truth_corpus.mutation_count());
    assert_eq!(corpus.position(), truth_corpus.position());
    assert_eq!(corpus.dump(), truth_corpus.dump());
    assert_eq!(segment_files(cache), segment_files(truth));
}

/// Small segments, so a few hundred records span several.
fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir.to_owned(), "127.0.0.1:0".parse().expect("addr"));
    c.append_token = Some(TOKEN.to_owned());
    c.log_options = Options {
        segment_target_len: 32 << 10,
        max_record_len: 1 << 20,
        ..Options::default()
    };
    c.long_poll = Duration::from_secs(55);
    c
}

#[test]
fn logs_index_segments_and_errors_match_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = start(&rt, config(dir.path()));
    let addr = server.addr();

    // Empty log: `[]`, size 0.
    let r = http(addr, "GET", "/logs", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"[]");
    assert_eq!(r.header("X-Sum-Segment-Size"), Some("0"));

    rt.block_on(server.log().append(sample_records(1, 300)))
        .expect("append");
    let table = server.log().table();
    assert!(table.sealed().len() >= 2, "the test needs sealed segments");
    let total = table.end().0;

    let r = http(addr, "GET", "/logs", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.header("X-Sum-Segment-Size"),
        Some(total.to_string().as_str())
    );
    // Go's json.MarshalIndent(segs, "", "\t"), no trailing newline.
    let mut want = String::from("[\n");
    let segs: Vec<_> = table.segments().cloned().collect();
    for (i, seg) in segs.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(seg.file_name()))
            .unwrap_or_else(|_| std::fs::read(&seg.path).expect("segment"));
        let sha = Sha224Digest::of(&bytes[..seg.len as usize]);
        want.push_str(&format!(
            "\t{{\n\t\t\"number\": {},\n\t\t\"size\": {},\n\t\t\"sha224\": \"{sha}\",\n\t\t\"url\": \"/logs/{}\"\n\t}}{}\n",
            seg.number,
            seg.len,
            seg.number,
            if i + 1 < segs.len() { "," } else { "" }
        ));
    }
    want.push(']');
    assert_eq!(String::from_utf8_lossy(&r.body), want);

    // HEAD: the same headers, no body.
    let r = http(addr, "HEAD", "/logs", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("X-Sum-Segment-Size"),
        Some(total.to_string().as_str())
    );

    // An empty waitsizenot is no long-poll (Go acts only on a value).
    let r = http(addr, "GET", "/logs?waitsizenot=", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), want);

    // startseg: later segments only; above the current number means 0;
    // negative is refused.
    let r = http(addr, "GET", "/logs?startseg=1", &[]);
    let listed: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(listed.as_array().expect("array").len(), segs.len() - 1);
    assert_eq!(listed[0]["number"], 1);
    let r = http(addr, "GET", "/logs?startseg=9999", &[]);
    let listed: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(listed.as_array().expect("array").len(), segs.len());

    // Go's statuses and texts (http.Error: text/plain, trailing newline).
    for (method, path, text) in [
        ("POST", "/logs", "bad method\n"),
        ("GET", "/logs?startseg=-1", "bad startseg\n"),
        ("GET", "/logs?waitsizenot=x", "bad waitsizenot\n"),
        ("GET", "/logs?waitsizenot=-5", "bad waitsizenot\n"),
        // Values are form-decoded first, as Go's FormValue does: "+" is a
        // space, which no number starts with.
        ("GET", "/logs?waitsizenot=+5", "bad waitsizenot\n"),
        ("GET", "/logs?startseg=%2D1", "bad startseg\n"),
        ("GET", "/logs/x", "bad path\n"),
        ("GET", "/logs/", "bad path\n"),
        ("GET", "/logs/9999", "bad segment number\n"),
        ("DELETE", "/logs/0", "bad method\n"),
    ] {
        let r = http(addr, method, path, &[]);
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(String::from_utf8_lossy(&r.body), text, "{method} {path}");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/plain; charset=utf-8"),
            "{method} {path}"
        );
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    }

    // Segments: whole, ranged (206), HEAD, unsatisfiable (416).
    for seg in &segs {
        let on_disk = std::fs::read(dir.path().join(seg.file_name()))
            .unwrap_or_else(|_| std::fs::read(&seg.path).expect("segment"));
        let path = format!("/logs/{}", seg.number);
        let r = http(addr, "GET", &path, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        assert_eq!(r.body, on_disk[..seg.len as usize]);
        let r = http(addr, "GET", &path, &[("Range", "bytes=100-")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.body, on_disk[100..seg.len as usize]);
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes 100-{}/{}", seg.len - 1, seg.len).as_str())
        );
        let r = http(addr, "HEAD", &path, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Content-Length"),
            Some(seg.len.to_string().as_str())
        );
        assert!(r.body.is_empty());
        let r = http(
            addr,
            "GET",
            &path,
            &[("Range", &format!("bytes={}-", seg.len))],
        );
        assert_eq!(r.status, 416);
        assert_eq!(r.text(), "invalid range: failed to overlap\n");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes */{}", seg.len).as_str())
        );
        let r = http(addr, "GET", &path, &[("Range", "bytes=5-4")]);
        assert_eq!((r.status, r.text()), (416, "invalid range\n".to_owned()));
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn long_poll_wakes_on_append_and_times_out_with_304() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let mut cfg = config(dir.path());
    cfg.long_poll = Duration::from_millis(300);
    let server = start(&rt, cfg);
    let addr = server.addr();
    rt.block_on(server.log().append(sample_records(2, 3)))
        .expect("append");
    let size = server.log().end().0;

    // Nothing changes: 304 with no body after the long-poll limit.
    let r = http(addr, "GET", &format!("/logs?waitsizenot={size}"), &[]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());

    // A size that differs answers at once.
    let r = http(addr, "GET", "/logs?waitsizenot=0", &[]);
    assert_eq!(r.status, 200);
    rt.block_on(server.shutdown()).expect("shutdown");

    // With Go's 55 s limit, a waiting poll is answered by the append.
    let server = start(&rt, config(dir.path()));
    let addr = server.addr();
    let waiter =
        std::thread::spawn(move || http(addr, "GET", &format!("/logs?waitsizenot={size}"), &[]));
    // Append once the poll is parked (the gauge says so), not after a sleep.
    let metrics_wait = std::time::Instant::now();
    loop {
        let m = http(addr, "GET", "/metrics", &[]);
        if String::from_utf8_lossy(&m.body).contains("almanac_logs_long_polls_waiting 1") {
            break;
        }
        assert!(
            metrics_wait.elapsed() < Duration::from_secs(60),
            "poll never parked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.block_on(server.log().append(sample_records(3, 1)))
        .expect("append");
    let r = waiter.join().expect("waiter");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("X-Sum-Segment-Size"),
        Some(server.log().end().0.to_string().as_str())
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn go_netsource_client_mirrors_downloads_only_new_bytes_and_works_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let rt = runtime();
    let server = start(&rt, config(dir.path()));
    let addr = server.addr();
    rt.block_on(server.log().append(sample_records(4, 200)))
        .expect("append");
    let url = format!("http://{addr}/logs");

    // godata's Get: a corpus over the network equals one folded from the
    // server's own directory.
    let served = |m: &str| -> u64 {
        let body = http(addr, "GET", "/metrics", &[]).body;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(m).map(|v| v.trim().parse().expect("number")))
            .expect("metric")
    };
    let cache_path = cache.path().join("golang-maintner");
    let url2 = url.clone();
    let cp = cache_path.clone();
    let mut corpus = std::thread::spawn(move || Corpus::open_network(&url2, &cp))
        .join()
        .expect("thread")
        .expect("open_network");
    let local = Corpus::open(dir.path()).expect("open local");
    assert_eq!(corpus.position(), local.position());
    assert_eq!(corpus.dump(), local.dump());
    // The cache holds the server's segments byte for byte, named alike.
    assert_eq!(segment_files(&cache_path), segment_files(dir.path()));
    let first_download = served("almanac_logs_bytes_served_total");
    assert_eq!(first_download, server.log().end().0);

    // Update: only the appended bytes travel.
    let before = server.log().end().0;
    rt.block_on(server.log().append(sample_records(5, 40)))
        .expect("append");
    let after = server.log().end().0;
    let folded = std::thread::scope(|s| s.spawn(|| corpus.update()).join().expect("thread"))
        .expect("update");
    assert_eq!(folded, 40);
    let downloaded = served("almanac_logs_bytes_served_total") - first_download;
    assert_eq!(downloaded, after - before, "only the new bytes are fetched");
    assert_eq!(segment_files(&cache_path), segment_files(dir.path()));
    let local = Corpus::open(dir.path()).expect("open local");
    assert_eq!(corpus.dump(), local.dump());
    rt.block_on(server.shutdown()).expect("shutdown");

    // Offline: the server is gone; the cache alone loads.
    let cp = cache_path.clone();
    let offline = std::thread::spawn(move || Corpus::open_network(&url, &cp))
        .join()
        .expect("thread")
        .expect("offline open");
    assert_eq!(offline.position(), local.position());
}

/// `Corpus::open_network` with default options, on a thread of its own
/// (it runs its own runtime, which cannot start inside the test's).
fn open_network(url: &str, cache: &Path) -> Corpus {
    let (url, cache) = (url.to_owned(), cache.to_owned());
    std::thread::spawn(move || {
        Corpus::open_network_with(&url, &cache, NetOptions::default(), LoadOptions::default())
    })
    .join()
    .expect("thread")
    .expect("open")
}

#[test]
fn a_split_history_is_detected_and_reloaded() {
    let first = tempfile::tempdir().expect("first");
    let cache = tempfile::tempdir().expect("cache");
    let rt = runtime();
    let server = start(&rt, config(first.path()));
    rt.block_on(server.log().append(sample_records(6, 150)))
        .expect("append");
    let sealed: Vec<_> = server.log().table().sealed().iter().cloned().collect();
    let url = format!("http://{}/logs", server.addr());
    let mut corpus = open_network(&url, cache.path());
    let addr = server.addr();
    rt.block_on(server.shutdown()).expect("shutdown");

    // The "restarted leader": the same sealed segments, a different tail.
    let second = tempfile::tempdir().expect("second");
    for seg in &sealed {
        std::fs::copy(&seg.path, second.path().join(seg.file_name())).expect("copy");
    }
    let mut cfg = config(second.path());
    cfg.listen = addr;
    let server = start(&rt, cfg);
    rt.block_on(server.log().append(sample_records(7, 60)))
        .expect("append");

    check_reloaded_after_split(&mut corpus, second.path(), cache.path());
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// A server back with another history altogether (different sealed
/// segments, and fewer of them): the reloaded corpus is the new history
/// alone, the cache holds exactly its segments, and the old sealed segments
/// are set aside, neither folded nor lost.
#[test]
fn a_split_that_rewrites_sealed_segments_reloads_the_new_history_alone() {
    let first = tempfile::tempdir().expect("first");
    let cache = tempfile::tempdir().expect("cache");
    let rt = runtime();
    let server = start(&rt, config(first.path()));
    rt.block_on(server.log().append(sample_records(6, 300)))
        .expect("append");
    let url = format!("http://{}/logs", server.addr());
    let mut corpus = open_network(&url, cache.path());
    let old_sealed: Vec<(String, Vec<u8>)> = segment_files(cache.path())
        .into_iter()
        .filter(|(name, _)| !name.contains("growing"))
        .collect();
    assert!(
        old_sealed.len() >= 3,
        "{} sealed segments",
        old_sealed.len()
    );
    let addr = server.addr();
    rt.block_on(server.shutdown()).expect("shutdown");

    let second = tempfile::tempdir().expect("second");
    let mut cfg = config(second.path());
    cfg.listen = addr;
    let server = start(&rt, cfg);
    rt.block_on(server.log().append(sample_records(9, 80)))
        .expect("append");
    assert!(server.log().table().segments().count() < old_sealed.len());

    check_reloaded_after_split(&mut corpus, second.path(), cache.path());
    let aside: Vec<std::path::PathBuf> = std::fs::read_dir(cache.path())
        .expect("read cache")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("split-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = segment_files(&aside[0]);
    for old in &old_sealed {
        assert!(kept.contains(old), "{} was not set aside", old.0);
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn grpc_subscribe_append_head_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = start(&rt, config(dir.path()));
    let addr = server.addr().to_string();
    rt.block_on(async {
        let records = sample_records(8, 120);
        let mut client = LogClient::connect(&addr).await.expect("connect");

        // A live subscriber from 0 before anything exists.
        let mut live = client.subscribe(0).await.expect("subscribe");

        // Append with the token: positions once durable.
        let mut writer = LogClient::connect(&addr)
            .await
            .expect("connect")
            .with_token(TOKEN);
        let mut positions = Vec::new();
        for chunk in records.chunks(10) {
            positions.extend(writer.append(chunk.to_vec()).await.expect("append"));
        }
        let head = client.head().await.expect("head");
        assert_eq!(head.end_position, server.log().end().0);
        assert!(head.segments.len() >= 2);
        assert!(
            head.segments
                .iter()
                .filter(|s| s.sealed)
                .all(|s| s.sha224.len() == 56)
        );

        // The live stream saw every record once, in order, with positions.
        let mut expect_pos = 0;
        for (i, want) in records.iter().enumerate() {
            let rec = live.message().await.expect("stream").expect("record");
            assert_eq!(rec.position, positions[i]);
            assert_eq!(rec.position, expect_pos);
            assert_eq!(&rec.mutation, want);
            expect_pos = record_end(&rec);
        }

        // A catch-up subscriber from the middle gets exactly the rest.
        let mut mid = client
            .subscribe(positions[50])
            .await
            .expect("subscribe mid");
        for want in &records[50..] {
            let rec = mid.message().await.expect("stream").expect("record");
            assert_eq!(&rec.mutation, want);
        }

        // Positions inside a record, or past the end: OUT_OF_RANGE naming
        // the valid ones.
        let status = client
            .subscribe(positions[3] + 1)
            .await
            .expect_err("inside a record");
        let almanac_log_client::ClientError::Status(status) = status else {
            panic!("want a status")
        };
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert!(
            status.message().contains(&positions[3].to_string()),
            "{status}"
        );
        assert!(
            status.message().contains(&positions[4].to_string()),
            "{status}"
        );
        let almanac_log_client::ClientError::Status(status) = client
            .subscribe(head.end_position + 10)
            .await
            .expect_err("past the end")
        else {
            panic!("want a status")
        };
        assert_eq!(status.code(), tonic::Code::OutOfRange);

        // Refusals write nothing.
        let end = server.log().end();
        let mut anonymous = LogClient::connect(&addr).await.expect("connect");
        let refused = [
            (
                anonymous.append(vec![records[0].clone()]).await,
                tonic::Code::Unauthenticated,
            ),
            (
                LogClient::connect(&addr)
                    .await
                    .expect("connect")
                    .with_token("wrong")
                    .append(vec![records[0].clone()])
                    .await,
                tonic::Code::Unauthenticated,
            ),
            (
                writer
                    .append(vec![
                        records[0].clone(),
                        Bytes::from_static(b"\xff\xff\xff"),
                    ])
                    .await,
                tonic::Code::InvalidArgument,
            ),
            (
                writer
                    .append(vec![Bytes::from(vec![0u8; (1 << 20) + 1])])
                    .await,
                tonic::Code::InvalidArgument,
            ),
        ];
        for (i, (result, code)) in refused.into_iter().enumerate() {
            match result {
                Err(almanac_log_client::ClientError::Status(s)) => {
                    assert_eq!(s.code(), code, "refusal {i}: {s}");
                }
                other => panic!("refusal {i}: {other:?}"),
            }
        }
        assert_eq!(server.log().end(), end, "a refused append wrote something");
    });
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_stalled_subscriber_blocks_neither_appends_nor_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let server = start(&rt, config(dir.path()));
    let addr = server.addr().to_string();
    rt.block_on(async {
        let mut stalled_client = LogClient::connect(&addr).await.expect("connect");
        // Subscribed and never read again.
        let _stalled = stalled_client.subscribe(0).await.expect("subscribe");
        let mut sub = Subscription::new(&addr, 0);
        let mut writer = LogClient::connect(&addr)
            .await
            .expect("connect")
            .with_token(TOKEN);
        // Far more than the stalled stream's queue and HTTP/2 window.
        let big = Bytes::from(
            almanac_proto::pb::maintpb::Mutation {
                github_issue: Some(almanac_proto::pb::maintpb::GithubIssueMutation {
                    owner: "o".into(),
                    repo: "r".into(),
                    number: 1,
                    body: "x".repeat(64 << 10),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let n = 400usize;
        for _ in 0..n / 20 {
            writer.append(vec![big.clone(); 20]).await.expect("append");
        }
        for _ in 0..n {
            let rec = tokio::time::timeout(Duration::from_secs(60), sub.next())
                .await
                .expect("the healthy subscriber keeps up")
                .expect("record");
            assert_eq!(rec.mutation, big);
        }
    });
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn health_reflection_and_the_maintner_api_answer_stock_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let mut server = start(&rt, config(dir.path()));
    rt.block_on(server.corpus_ready());
    let url = format!("http://{}", server.addr());
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "almanac.log.v1.LogService", "apipb.MaintnerService"] {
            let resp = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .expect("health");
            assert_eq!(
                resp.into_inner().status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service:?}"
            );
        }

        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .expect("reflection")
            .into_inner();
        let resp = stream.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("want a service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in ["almanac.log.v1.LogService", "apipb.MaintnerService"] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        // What a stock tool asks next: the file defining a service, to
        // build its requests.
        for symbol in ["almanac.log.v1.LogService", "apipb.MaintnerService"] {
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(symbol.to_owned())),
            };
            let mut stream = reflection
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await
                .expect("reflection")
                .into_inner();
            let resp = stream.next().await.expect("a response").expect("ok");
            let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
                panic!("want the file defining {symbol}")
            };
            let defines = files.file_descriptor_proto.iter().any(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice()).is_ok_and(|f| {
                    let service = symbol.rsplit('.').next().unwrap_or_default();
                    f.service.iter().any(|s| s.name() == service)
                })
            });
            assert!(defines, "no descriptor defines {symbol}");
        }

        // Go's error texts from the maintner API.
        use almanac_proto::pb::apipb;
        let mut api = apipb::maintner_service_client::MaintnerServiceClient::new(channel.clone());
        let err = api
            .has_ancestor(apipb::HasAncestorRequest {
                commit: "abc".into(),
                ancestor: "0".repeat(40),
            })
            .await
            .expect_err("short commit");
        assert_eq!(err.message(), "invalid Commit");
        let resp = api
            .has_ancestor(apipb::HasAncestorRequest {
                commit: "1".repeat(40),
                ancestor: "0".repeat(40),
            })
            .await
            .expect("unknown commit is an answer")
            .into_inner();
        assert!(resp.unknown_commit);
        let err = api
            .list_go_releases(apipb::ListGoReleasesRequest {})
            .await
            .expect_err("no releases in an empty corpus");
        assert_eq!(
            err.message(),
            "there was a problem finding supported Go releases"
        );
    });
    rt.block_on(server.shutdown()).expect("shutdown");
}

fn tls_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

#[test]
fn over_tls_logs_grpc_and_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let rt = runtime();
    let mut cfg = config(dir.path());
    cfg.tls = Some(almanac_services::maintnerd::TlsFiles {
        cert: tls_data("server.pem"),
        key: tls_data("server.key"),
    });
    let server = start(&rt, cfg);
    rt.block_on(server.log().append(sample_records(9, 120)))
        .expect("append");
    let port = server.addr().port();
    let url = format!("https://127.0.0.1:{port}/logs");
    let ca = tls_data("ca.pem");

    // /logs over TLS, trusting the test CA.
    let (u, c, a) = (url.clone(), cache.path().to_owned(), ca.clone());
    let corpus = std::thread::spawn(move || {
        Corpus::open_network_with(
            &u,
            &c,
            NetOptions {
                ca_file: Some(a),
                ..NetOptions::default()
            },
            LoadOptions::default(),
        )
    })
    .join()
    .expect("thread")
    .expect("open over https");
    let local = Corpus::open(dir.path()).expect("open local");
    assert_eq!(corpus.dump(), local.dump());

    // Certificates are verified: without the CA the server is refused.
    let other = tempfile::tempdir().expect("other cache");
    let (u, c) = (url.clone(), other.path().to_owned());
    let err = std::thread::spawn(move || Corpus::open_network(&u, &c))
        .join()
        .expect("thread")
        .expect_err("an unknown issuer is refused");
    // The message names the cause, and it is not retried (no backoff).
    assert!(err.to_string().contains("certificate"), "{err}");

    // gRPC over TLS on the same port.
    rt.block_on(async {
        let addr = format!("https://localhost:{port}");
        let mut client = LogClient::connect_with(&addr, Some(&ca))
            .await
            .expect("connect over TLS");
        let head = client.head().await.expect("head");
        assert_eq!(head.end_position, server.log().end().0);
        let mut stream = client.subscribe(0).await.expect("subscribe");
        let first = stream.message().await.expect("stream").expect("record");
        assert_eq!(first.position, 0);
        assert!(
            LogClient::connect_with(&addr, None).await.is_err()
                || LogClient::connect_with(&addr, None)
                    .await
                    .expect("lazy connect")
                    .head()
                    .await
                    .is_err(),
            "gRPC without the CA must fail"
        );
    });
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_cache_go_filled_from_this_server_loads_and_is_tidied_by_a_sync() {
    // Go's netsource keeps every segment from a non-Google server as
    // NNNN.growing.mutlog; such a cache must load, and our client's next
    // sync gives the complete ones their sealed names.
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let rt = runtime();
    let server = start(&rt, config(dir.path()));
    rt.block_on(server.log().append(sample_records(10, 150)))
        .expect("append");
    let table = server.log().table();
    assert!(table.sealed().len() >= 2);
    for seg in table.segments() {
        let bytes = std::fs::read(&seg.path).expect("segment");
        let name = format!("{:04}.growing.mutlog", seg.number);
        std::fs::write(cache.path().join(name), &bytes[..seg.len as usize]).expect("write");
    }
    let from_go_cache = Corpus::open(cache.path()).expect("a Go-filled cache loads");
    let truth = Corpus::open(dir.path()).expect("open");
    assert_eq!(from_go_cache.dump(), truth.dump());

    let url = format!("http://{}/logs", server.addr());
    let c = cache.path().to_owned();
    let synced = std::thread::spawn(move || Corpus::open_network(&url, &c))
        .join()
        .expect("thread")
        .expect("open_network");
    assert_eq!(synced.dump(), truth.dump());
    assert_eq!(segment_files(cache.path()), segment_files(dir.path()));
    rt.block_on(server.shutdown()).expect("shutdown");
}

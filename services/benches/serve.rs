//! Serving the log: append-to-delivery latency over gRPC with 1, 100 and
//! 1,000 subscribers; catch-up throughput of a new gRPC subscriber and of
//! the `/logs` download path; maintnerd's memory with 1,000 idle
//! subscribers.
//!
//! Run: `cargo bench -p almanac-services --bench serve`
//!
//! maintnerd runs as its own process (`almanac maintnerd --no-corpus`) on
//! 127.0.0.1; the clients run here. Both share this machine's two cores.
//! - Latency: an appender sends one record per `Append` at a steady rate
//!   (`ALMANAC_SERVE_RATE`, default 100/s, `ALMANAC_SERVE_RECORDS` records,
//!   default 1,000, per subscriber count); the appender notes when it sent
//!   the record at each position, and every subscriber notes each
//!   `LogRecord`'s position and arrival time (decoding the gRPC message,
//!   not the mutation inside it); the latencies are worked out after the
//!   run, so no measuring work sits on the cores during the fan-out. The
//!   figure is client-side send → delivery, so it includes the fsync
//!   before the record is visible.
//! - Catch-up: the log is `target/bench-data/go-1` (the `go` profile, made
//!   by the corpus_load bench or `almanac gen-history --profile go --seed 1
//!   --out target/bench-data/go-1`); a subscriber from position 0 to the
//!   end, and the same bytes fetched over `/logs/N`: raw, and through the
//!   netsource client into a fresh cache directory (SHA-224 checked,
//!   written to disk). `ALMANAC_SERVE_PARTS` picks parts
//!   (`latency,catchup,memory`); `ALMANAC_SERVE_BIN` names another `almanac`
//!   binary to run as maintnerd, to compare two builds with the same
//!   clients; `ALMANAC_SERVE_ROWS=100x100` runs only the latency rows named
//!   (subscribers x connections); `ALMANAC_SERVE_CLIENT_WORKERS` sets the
//!   clients' tokio workers (default 2). The latency part also prints the
//!   CPU each delivery cost the server and the clients (from `/proc`), and,
//!   before each row, the same fan-out over raw TCP sockets with nothing of
//!   ours in it (the floor this machine sets in that minute) and, up to
//!   100 subscribers, from a bare h2 server to the same tonic clients (what
//!   the stack above HTTP/2 costs).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use almanac_log_client::grpc::LogClient;
use almanac_log_client::{NetOptions, NetSource};
use almanac_proto::pb::maintpb::{GithubIssueCommentMutation, GithubIssueMutation, Mutation};

const TOKEN: &str = "bench-token";

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Daemon {
    /// Stops maintnerd as an operator would (SIGTERM, a graceful shutdown),
    /// so a profiler wrapped around it (`ALMANAC_SERVE_BIN`) writes its
    /// output; SIGKILL after 60 s.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, scratch: &Path) -> Daemon {
    let token = scratch.join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let addr_file = scratch.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    // `ALMANAC_SERVE_BIN` runs another build's maintnerd against the same
    // clients, to compare two builds run by run.
    let bin = std::env::var_os("ALMANAC_SERVE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_almanac")),
        PathBuf::from,
    );
    let child = std::process::Command::new(bin)
        .env("ALMANAC_LOG", "warn")
        .args(["maintnerd", "--no-corpus", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(data)
        .arg("--token-file")
        .arg(&token)
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn maintnerd");
    let mut daemon = Daemon {
        child,
        addr: "127.0.0.1:0".parse().expect("addr"),
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(addr) = text.trim().parse()
        {
            daemon.addr = addr;
            return daemon;
        }
        assert!(Instant::now() < deadline, "maintnerd never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here;
    // the kernel counts in 100ths of a second (USER_HZ).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn metric(addr: SocketAddr, name: &str) -> i64 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1)
}

fn wait_for_subscribers(addr: SocketAddr, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(addr, "almanac_subscribers") < n {
        assert!(Instant::now() < deadline, "subscribers never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stamped(seq: u64, nanos: u64) -> Bytes {
    Bytes::from(
        Mutation {
            github_issue: Some(GithubIssueMutation {
                owner: "bench".into(),
                repo: "latency".into(),
                number: 1,
                comment: vec![GithubIssueCommentMutation {
                    id: seq as i64 + 1,
                    body: nanos.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// One record as a subscriber saw it arrive.
struct Arrival {
    position: u64,
    /// Nanoseconds since the run's base instant.
    at: u64,
    /// The wall clock at arrival, against the server's `append_time`.
    wall: std::time::SystemTime,
    durable: Option<prost_types::Timestamp>,
}

impl Arrival {
    /// `record`, arrived now.
    fn now(record: &almanac_proto::pb::log::LogRecord, base: Instant) -> Arrival {
        Arrival {
            position: record.position,
            at: base.elapsed().as_nanos() as u64,
            wall: std::time::SystemTime::now(),
            durable: record.append_time,
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e6
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The same fan-out with nothing of ours in it: one thread writes a
/// 75-byte message (the size of a live `LogRecord` frame here) to each of
/// `subscribers` loopback TCP connections at the bench's pace, and two
/// reader threads read them in the order they were written. No HTTP/2, no
/// async runtime, no log: what the kernel and this machine's scheduler
/// alone cost one burst, measured in the same minute as the server, so a
/// busy host shows in both figures rather than passing for the server's.
///
/// With `durable_file`, each burst first writes a 200-byte record to that
/// file and waits for `fdatasync`, and its latency counts from before the
/// write: the least any server costs that acknowledges only durable data
/// and then tells each subscriber on its own connection.
fn kernel_fanout(
    subscribers: usize,
    rate: u64,
    rounds: u64,
    durable_file: Option<&Path>,
) -> Vec<u64> {
    use std::net::{TcpListener, TcpStream};
    const FRAME: usize = 75;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut writers = Vec::with_capacity(subscribers);
    let mut readers: [Vec<TcpStream>; 2] = [Vec::new(), Vec::new()];
    for i in 0..subscribers {
        let reader = TcpStream::connect(addr).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        writer.set_nodelay(true).expect("TCP_NODELAY");
        writers.push(writer);
        readers[i % 2].push(reader);
    }
    let base = Instant::now();
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut sockets| {
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(sockets.len() * rounds as usize);
                let mut frame = [0u8; FRAME];
                for _ in 0..rounds {
                    for socket in &mut sockets {
                        socket.read_exact(&mut frame).expect("read");
                        let now = base.elapsed().as_nanos() as u64;
                        let mut sent = [0u8; 8];
                        sent.copy_from_slice(&frame[..8]);
                        lat.push(now.saturating_sub(u64::from_le_bytes(sent)));
                    }
                }
                lat
            })
        })
        .collect();
    let mut disk = durable_file.map(|path| std::fs::File::create(path).expect("probe file"));
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now() + period;
    let mut frame = [b'x'; FRAME];
    for _ in 0..rounds {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let now = base.elapsed().as_nanos() as u64;
        if let Some(file) = &mut disk {
            file.write_all(&[b'x'; 200]).expect("write");
            file.sync_data().expect("fdatasync");
        }
        frame[..8].copy_from_slice(&now.to_le_bytes());
        for writer in &mut writers {
            writer.write_all(&frame).expect("write");
        }
    }
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().expect("reader thread"));
    }
    if let Some(path) = durable_file {
        let _ = std::fs::remove_file(path);
    }
    all.sort_unstable();
    all
}

/// A subscriber: notes each `LogRecord`'s position and arrival until it
/// has `records` (or the stream ends). The latencies are worked out after
/// the run, so the subscriber's own bookkeeping stays off the cores the
/// fan-out uses.
async fn note_arrivals(
    mut stream: tonic::Streaming<almanac_proto::pb::log::LogRecord>,
    records: usize,
    base: Instant,
) -> Vec<Arrival> {
    let mut arrivals = Vec::with_capacity(records);
    while arrivals.len() < records {
        let Ok(Some(rec)) = stream.message().await else {
            break;
        };
        arrivals.push(Arrival::now(&rec, base));
    }
    arrivals
}

/// A subscriber on the h2 crate alone (no hyper, no tonic): one request,
/// then each gRPC frame of the answer decoded as a `LogRecord` and noted
/// like [`note_arrivals`]. Returns once subscribed; the future it returns
/// reads.
async fn bare_h2_subscriber(
    addr: SocketAddr,
    records: usize,
    base: Instant,
) -> impl std::future::Future<Output = Vec<Arrival>> {
    use almanac_proto::pb::log::LogRecord;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/almanac.log.v1.LogService/Subscribe"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(request, true).expect("send");
    let mut body = answer.await.expect("answer").into_body();
    async move {
        let _client = client;
        let mut arrivals = Vec::with_capacity(records);
        let mut pending = bytes::BytesMut::new();
        while arrivals.len() < records {
            let Some(Ok(chunk)) = body.data().await else {
                break;
            };
            let _ = body.flow_control().release_capacity(chunk.len());
            pending.extend_from_slice(&chunk);
            while pending.len() >= 5 {
                let len =
                    u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
                if pending.len() < 5 + len {
                    break;
                }
                let frame = pending.split_to(5 + len);
                let rec = LogRecord::decode(&frame[5..]).expect("LogRecord");
                arrivals.push(Arrival::now(&rec, base));
            }
        }
        arrivals
    }
}

/// The same fan-out from a bare HTTP/2 server: the h2 crate alone (no
/// hyper, tonic, axum or log), one task per stream taking each record's
/// gRPC frame, encoded once, from a broadcast channel. The clients are the
/// bench's own tonic subscribers, so the difference from maintnerd's row
/// is what the serving stack above HTTP/2 costs. Returns the latencies
/// (send → arrival) and the CPU per delivery, server and clients together
/// (both run in this process).
fn bare_h2_fanout(
    rt: &tokio::runtime::Runtime,
    subscribers: usize,
    rate: u64,
    rounds: u64,
    bare_clients: bool,
) -> (Vec<u64>, f64) {
    use almanac_proto::pb::log::LogRecord;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let (frames, _) = tokio::sync::broadcast::channel::<Bytes>(1024);
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let streams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let frames = frames.clone();
        let streams = streams.clone();
        server_rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let frames = frames.clone();
                let streams = streams.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = conn.accept().await {
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(response, false) else {
                            continue;
                        };
                        let mut rx = frames.subscribe();
                        streams.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::spawn(async move {
                            while let Ok(frame) = rx.recv().await {
                                if send.send_data(frame, false).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                });
            }
        });
    }
    let base = Instant::now();
    let tasks: Vec<_> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..subscribers {
            if bare_clients {
                tasks.push(tokio::spawn(
                    bare_h2_subscriber(addr, rounds as usize, base).await,
                ));
                continue;
            }
            let mut client = LogClient::connect(&addr.to_string())
                .await
                .expect("connect");
            let stream = client.subscribe(0).await.expect("subscribe");
            tasks.push(tokio::spawn(note_arrivals(stream, rounds as usize, base)));
        }
        tasks
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    while streams.load(std::sync::atomic::Ordering::SeqCst) < subscribers {
        assert!(Instant::now() < deadline, "subscribers never joined");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu_before = cpu_time("self");
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now() + period;
    let mut sent = Vec::with_capacity(rounds as usize);
    for seq in 0..rounds {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let now = base.elapsed().as_nanos() as u64;
        let record = LogRecord {
            position: seq,
            mutation: stamped(seq, now),
            segment: 0,
            offset: seq,
            append_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        }
        .encode_to_vec();
        let mut frame = Vec::with_capacity(5 + record.len());
        frame.push(0);
        frame.extend_from_slice(&(record.len() as u32).to_be_bytes());
        frame.extend_from_slice(&record);
        sent.push(now);
        let _ = frames.send(Bytes::from(frame));
    }
    let mut latencies = Vec::new();
    rt.block_on(async {
        for t in tasks {
            for arrival in t.await.expect("subscriber") {
                let sent_at = sent[arrival.position as usize];
                latencies.push(arrival.at.saturating_sub(sent_at));
            }
        }
    });
    let cpu = cpu_time("self").saturating_sub(cpu_before).as_secs_f64() * 1e6
        / latencies.len().max(1) as f64;
    assert_eq!(
        latencies.len() as u64,
        rounds * subscribers as u64,
        "lost deliveries"
    );
    drop(frames);
    server_rt.shutdown_timeout(Duration::from_secs(5));
    latencies.sort_unstable();
    (latencies, cpu)
}

fn latency(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let rate = env_u64("ALMANAC_SERVE_RATE", 100).max(1);
    let records = env_u64("ALMANAC_SERVE_RECORDS", 1000).max(1);
    println!("== append-to-delivery latency ({records} records at {rate}/s, one per Append)");
    // What the disk alone costs at this pace: write + fdatasync, spaced as
    // the appends are.
    {
        use std::io::Write as _;
        let path = scratch.join("fsync-probe");
        let mut f = std::fs::File::create(&path).expect("probe file");
        let mut lat = Vec::new();
        for _ in 0..records.min(300) {
            let t = Instant::now();
            f.write_all(&[b'x'; 200]).expect("write");
            f.sync_data().expect("fdatasync");
            lat.push(t.elapsed().as_nanos() as u64);
            std::thread::sleep(Duration::from_secs_f64(1.0 / rate as f64));
        }
        lat.sort_unstable();
        println!(
            "  the disk alone (200-byte write + fdatasync at this pace): p50 {:.2} ms, p99 {:.2} ms",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        let _ = std::fs::remove_file(&path);
    }
    // The log's own append path at this pace, in process, no network.
    {
        let dir = scratch.join("inproc");
        let (log, _) = almanac_log::Log::open(&dir, almanac_log::Options::default()).expect("open");
        let mut lat: Vec<u64> = rt.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut lat = Vec::new();
            for seq in 0..records.min(300) {
                tick.tick().await;
                let t = Instant::now();
                log.append(vec![stamped(seq, 0)]).await.expect("append");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        });
        lat.sort_unstable();
        println!(
            "  Log::append in process at this pace: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        log.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
    // (subscribers, HTTP/2 connections they share): one connection each, as
    // separate programs would; then 100 multiplexed over 10 connections, as
    // a gateway would.
    // `ALMANAC_SERVE_ROWS=100x100,1x1` runs only those rows.
    let rows = std::env::var("ALMANAC_SERVE_ROWS").unwrap_or_default();
    let wanted = |subscribers: usize, connections: usize| {
        rows.is_empty()
            || rows
                .split(',')
                .any(|r| r.trim() == format!("{subscribers}x{connections}"))
    };
    for (subscribers, connections) in [(1usize, 1usize), (100, 100), (1000, 1000), (100, 10)] {
        if !wanted(subscribers, connections) {
            continue;
        }
        if subscribers == connections {
            let probe = scratch.join("fanout-fsync-probe");
            for (durable_file, what) in [
                (None, "the kernel alone"),
                (Some(probe.as_path()), "after write + fdatasync"),
            ] {
                let cpu_before = cpu_time("self");
                let floor = kernel_fanout(subscribers, rate, records.min(500), durable_file);
                let cpu = cpu_time("self").saturating_sub(cpu_before).as_secs_f64() * 1e6
                    / floor.len().max(1) as f64;
                println!(
                    "{subscribers:>5} raw TCP connections, {what} (one writer thread, two readers, no HTTP/2): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; CPU per delivery {cpu:.1} µs",
                    percentile(&floor, 0.50),
                    percentile(&floor, 0.99),
                    percentile(&floor, 0.999),
                );
            }
        }
        if subscribers == connections && subscribers <= 100 {
            for (bare_clients, clients) in [(false, "tonic"), (true, "bare h2")] {
                let (bare, cpu) =
                    bare_h2_fanout(rt, subscribers, rate, records.min(500), bare_clients);
                println!(
                    "{subscribers:>5} {clients} subscribers of a bare h2 server (no hyper, tonic or log; each frame encoded once): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; CPU per delivery {cpu:.1} µs",
                    percentile(&bare, 0.50),
                    percentile(&bare, 0.99),
                    percentile(&bare, 0.999),
                );
            }
        }
        let data = scratch.join(format!("latency-{subscribers}-{connections}"));
        let daemon = start(&data, scratch);
        let addr = daemon.addr;
        let server_pid = daemon.child.id().to_string();
        let base = Instant::now();
        let (latencies, mut acks, mut fanout, cpu): (Vec<u64>, Vec<u64>, Vec<u64>, (f64, f64)) =
            rt.block_on(async {
                let mut tasks = Vec::new();
                let mut clients = Vec::new();
                for _ in 0..connections {
                    clients.push(
                        LogClient::connect(&addr.to_string())
                            .await
                            .expect("connect"),
                    );
                }
                for i in 0..subscribers {
                    let mut client = clients[i % connections].clone();
                    let stream = client.subscribe(0).await.expect("subscribe");
                    tasks.push(tokio::spawn(note_arrivals(stream, records as usize, base)));
                }
                let waiting = tokio::task::spawn_blocking(move || {
                    wait_for_subscribers(addr, subscribers as i64);
                });
                waiting.await.expect("wait");
                let mut writer = LogClient::connect(&addr.to_string())
                    .await
                    .expect("connect")
                    .with_token(TOKEN);
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                if subscribers == 1 {
                // A round trip with no disk in it, at the same pace.
                let mut heads = Vec::new();
                let mut probe = LogClient::connect(&addr.to_string()).await.expect("connect");
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                for _ in 0..records.min(300) {
                    tick.tick().await;
                    let t = Instant::now();
                    probe.head().await.expect("head");
                    heads.push(t.elapsed().as_nanos() as u64);
                }
                heads.sort_unstable();
                println!(
                    "  a gRPC Head round trip at this pace (no disk): p50 {:.2} ms, p99 {:.2} ms",
                    percentile(&heads, 0.5),
                    percentile(&heads, 0.99)
                );
            }
            let mut acks = Vec::with_capacity(records as usize);
                let mut sent = std::collections::HashMap::with_capacity(records as usize);
                let cpu_before = (cpu_time(&server_pid), cpu_time("self"));
                for seq in 0..records {
                    tick.tick().await;
                    let now = base.elapsed().as_nanos() as u64;
                    let positions = writer
                        .append(vec![stamped(seq, now)])
                        .await
                        .expect("append");
                    acks.push((base.elapsed().as_nanos() as u64).saturating_sub(now));
                    sent.insert(positions[0], now);
                }
                let mut all = Vec::new();
                let mut fanout = Vec::new();
                for t in tasks {
                    for arrival in t.await.expect("subscriber") {
                        let Some(&sent_at) = sent.get(&arrival.position) else {
                            panic!("delivered a record at {} that was never sent", arrival.position);
                        };
                        all.push(arrival.at.saturating_sub(sent_at));
                        if let Some(durable) = arrival
                            .durable
                            .and_then(|t| std::time::SystemTime::try_from(t).ok())
                        {
                            let late = arrival.wall.duration_since(durable).unwrap_or_default();
                            fanout.push(late.as_nanos() as u64);
                        }
                    }
                }
                let deliveries = (records * subscribers as u64).max(1) as f64;
                let per = |after: Duration, before: Duration| {
                    after.saturating_sub(before).as_secs_f64() * 1e6 / deliveries
                };
                let cpu = (
                    per(cpu_time(&server_pid), cpu_before.0),
                    per(cpu_time("self"), cpu_before.1),
                );
                (all, acks, fanout, cpu)
            });
        acks.sort_unstable();
        fanout.sort_unstable();
        let mut sorted = latencies;
        sorted.sort_unstable();
        println!(
            "{subscribers:>5} subscribers on {connections:>4} connections: {} deliveries, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            sorted.len(),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            percentile(&sorted, 0.999),
            percentile(&sorted, 1.0),
        );
        println!(
            "       durable -> delivered (server fan-out, from LogRecord.append_time): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} stamped)",
            percentile(&fanout, 0.50),
            percentile(&fanout, 0.99),
            percentile(&fanout, 0.999),
            fanout.len()
        );
        println!(
            "       the Append call itself (fsync included): p50 {:.2} ms, p99 {:.2} ms",
            percentile(&acks, 0.50),
            percentile(&acks, 0.99)
        );
        println!(
            "       CPU per delivery (the appends' share included): maintnerd {:.1} µs, this process's appender and clients {:.1} µs",
            cpu.0, cpu.1
        );
        assert_eq!(
            sorted.len() as u64,
            records * subscribers as u64,
            "lost deliveries"
        );
        drop(daemon);
        let _ = std::fs::remove_dir_all(&data);
    }
}

fn catch_up(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/go-1");
    if !data.is_dir() {
        println!(
            "== catch-up: skipped: {} is missing (run the corpus_load bench first)",
            data.display()
        );
        return;
    }
    let daemon = start(&data, scratch);
    let addr = daemon.addr;
    println!("== catch-up from position 0 ({})", data.display());

    // gRPC: one new subscriber reads everything.
    let (bytes, records, took) = rt.block_on(async {
        let mut client = LogClient::connect(&addr.to_string())
            .await
            .expect("connect");
        let end = client.head().await.expect("head").end_position;
        let started = Instant::now();
        let mut stream = client.subscribe(0).await.expect("subscribe");
        let (mut bytes, mut records) = (0u64, 0u64);
        while let Ok(Some(rec)) = stream.message().await {
            bytes += rec.mutation.len() as u64;
            records += 1;
            if almanac_log_client::grpc::record_end(&rec) >= end {
                break;
            }
        }
        (bytes, records, started.elapsed())
    });
    println!(
        "gRPC Subscribe: {records} records, {:.0} MB of mutations in {took:.2?}: {:.0} MB/s, {:.0} records/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );

    // /logs: every segment over HTTP, bytes counted, nothing stored.
    let (bytes, took) = rt.block_on(async {
        let index = raw_get(addr, "/logs").await;
        let segments: serde_json::Value = serde_json::from_slice(&index).expect("index");
        let n = segments.as_array().map_or(0, Vec::len);
        let started = Instant::now();
        let mut bytes = 0u64;
        for i in 0..n {
            bytes += raw_get(addr, &format!("/logs/{i}")).await.len() as u64;
        }
        (bytes, started.elapsed())
    });
    println!(
        "/logs/N download (raw HTTP, not stored): {:.0} MB in {took:.2?}: {:.0} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );

    // The netsource client: index, downloads, SHA-224, files on disk.
    let cache = scratch.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let took = rt.block_on(async {
        let mut source = NetSource::new(
            &format!("http://{addr}/logs"),
            &cache,
            NetOptions::default(),
        )
        .expect("source");
        let started = Instant::now();
        source.sync(false).await.expect("sync");
        started.elapsed()
    });
    println!(
        "/logs netsource sync into an empty cache (sha224 + write): {:.0} MB in {took:.2?}: {:.0} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&cache);
    drop(daemon);
}

async fn raw_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().expect("uri");
    let resp = client.get(uri).await.expect("get");
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            out.extend_from_slice(&data);
        }
    }
    out
}

fn memory(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let data = scratch.join("memory");
    let daemon = start(&data, scratch);
    let addr = daemon.addr;
    rt.block_on(async {
        let mut writer = LogClient::connect(&addr.to_string())
            .await
            .expect("connect")
            .with_token(TOKEN);
        writer
            .append((0..100).map(|i| stamped(i, 0)).collect())
            .await
            .expect("append");
    });
    let idle = rss_mib(daemon.child.id());
    let streams = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.block_on(async {
        for _ in 0..1000 {
            let mut client = LogClient::connect(&addr.to_string())
                .await
                .expect("connect");
            let mut stream = client.subscribe(0).await.expect("subscribe");
            // Caught up, then idle.
            for _ in 0..100 {
                stream.message().await.expect("record");
            }
            streams.lock().expect("lock").push((client, stream));
        }
    });
    wait_for_subscribers(addr, 1000);
    let with = rss_mib(daemon.child.id());
    println!(
        "== memory: maintnerd RSS {idle:.1} MiB with no subscriber, {with:.1} MiB with 1,000 idle subscribers ({:.1} KiB each, one connection each)",
        (with - idle) * 1024.0 / 1000.0
    );
    drop(streams);
    drop(daemon);
}

fn main() {
    let parts = std::env::var("ALMANAC_SERVE_PARTS")
        .unwrap_or_else(|_| "latency,catchup,memory".to_owned());
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("almanac-serve-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_u64("ALMANAC_SERVE_CLIENT_WORKERS", 2).max(1) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    for part in parts.split(',') {
        match part.trim() {
            "latency" => latency(&rt, &scratch),
            "catchup" => catch_up(&rt, &scratch),
            "memory" => memory(&rt, &scratch),
            other => println!("unknown part {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

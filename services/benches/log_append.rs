//! Durable append throughput and latency with 1, 16 and 64 concurrent
//! appenders of realistic ~300-byte mutations, against a per-append-fsync
//! baseline on the same disk.
//!
//! Run: `cargo bench -p almanac-services --bench log_append`
//! (`ALMANAC_BENCH_SECS` sets the seconds per case, default 5;
//! `ALMANAC_BENCH_DIR` the directory to write in, default the system temp).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use almanac_log::{Log, Options};
use bytes::Bytes;
use prost::Message as _;

/// The `q` quantile (0..=1) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn payloads(n: usize) -> Vec<Bytes> {
    // Comments and events from the sample history, trimmed to the ~300-byte
    // records the issue tracker produces most.
    let mut out = Vec::with_capacity(n);
    let mut history = almanac_services::sample::SampleHistory::new(99);
    while out.len() < n {
        let m = history.next_mutation();
        let bytes = m.encode_to_vec();
        if (200..=450).contains(&bytes.len()) {
            out.push(Bytes::from(bytes));
        }
    }
    out
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ALMANAC_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("tempdir"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

fn main() {
    let secs: u64 = std::env::var("ALMANAC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let records = Arc::new(payloads(10_000));
    let mean = records.iter().map(Bytes::len).sum::<usize>() / records.len();
    println!("workload: sample mutations of {mean} bytes on average; {secs} s per case");

    // Baseline: one write + fdatasync per record, one appender.
    let dir = bench_dir();
    let path = dir.path().join("baseline");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&path)
        .expect("open");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs.min(3)) {
        file.write_all(&records[n as usize % records.len()])
            .expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    let baseline = n as f64 / start.elapsed().as_secs_f64();
    println!("baseline  write+fdatasync per record: {baseline:>9.0} appends/s");

    println!(
        "{:<10} {:>12} {:>9} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "appenders", "appends/s", "MB/s", "appends/fsync", "p50", "p99", "p99.9", "vs base"
    );
    for appenders in [1usize, 16, 64] {
        let dir = bench_dir();
        let (log, _) = Log::open(dir.path(), Options::default()).expect("open");
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let threads: Vec<_> = (0..appenders)
            .map(|t| {
                let log = log.clone();
                let stop = stop.clone();
                let records = records.clone();
                std::thread::spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut bytes = 0u64;
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let rec = records[i % records.len()].clone();
                        bytes += rec.len() as u64;
                        let t0 = Instant::now();
                        log.append_blocking(vec![rec]).expect("append");
                        lat.push(t0.elapsed());
                        i += appenders;
                    }
                    (lat, bytes)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        let mut bytes = 0;
        for t in threads {
            let (l, b) = t.join().expect("appender");
            lat.extend(l);
            bytes += b;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let m = log.metrics();
        log.close();
        lat.sort_unstable();
        let rate = lat.len() as f64 / elapsed;
        println!(
            "{:<10} {:>12.0} {:>9.1} {:>14.1} {:>10.2?} {:>10.2?} {:>10.2?} {:>9.1}x",
            appenders,
            rate,
            bytes as f64 / 1e6 / elapsed,
            m.records as f64 / m.commits.max(1) as f64,
            quantile(&lat, 0.50),
            quantile(&lat, 0.99),
            quantile(&lat, 0.999),
            rate / baseline,
        );
    }
    println!("peak RSS: {:.1} MiB", common::peak_rss_mib());
}

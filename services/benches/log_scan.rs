//! Sequential scan throughput over a multi-GB log: framing only, and framing
//! plus protobuf decoding, each on one core, as a ratio to `cat` reading the
//! same files from page cache in the same run.
//!
//! Run: `cargo bench -p almanac-services --bench log_scan`
//! (`ALMANAC_SCAN_GB` sets the log size, default 2; the log is generated
//! once into `target/bench-data/scan-<GB>gb` and reused).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use almanac_log::{Log, Options, Position, Snapshot};
use almanac_proto::pb::maintpb::Mutation;
use bytes::Bytes;
use prost::Message as _;

fn data_dir(gb: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-data")
        .join(format!("scan-{gb}gb"))
}

/// Writes `gb` GiB of sample history (in large batches) unless present.
fn ensure_log(dir: &Path, gb: u64) {
    let target = gb << 30;
    if let Ok(snap) = Snapshot::open(dir)
        && snap.end().0 >= target
    {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let (log, _) = Log::open(dir, Options::default()).expect("open");
    let mut history = almanac_services::sample::SampleHistory::new(1);
    let start = Instant::now();
    while log.end().0 < target {
        let batch: Vec<Bytes> = (0..20_000)
            .map(|_| Bytes::from(history.next_mutation().encode_to_vec()))
            .collect();
        log.append_blocking(batch).expect("append");
    }
    log.close();
    println!(
        "generated {} bytes of sample history in {:.1?}",
        target,
        start.elapsed()
    );
}

fn main() {
    let gb: u64 = std::env::var("ALMANAC_SCAN_GB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dir = data_dir(gb);
    ensure_log(&dir, gb);
    let snap = Snapshot::open(&dir).expect("snapshot");
    let bytes = snap.end().0;
    let files: Vec<PathBuf> = snap.table().segments().map(|s| s.path.clone()).collect();
    println!(
        "workload: {} segments, {:.2} GiB of sample history (issues, comments, events, git and Gerrit commits, builds)",
        files.len(),
        bytes as f64 / (1u64 << 30) as f64
    );

    let cat = || {
        let start = Instant::now();
        let status = Command::new("cat")
            .args(&files)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("cat");
        assert!(status.success());
        let secs = start.elapsed().as_secs_f64();
        bytes as f64 / 1e6 / secs
    };
    cat(); // warm the page cache
    let cat_mbs = (0..3).map(|_| cat()).fold(0.0, f64::max);
    println!(
        "{:<28} {:>9.0} MB/s  (best of 3)",
        "cat (page cache)", cat_mbs
    );

    let mut best_framing: f64 = 0.0;
    let mut best_decode: f64 = 0.0;
    let mut records = 0u64;
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        for rec in snap.read_from(Position(0)).expect("reader") {
            let rec = rec.expect("record");
            n += 1;
            std::hint::black_box(&rec.payload);
        }
        best_framing = best_framing.max(bytes as f64 / 1e6 / start.elapsed().as_secs_f64());
        records = n;

        let start = Instant::now();
        for rec in snap.read_from(Position(0)).expect("reader") {
            let rec = rec.expect("record");
            let m = Mutation::decode(rec.payload).expect("decodes");
            std::hint::black_box(&m);
        }
        best_decode = best_decode.max(bytes as f64 / 1e6 / start.elapsed().as_secs_f64());
    }
    println!(
        "{:<28} {:>9.0} MB/s  ({:.0}% of cat, {:.1}M records/s)",
        "framing only (1 core)",
        best_framing,
        100.0 * best_framing / cat_mbs,
        records as f64 * best_framing / bytes as f64,
    );
    println!(
        "{:<28} {:>9.0} MB/s  ({:.0}% of cat)",
        "framing + decode (1 core)",
        best_decode,
        100.0 * best_decode / cat_mbs
    );
    println!("records: {records}, best of 3 runs each");
    println!("peak RSS: {:.1} MiB", common::peak_rss_mib());
}

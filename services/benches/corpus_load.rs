//! Loading the corpus from a Go-shaped history: wall time to a fully folded
//! corpus, MB/s and records/s, peak RSS against the log's size, saving a
//! checkpoint and opening from it.
//!
//! Run: `cargo bench -p almanac-services --bench corpus_load`
//!
//! The log is `almanac gen-history --profile go --seed 1`, generated once
//! into `target/bench-data/go-1` (about 2.9 GB, 20 s) and reused; it is read
//! from page cache (the first, warming, pass is reported separately).
//! `ALMANAC_LOAD_RUNS` sets the timed full loads (default 3).

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use almanac_log::Snapshot;
use almanac_projections::corpus::Corpus;
use almanac_services::cli::corpus::{ProfileName, gen_history};

/// The `almanac` binary's allocator, so the figures are the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data")
}

fn ensure_log(dir: &Path) {
    if Snapshot::open(dir).is_ok_and(|s| s.end().0 > 0) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    gen_history(ProfileName::Go, 1, dir, None).expect("generate the go profile");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("ALMANAC_LOAD_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = bench_dir().join("go-1");
    ensure_log(&dir);

    // Warm the page cache and take the counts once.
    let started = Instant::now();
    let corpus = Corpus::open(&dir).expect("load");
    let warm = started.elapsed();
    let bytes = corpus.position().0;
    let counts = corpus.counts();
    print!("{counts}");
    println!("warming load: {warm:.2?}");
    drop(corpus);

    let mut loads = Vec::new();
    let mut last = None;
    for run in 0..runs {
        // Drop the previous corpus first so only one is resident.
        drop(last.take());
        let started = Instant::now();
        let corpus = Corpus::open(&dir).expect("load");
        let took = started.elapsed();
        println!(
            "load {}: {took:.2?} ({:.0} MB/s)",
            run + 1,
            bytes as f64 / 1e6 / took.as_secs_f64()
        );
        loads.push(took);
        last = Some(corpus);
    }
    let Some(corpus) = last else { return };
    let peak = common::peak_rss_mib();
    let load = median(loads);
    let mem = corpus.memory_use();
    println!(
        "full load (median of {runs}): {load:.2?}: {:.0} MB/s, {:.0} records/s",
        bytes as f64 / 1e6 / load.as_secs_f64(),
        counts.mutations as f64 / load.as_secs_f64()
    );
    println!(
        "peak RSS {peak:.0} MiB = {:.2}x the log ({:.0} MiB); corpus estimate {:.0} MiB",
        peak * (1 << 20) as f64 / bytes as f64,
        bytes as f64 / (1 << 20) as f64,
        mem.total() as f64 / (1 << 20) as f64
    );

    let path = bench_dir().join("go-1.checkpoint");
    let started = Instant::now();
    corpus.save_checkpoint(&path).expect("save");
    let saved = started.elapsed();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "checkpoint save: {saved:.2?}, {:.0} MiB",
        size as f64 / (1 << 20) as f64
    );
    drop(corpus);

    let mut opens = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut reopened = Corpus::open_checkpoint(&path).expect("open checkpoint");
        let opened = started.elapsed();
        let caught_up = reopened.update().expect("update");
        let total = started.elapsed();
        assert_eq!(reopened.counts(), counts, "the checkpoint lost something");
        println!("checkpoint open: {opened:.2?}; caught up ({caught_up} records) at {total:.2?}");
        opens.push(opened);
    }
    println!("checkpoint open (median of {runs}): {:.2?}", median(opens));
}

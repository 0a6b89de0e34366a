//! Durable appends: ordering, concurrency, group commit, limits.

use std::collections::HashMap;
use std::sync::Arc;

use almanac_log::append::Error as AppendError;
use almanac_log::{Options, Position, Snapshot};
use bytes::Bytes;

use crate::support::{open, payload, read_all, segment_files, small_segments};

#[test]
fn concurrent_appenders_each_keep_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(64 << 10));
    let threads = 16u64;
    let per_thread = 150u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let p = log
                            .append_blocking(vec![payload(t * 10_000 + i)])
                            .expect("append");
                        (p[0], t * 10_000 + i)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_position: HashMap<Position, u64> = HashMap::new();
    for h in handles {
        let acked = h.join().expect("appender");
        // One appender's records are acknowledged in increasing positions.
        assert!(acked.windows(2).all(|w| w[0].0 < w[1].0));
        for (pos, id) in acked {
            assert!(
                by_position.insert(pos, id).is_none(),
                "position {pos} given twice"
            );
        }
    }
    let m = log.metrics();
    assert_eq!(m.records, threads * per_thread);
    assert_eq!(m.requests, threads * per_thread);
    let snap = log.snapshot();
    let mut n = 0;
    for rec in snap.read_from(Position(0)).expect("reader") {
        let rec = rec.expect("record");
        let id = by_position[&rec.position];
        assert_eq!(rec.payload, payload(id), "record at {}", rec.position);
        n += 1;
    }
    assert_eq!(n, threads * per_thread);
    assert_eq!(m.bytes, log.end().0);
}

#[test]
fn queued_appends_share_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    // A large first request keeps the writer busy while 200 small ones
    // queue behind it; those are committed together, not one fsync each.
    let first = log
        .submit(vec![Bytes::from(vec![7u8; 8 << 20])])
        .expect("submit");
    let tickets: Vec<_> = (0..200)
        .map(|i| log.submit(vec![payload(i)]).expect("submit"))
        .collect();
    first.wait().expect("first");
    let mut last = Position(0);
    for t in tickets {
        let pos = t.wait().expect("durable")[0];
        assert!(pos > last);
        last = pos;
    }
    let m = log.metrics();
    assert_eq!(m.requests, 201);
    assert!(
        m.commits < 50,
        "{m:?}: group commit should batch queued appends"
    );
}

#[test]
fn one_request_is_contiguous_and_ordered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    let records: Vec<Bytes> = (0..30).map(payload).collect();
    let positions = log.append_blocking(records.clone()).expect("append");
    assert_eq!(positions.len(), 30);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    log.close();
    assert_eq!(read_all(dir.path()), records);
}

#[test]
fn oversized_records_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        max_record_len: 1000,
        ..Options::default()
    };
    let log = open(dir.path(), opts);
    let err = log
        .append_blocking(vec![payload(0), Bytes::from(vec![0u8; 1001])])
        .expect_err("too large");
    assert_eq!(
        err,
        AppendError::TooLarge {
            index: 1,
            len: 1001,
            max: 1000
        }
    );
    assert_eq!(
        log.end(),
        Position(0),
        "no part of a refused request is written"
    );
    assert_eq!(log.metrics().records, 0);
}

#[test]
fn appends_after_close_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    let other = log.clone();
    log.append_blocking(vec![payload(0)]).expect("append");
    log.close();
    assert_eq!(
        other.append_blocking(vec![payload(1)]),
        Err(AppendError::Closed)
    );
}

#[test]
fn async_appends_resolve_when_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), Options::default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let positions = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..10 {
            out.extend(log.append(vec![payload(i)]).await.expect("append"));
        }
        out
    });
    assert_eq!(positions.len(), 10);
    let last = log
        .read_from(positions[9])
        .expect("reader")
        .next()
        .expect("a record")
        .expect("ok");
    assert_eq!(last.payload, payload(9));
    assert_eq!(last.end(), log.end());
}

#[test]
fn append_times_are_known_for_records_appended_since_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = almanac_log::Log::open(dir.path(), Options::default()).expect("open");
    let before = log.append_blocking(vec![payload(0)]).expect("append")[0];
    log.close();
    let (log, _) = almanac_log::Log::open(dir.path(), Options::default()).expect("reopen");
    let mut previous = std::time::SystemTime::now();
    for i in 1..5 {
        let sent = std::time::SystemTime::now();
        let pos = log
            .append_blocking(vec![payload(i), payload(i + 100)])
            .expect("append");
        let acked = std::time::SystemTime::now();
        let times: Vec<_> = pos
            .iter()
            .map(|p| log.append_time(*p).expect("appended since open: known"))
            .collect();
        assert_eq!(times[0], times[1], "one commit, one time");
        assert!(times[0] >= sent && times[0] <= acked, "the commit's time");
        assert!(times[0] >= previous);
        previous = times[0];
    }
    assert_eq!(log.append_time(before), None, "appended before this open");
    assert_eq!(log.append_time(log.end()), None, "not appended yet");
}

/// A reader whose records are held for a while by someone else (a loader
/// hands batches to another thread) reuses their chunks' memory once they
/// are dropped; every payload must still read back exactly, including
/// records larger than a chunk and records across segment seals.
#[test]
fn records_held_in_a_sliding_window_read_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(3 << 20));
    // Sizes from a few bytes to 600 KiB (more than two read chunks), each
    // payload filled with its own index so any reuse mix-up shows.
    let expected: Vec<Bytes> = (0..1_200u32)
        .map(|i| {
            let len = match i % 97 {
                0 => 600 << 10,
                n if n % 7 == 0 => 40_000 + n as usize,
                n => 100 + (n as usize * 131) % 3_000,
            };
            let mut b = vec![0u8; len];
            for (j, byte) in b.iter_mut().enumerate() {
                *byte = (i as usize * 31 + j / 7) as u8;
            }
            Bytes::from(b)
        })
        .collect();
    for batch in expected.chunks(50) {
        log.append_blocking(batch.to_vec()).expect("append");
    }
    assert!(segment_files(dir.path()).len() > 3, "crosses seals");
    let snap = Snapshot::open(dir.path()).expect("snapshot");
    let mut window = std::collections::VecDeque::new();
    let mut checked = 0;
    let mut reader = snap.read_from(Position(0)).expect("reader");
    reader.reuse_chunks(8);
    for (i, rec) in reader.enumerate() {
        window.push_back((i, rec.expect("record").payload));
        // Drop the oldest records only now and then, in bursts, so chunks
        // are sometimes still held and sometimes free when the reader
        // needs one.
        if window.len() > 400 || (i % 173 == 0 && window.len() > 40) {
            while window.len() > 20 {
                let (j, payload) = window.pop_front().expect("non-empty");
                assert_eq!(payload, expected[j], "record {j}");
                checked += 1;
            }
        }
    }
    for (j, payload) in window {
        assert_eq!(payload, expected[j], "record {j}");
        checked += 1;
    }
    assert_eq!(checked, expected.len());
}

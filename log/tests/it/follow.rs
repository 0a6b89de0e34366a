//! Followers: catch up, then wake on appends, across seals, and end on close.

use std::time::Duration;

use almanac_log::read::Error as ReadError;
use almanac_log::{Options, Position};

use crate::support::{open, payload, small_segments};

const DEADLINE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

#[test]
fn a_follower_catches_up_then_wakes_on_each_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(2048));
    for i in 0..20 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    let mut follower = log.follow(Position(0)).expect("follow");
    let writer = log.clone();
    runtime().block_on(async move {
        for i in 0..20 {
            let rec = tokio::time::timeout(DEADLINE, follower.next())
                .await
                .expect("catch-up is immediate")
                .expect("record")
                .expect("ok");
            assert_eq!(rec.payload, payload(i));
        }
        // Nothing more yet.
        assert!(follower.try_next().is_none());
        // Appends from another thread wake the follower, across seals.
        let appender = std::thread::spawn(move || {
            for i in 20..120 {
                writer.append_blocking(vec![payload(i)]).expect("append");
            }
        });
        for i in 20..120 {
            let rec = tokio::time::timeout(DEADLINE, follower.next())
                .await
                .expect("woken by the append")
                .expect("record")
                .expect("ok");
            assert_eq!(rec.payload, payload(i), "record {i}");
        }
        appender.join().expect("appender");
    });
    assert!(log.metrics().seals > 3);
}

#[test]
fn a_follower_ends_after_close_with_everything_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    let mut follower = log.follow(Position(0)).expect("follow");
    for i in 0..5 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    log.close();
    runtime().block_on(async move {
        let mut n = 0;
        while let Some(rec) = tokio::time::timeout(DEADLINE, follower.next())
            .await
            .expect("ends, does not hang")
        {
            rec.expect("ok");
            n += 1;
        }
        assert_eq!(n, 5);
    });
}

#[test]
fn following_from_a_position_checks_it_is_a_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    let mut positions = Vec::new();
    for i in 0..20 {
        positions.extend(log.append_blocking(vec![payload(i)]).expect("append"));
    }
    // From every record position, the rest of the log follows.
    for (k, &pos) in positions.iter().enumerate() {
        let reader = log.read_from(pos).expect("record position");
        let rest: Vec<_> = reader.map(|r| r.expect("ok").payload).collect();
        assert_eq!(rest.len(), 20 - k);
        assert_eq!(rest[0], payload(k as u64));
    }
    // The end is valid and empty.
    assert_eq!(log.read_from(log.end()).expect("end").count(), 0);
    // Inside a record: the error names the nearest record positions.
    let inside = Position(positions[3].0 + 5);
    match log.follow(inside) {
        Err(ReadError::NotRecordBoundary {
            requested,
            before,
            after,
        }) => {
            assert_eq!(
                (requested, before, after),
                (inside, positions[3], positions[4])
            );
        }
        other => panic!("expected NotRecordBoundary, got {other:?}"),
    }
    let past = Position(log.end().0 + 1);
    assert!(matches!(
        log.follow(past),
        Err(ReadError::PastEnd { requested, end }) if requested == past && end == log.end()
    ));
}

#[test]
fn many_followers_each_see_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(4096));
    let followers: Vec<_> = (0..50)
        .map(|_| log.follow(Position(0)).expect("follow"))
        .collect();
    let writer = log.clone();
    let appender = std::thread::spawn(move || {
        for i in 0..100 {
            writer.append_blocking(vec![payload(i)]).expect("append");
        }
    });
    runtime().block_on(async move {
        let tasks: Vec<_> = followers
            .into_iter()
            .map(|mut f| async move {
                for i in 0..100 {
                    let rec = tokio::time::timeout(DEADLINE, f.next())
                        .await
                        .expect("delivered")
                        .expect("record")
                        .expect("ok");
                    assert_eq!(rec.payload, payload(i));
                }
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    appender.join().expect("appender");
}

#[test]
fn following_from_the_end_of_a_reopened_log_sees_new_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(2048));
    for i in 0..5 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    log.close();
    drop(log);
    // Reopened: the growing segment is non-empty and the follower starts at
    // its end; then appends fill it and seal it.
    let log = open(dir.path(), small_segments(2048));
    let mut follower = log.follow(log.end()).expect("follow at the end");
    let writer = log.clone();
    let appender = std::thread::spawn(move || {
        for i in 5..60 {
            writer.append_blocking(vec![payload(i)]).expect("append");
        }
    });
    runtime().block_on(async move {
        for i in 5..60 {
            let rec = tokio::time::timeout(DEADLINE, follower.next())
                .await
                .expect("woken")
                .expect("record")
                .expect("ok");
            assert_eq!(rec.payload, payload(i));
        }
    });
    appender.join().expect("appender");
    assert!(log.metrics().seals > 0);

    // An empty growing segment: following from 0 works too.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("0000.growing.mutlog"), b"").expect("write");
    let log = open(dir.path(), Options::default());
    let mut follower = log.follow(Position(0)).expect("follow");
    log.append_blocking(vec![payload(1)]).expect("append");
    let rec = runtime().block_on(async move {
        tokio::time::timeout(DEADLINE, follower.next())
            .await
            .expect("woken")
            .expect("record")
            .expect("ok")
    });
    assert_eq!(rec.payload, payload(1));
}

#[test]
fn a_follower_that_hits_an_error_ends_instead_of_spinning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    for i in 0..20 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    // Damage a sealed segment underneath the log: it is shorter than the
    // table says.
    let first = log.table().get(0).expect("segment 0").clone();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first.path)
        .expect("open")
        .set_len(first.len / 2)
        .expect("truncate");
    let mut follower = log.follow(Position(0)).expect("follow");
    log.close();
    runtime().block_on(async move {
        let mut errors = 0;
        while let Some(item) = tokio::time::timeout(DEADLINE, follower.next())
            .await
            .expect("returns, never hangs or spins")
        {
            if item.is_err() {
                errors += 1;
            }
        }
        assert_eq!(
            errors, 1,
            "the error is reported once, then the follow ends"
        );
        assert!(follower.next().await.is_none());
    });
}

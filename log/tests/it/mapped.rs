//! Reading through memory maps: the same records, the same end, as reading
//! the files, even with the pages released under the reader.

use std::fs::OpenOptions;
use std::io::Write as _;

use almanac_log::Position;
use almanac_log::Snapshot;
use almanac_log::framing::encode_record;
use almanac_log::mapped::SegmentMaps;
use almanac_log::read::{Reader, Record};

use crate::support::{open, payload, segment_files, small_segments};

/// A record: its position, header length and payload.
type Read = (Position, u32, Vec<u8>);

/// Every record a reader returns, and how it ended.
fn read(mut reader: Reader, mut after_each: impl FnMut(&Record)) -> (Vec<Read>, String) {
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => {
                after_each(&rec);
                records.push((rec.position, rec.header_len, rec.payload.to_vec()));
            }
            Ok(None) => return (records, format!("end {:?}", reader.torn_tail())),
            Err(e) => return (records, format!("error {e}")),
        }
    }
}

#[test]
fn mapped_reads_equal_file_reads_across_segments_and_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(64 << 10));
    let records: Vec<_> = (0..1500).map(payload).collect();
    for batch in records.chunks(100) {
        log.append_blocking(batch.to_vec()).expect("append");
    }
    let end = log.end();
    log.close();
    let files = segment_files(dir.path());
    assert!(files.len() > 5, "{files:?}");
    // Half a record more at the end of the growing segment: a torn tail.
    let growing = files.last().expect("a growing segment");
    let growing_len = std::fs::metadata(dir.path().join(growing))
        .expect("stat")
        .len();
    let mut torn = Vec::new();
    encode_record(&mut torn, growing_len, &payload(9999));
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(growing))
        .expect("open growing");
    file.write_all(&torn[..torn.len() / 2]).expect("write");
    drop(file);

    let snap = Snapshot::open(dir.path()).expect("snapshot");
    let (from_files, files_end) = read(snap.read_from(Position(0)).expect("reader"), |_| {});
    assert_eq!(from_files.len(), records.len());
    assert!(files_end.contains("Some(TornTail"), "{files_end}");

    let maps = SegmentMaps::new(dir.path().to_owned(), snap.table()).expect("maps");
    let mut reader = snap.read_from(Position(0)).expect("reader");
    reader.read_mapped(&maps);
    // Each payload is the map's own bytes, not a copy; every page behind
    // the reader is released as it goes, the payloads kept so far
    // included: they must read back the same.
    let mut cursor = maps.cursor();
    let (from_maps, maps_end) = read(reader, |rec| {
        let at = Position(rec.position.0 + u64::from(rec.header_len));
        let mapped = cursor.get(at, rec.payload.len()).expect("mapped");
        assert_eq!(mapped.as_ptr(), rec.payload.as_ptr(), "copied at {at}");
        maps.release(Position(0), rec.end());
    });
    assert_eq!(maps_end, files_end);
    assert_eq!(from_maps.len(), from_files.len());
    assert!(from_maps == from_files, "mapped records differ");
    assert!(from_maps.last().expect("records").0 < end);
    // A cursor also looks back, and across segments.
    for (pos, header, payload) in [
        &from_files[3],
        &from_files[from_files.len() - 3],
        &from_files[0],
    ] {
        let at = Position(pos.0 + u64::from(*header));
        assert!(cursor.get(at, payload.len()) == Some(&payload[..]));
        assert!(maps.get(at, payload.len()) == Some(&payload[..]));
    }
    assert_eq!(cursor.get(snap.end(), 1), None);
    assert_eq!(maps.get(snap.end(), 1), None);

    // From a record in the middle of a later segment, too.
    let middle = from_files[from_files.len() * 2 / 3].0;
    let mut reader = snap.read_from(middle).expect("reader");
    reader.read_mapped(&maps);
    let (tail, _) = read(reader, |_| {});
    assert!(tail[..] == from_files[from_files.len() * 2 / 3..]);
}

#[test]
fn released_bytes_read_back_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(64 << 10));
    log.append_blocking((0..400).map(payload).collect())
        .expect("append");
    let end = log.end();
    log.close();
    let snap = Snapshot::open(dir.path()).expect("snapshot");
    let maps = SegmentMaps::new(dir.path().to_owned(), snap.table()).expect("maps");
    let len = usize::try_from(end.0 / 2).expect("small");
    let before = maps.get(Position(0), len).expect("mapped").to_vec();
    let held = maps.bytes(Position(0), len).expect("mapped");
    maps.release(Position(0), end);
    assert!(maps.get(Position(0), len).expect("mapped") == before);
    assert!(held[..] == before[..]);
    // Beyond the maps: nothing.
    assert!(maps.bytes(end, 1).is_none());
    assert!(maps.get(end, 1).is_none());
}

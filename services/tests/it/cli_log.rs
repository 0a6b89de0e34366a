//! `almanac log ...` as a user runs it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use crate::support::{almanac, arg, go_fixture, run, sample_json, stderr, stdout};

#[test]
fn append_then_dump_json_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = sample_json(7, 500);
    let out = run(
        &["log", "append", arg(dir.path()), "--json"],
        &(lines.join("\n") + "\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let positions: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| l.parse().expect("a position per line"))
        .collect();
    assert_eq!(positions.len(), 500);
    assert_eq!(positions[0], 0);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    let out = run(&["log", "dump", arg(dir.path()), "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let dumped: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(dumped, lines);

    // From a later position, the rest.
    let from = positions[100].to_string();
    let out = run(
        &["log", "dump", arg(dir.path()), "--json", "--from", &from],
        "",
    );
    assert_eq!(stdout(&out).lines().count(), 400);
    // Text format names the position and the kind of each record.
    let out = run(&["log", "dump", arg(dir.path()), "--limit", "2"], "");
    let text = stdout(&out);
    assert!(
        text.contains("# position 0 (segment 0000, offset 0"),
        "{text}"
    );
    assert!(text.contains("owner: \"golang\""), "{text}");
    // Inside a record: a clear error naming the nearest positions.
    let inside = (positions[3] + 1).to_string();
    let out = run(&["log", "dump", arg(dir.path()), "--from", &inside], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "is inside a record; the nearest record positions are {} and {}",
            positions[3], positions[4]
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_json_line_stops_with_its_line_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = sample_json(1, 2);
    lines.push(r#"{"githubIssue": {"owner": "golang", "noSuchField": 1}}"#.to_owned());
    lines.extend(sample_json(2, 2));
    let out = run(
        &["log", "append", arg(dir.path()), "--json"],
        &lines.join("\n"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("noSuchField"), "{err}");
    assert!(
        err.contains("the 2 records before it were appended"),
        "{err}"
    );
    let out = run(&["log", "dump", arg(dir.path()), "--json"], "");
    assert_eq!(stdout(&out).lines().count(), 2);

    let out = run(&["log", "append", arg(dir.path()), "--json"], "{not json\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
}

#[test]
fn a_second_writer_process_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = almanac()
        .args(["log", "append", arg(dir.path()), "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = first.stdin.take().expect("stdin");
    let mut acks = BufReader::new(first.stdout.take().expect("stdout"));
    writeln!(input, "{}", sample_json(3, 1)[0]).expect("write");
    // Once the first record is acknowledged, the first writer holds the lock.
    let mut ack = String::new();
    acks.read_line(&mut ack).expect("ack");
    assert_eq!(ack.trim(), "0");

    let second = run(
        &["log", "append", arg(dir.path()), "--json"],
        &sample_json(4, 1)[0],
    );
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "already open for writing by process {}",
            first.id()
        )),
        "{err}"
    );
    let repair = run(&["log", "repair", arg(dir.path())], "");
    assert!(!repair.status.success());
    // Readers are welcome meanwhile.
    let info = run(&["log", "info", arg(dir.path())], "");
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(
        stdout(&info).contains(&format!("running (process {})", first.id())),
        "{}",
        stdout(&info)
    );

    drop(input);
    assert!(first.wait().expect("wait").success());
    let info = run(&["log", "info", arg(dir.path())], "");
    assert!(
        stdout(&info).contains("records:        1"),
        "{}",
        stdout(&info)
    );
    assert!(
        stdout(&info).contains("writer:         none"),
        "{}",
        stdout(&info)
    );
}

#[test]
fn verify_exits_non_zero_and_names_the_damaged_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = sample_json(5, 300);
    let out = run(
        &[
            "log",
            "append",
            arg(dir.path()),
            "--json",
            "--segment-size",
            "16384",
        ],
        &lines.join("\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = run(&["log", "verify", arg(dir.path())], "");
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("300 records"), "{}", stdout(&ok));
    assert!(stdout(&ok).ends_with("OK\n"), "{}", stdout(&ok));

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("0003."))
        .collect();
    let victim = dir.path().join(names.pop().expect("segment 0003"));
    let mut bytes = std::fs::read(&victim).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, bytes).expect("write");
    let bad = run(&["log", "verify", arg(dir.path())], "");
    assert!(!bad.status.success());
    let text = stdout(&bad);
    assert!(text.contains("PROBLEM segment 0003"), "{text}");
    assert!(!text.contains("PROBLEM segment 0002"), "{text}");
}

#[test]
fn import_info_and_repair_from_the_command_line() {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        go_fixture("mixed.mutlog"),
        src.path().join("maintner-2019-10-01.mutlog"),
    )
    .expect("copy");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["log", "import", arg(dir.path()), arg(src.path())], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("imported 1625 records"),
        "{}",
        stdout(&out)
    );
    let info = run(&["log", "info", arg(dir.path())], "");
    let text = stdout(&info);
    assert!(text.contains("records:        1625"), "{text}");
    assert!(text.contains("end position:   881970"), "{text}");

    // Damage the tail with garbage: appends refuse until repair.
    let growing = dir.path().join("0000.growing.mutlog");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&growing)
        .expect("open");
    f.write_all(b"garbage that is not a record").expect("write");
    drop(f);
    let refused = run(
        &["log", "append", arg(dir.path()), "--json"],
        &sample_json(1, 1)[0],
    );
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("segment 0000 offset 881970"), "{err}");
    assert!(err.contains("almanac log repair"), "{err}");
    let repaired = run(&["log", "repair", arg(dir.path())], "");
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(
        stdout(&repaired).contains("cut segment 0000 at offset 881970"),
        "{}",
        stdout(&repaired)
    );
    let again = run(
        &["log", "append", arg(dir.path()), "--json"],
        &sample_json(1, 1)[0],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), "881970");
}

#[test]
fn a_go_log_round_trips_through_json_byte_for_byte() {
    for name in ["tiny", "gerrit-sync", "mixed"] {
        let original = std::fs::read(go_fixture(&format!("{name}.mutlog"))).expect("fixture");
        // Go's log as a godata cache segment.
        let src = tempfile::tempdir().expect("tempdir");
        let sealed = format!(
            "0000.{}.mutlog",
            almanac_log::segment::Sha224Digest::of(&original)
        );
        std::fs::write(src.path().join(sealed), &original).expect("write");
        let dumped = run(&["log", "dump", arg(src.path()), "--json"], "");
        assert!(dumped.status.success(), "{}", stderr(&dumped));
        let dest = tempfile::tempdir().expect("tempdir");
        let appended = run(
            &["log", "append", arg(dest.path()), "--json"],
            &stdout(&dumped),
        );
        assert!(appended.status.success(), "{}", stderr(&appended));
        let ours = std::fs::read(dest.path().join("0000.growing.mutlog")).expect("read");
        assert!(
            ours == original,
            "{name}: dump --json | append --json must reproduce Go's bytes"
        );
    }
}

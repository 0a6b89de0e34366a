//! Golden log fixtures: small binary segments with hand-checked bytes, and
//! their readable dumps. `UPDATE_GOLDEN=1 cargo test -p almanac-log` rewrites
//! them; CI fails if a run changes a committed file.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use almanac_log::framing::encode_record;
use almanac_log::quote::go_quote;
use almanac_log::segment::Sha224Digest;
use almanac_log::{Position, Snapshot};
use almanac_proto::pb::farm;
use almanac_proto::pb::maintpb::{
    GitCommit, GitMutation, GitRepo, GithubIssueMutation, GithubLabel, GithubMutation, Mutation,
};
use almanac_proto::summary::describe;
use prost::Message as _;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// The three mutations of `three_mutations.mutlog`: one of each GitHub and
/// git kind, with fixed ids and times.
pub(crate) fn three_mutations() -> Vec<Vec<u8>> {
    let labels = Mutation {
        github: Some(GithubMutation {
            owner: "golang".into(),
            repo: "go".into(),
            labels: vec![GithubLabel {
                id: 1,
                name: "NeedsFix".into(),
            }],
            milestones: vec![],
        }),
        ..Default::default()
    };
    let issue = Mutation {
        github_issue: Some(GithubIssueMutation {
            owner: "golang".into(),
            repo: "go".into(),
            number: 7,
            title: "x".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let commit = Mutation {
        git: Some(GitMutation {
            repo: Some(GitRepo {
                go_repo: "net".into(),
            }),
            commit: Some(GitCommit {
                sha1: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                raw: b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\n"
                    .to_vec()
                    .into(),
                diff_tree: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    [labels, issue, commit]
        .iter()
        .map(prost::Message::encode_to_vec)
        .collect()
}

fn frame_all(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        let offset = out.len() as u64;
        encode_record(&mut out, offset, p);
    }
    out
}

/// Every fixture, as the current code writes it.
fn generate() -> Vec<(&'static str, Vec<u8>)> {
    let three = frame_all(&three_mutations());
    let mut torn = three.clone();
    let mut fourth = Vec::new();
    encode_record(&mut fourth, three.len() as u64, &three_mutations()[1]);
    torn.extend_from_slice(&fourth[..fourth.len() / 2]);
    let mut bad_header = three.clone();
    // The second record claims offset 0 instead of its real offset.
    let second = frame_all(&three_mutations()[..1]).len();
    let claimed = format!("REC@{second:x}+");
    let at = bad_header
        .windows(claimed.len())
        .position(|w| w == claimed.as_bytes())
        .expect("second header present");
    bad_header.splice(at..at + claimed.len(), b"REC@00+".iter().copied());
    let mut unknown = three_mutations()[1].clone();
    prost::encoding::encode_key(
        999,
        prost::encoding::WireType::LengthDelimited,
        &mut unknown,
    );
    prost::encoding::encode_varint(6, &mut unknown);
    unknown.extend_from_slice(b"future");
    let farm_event = Mutation {
        build: Some(farm::BuildEvent {
            meta: Some(farm::EventMeta {
                event_id: "E0000000001".into(),
                time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                coordinator_instance: "P0123456789".into(),
                correlation_id: "B0123456789".into(),
                batch_following: 0,
            }),
            event: Some(farm::build_event::Event::BuildRequested(
                farm::BuildRequested {
                    build_id: "B0123456789".into(),
                    work: Some(farm::BuilderRev {
                        builder: "linux-amd64".into(),
                        rev: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                        ..Default::default()
                    }),
                    host_type: "host-linux-amd64-local".into(),
                    kind: farm::BuildKind::PostSubmit as i32,
                    attempt: 1,
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    };
    vec![
        ("empty", Vec::new()),
        ("three_mutations", three),
        ("torn_tail", torn),
        ("bad_header", bad_header),
        ("unknown_field", frame_all(&[unknown])),
        ("farm_event", frame_all(&[farm_event.encode_to_vec()])),
    ]
}

/// Renders a segment the way a person checks it: each record's position,
/// header, what it is, and its payload in hex; then how the segment ends.
fn dump(segment: &Path) -> String {
    let bytes = fs::read(segment).expect("read fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("0000.growing.mutlog"), &bytes).expect("write");
    let snap = Snapshot::open(dir.path()).expect("snapshot");
    let mut out = String::new();
    let mut reader = snap.read_from(Position(0)).expect("reader");
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => {
                let start = rec.position.0 as usize;
                let header = &bytes[start..start + rec.header_len as usize];
                let what = Mutation::decode(rec.payload.clone())
                    .map_or_else(|e| format!("undecodable: {e}"), |m| describe(&m));
                writeln!(
                    out,
                    "@{} {} len={} {}",
                    rec.position,
                    go_quote(header),
                    rec.payload.len(),
                    what
                )
                .expect("write to string");
                for chunk in rec.payload.chunks(32) {
                    let hex: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
                    writeln!(out, "  {hex}").expect("write to string");
                }
            }
            Ok(None) => {
                match reader.torn_tail() {
                    Some(t) => writeln!(
                        out,
                        "end: torn tail of {} bytes at offset {}",
                        t.len, t.offset
                    ),
                    None => writeln!(out, "end: clean at {}", reader.next_position()),
                }
                .expect("write to string");
                break;
            }
            Err(e) => {
                writeln!(out, "error: {e}").expect("write to string");
                break;
            }
        }
    }
    writeln!(out, "sha224: {}", Sha224Digest::of(&bytes)).expect("write to string");
    out
}

#[test]
fn golden_fixtures_match_the_writer_and_their_dumps() {
    let dir = fixture_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    if update {
        fs::create_dir_all(&dir).expect("mkdir");
    }
    for (name, bytes) in generate() {
        let path = dir.join(format!("{name}.mutlog"));
        let dump_path = dir.join(format!("{name}.dump.txt"));
        if update {
            fs::write(&path, &bytes).expect("write fixture");
            fs::write(&dump_path, dump(&path)).expect("write dump");
        }
        let committed = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == bytes,
            "{name}: the writer no longer produces the committed bytes"
        );
        let expected = fs::read_to_string(&dump_path).expect("dump");
        assert_eq!(dump(&path), expected, "{name}: dump differs");
    }
}

#[test]
fn three_mutations_bytes_are_as_hand_checked() {
    let bytes = fs::read(fixture_dir().join("three_mutations.mutlog")).expect("fixture");
    // Checked by hand against `xxd`: the labels mutation is 28 bytes
    // (tag 0x1a = field 3 length-delimited, 26 bytes: owner "golang", repo
    // "go", one label {id 1, "NeedsFix"}), framed with the 9-byte header.
    assert_eq!(&bytes[..9], b"REC@0+1c=");
    assert_eq!(&bytes[9..11], &[0x1a, 0x1a]);
    assert_eq!(&bytes[0x1d..0x25], b"NeedsFix");
    // The issue mutation starts at 9 + 0x1c = 0x25: 19 bytes (field 1 of 17:
    // owner, repo, number 7 as 0x18 0x07, title "x" as 0x4a 0x01 0x78).
    assert_eq!(&bytes[0x25..0x2f], b"REC@25+13=");
    assert_eq!(&bytes[0x2f..0x31], &[0x0a, 0x11]);
    assert_eq!(&bytes[0x3e..0x42], &[0x07, 0x4a, 0x01, b'x']);
    // The commit mutation starts at 0x2f + 0x13 = 0x42 and ends the file.
    assert_eq!(&bytes[0x42..0x4c], b"REC@42+66=");
    assert_eq!(bytes.len(), 0x4c + 0x66);
}

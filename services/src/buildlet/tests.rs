//! Unit tests of the buildlet's pure parts: path rules, Go's formats, key
//! derivation and parsing. Over-the-wire behaviour is in
//! `tests/it/buildlet.rs`.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use super::auth::{decode_base64, encode_base64, keys_match, presented_key};
use super::exec::{describe, go_duration, rewrite_path};
use super::files::parse_mode;
use super::form::{Form, parse_bool};
use super::fs::{RelPath, mode_string};
use super::host_key;

#[test]
fn rel_paths_follow_go_and_refuse_escapes() {
    let ok = |s: &str| RelPath::parse(s).expect(s).to_string();
    assert_eq!(ok("a/b"), "a/b");
    assert_eq!(ok("./a//b/"), "a/b");
    assert_eq!(ok("."), ".");
    assert_eq!(ok("a/./b"), "a/b");
    assert_eq!(ok("..a/b.."), "..a/b..");
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/..",
        "..",
        "a\\b",
        "a\0b",
    ] {
        assert!(RelPath::parse(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(RelPath::parse_dir("").expect("empty dir").is_root());
    assert!(RelPath::parse(".").expect("dot").is_root());
    assert!(RelPath::parse("go1.4").expect("go1.4").is("go1.4"));
    let joined = RelPath::parse("go")
        .expect("go")
        .join(&RelPath::parse("src/x").expect("src/x"));
    assert_eq!(joined.to_string(), "go/src/x");
    assert_eq!(joined.under(Path::new("/w")), Path::new("/w/go/src/x"));
}

#[test]
fn mode_strings_are_go_file_mode_strings() {
    assert_eq!(mode_string(0o100_644), "-rw-r--r--");
    assert_eq!(mode_string(0o100_755), "-rwxr-xr-x");
    assert_eq!(mode_string(0o040_755), "drwxr-xr-x");
    assert_eq!(mode_string(0o120_777), "Lrwxrwxrwx");
    assert_eq!(mode_string(0o010_600), "prw-------");
    assert_eq!(mode_string(0o140_755), "Srwxr-xr-x");
    assert_eq!(mode_string(0o020_620), "Dcrw--w----");
    assert_eq!(mode_string(0o060_660), "Drw-rw----");
    assert_eq!(mode_string(0o104_755), "urwxr-xr-x");
    assert_eq!(mode_string(0o041_777), "dtrwxrwxrwx");
}

#[test]
fn write_modes_must_be_regular_go_file_modes() {
    assert_eq!(parse_mode("420"), Some(0o644));
    assert_eq!(parse_mode("493"), Some(0o755));
    // Only the permission bits are applied.
    assert_eq!(parse_mode("33188"), Some(0o644));
    // os.ModeDir, os.ModeSymlink.
    assert_eq!(parse_mode(&((1u64 << 31) | 0o755).to_string()), None);
    assert_eq!(parse_mode(&((1u64 << 27) | 0o777).to_string()), None);
    for bad in ["", "0o644", "-1", "x", "4294967296"] {
        assert_eq!(parse_mode(bad), None, "{bad:?}");
    }
}

#[test]
fn process_states_read_as_go_prints_them() {
    assert_eq!(describe(ExitStatus::from_raw(0)), "ok");
    assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
    assert_eq!(describe(ExitStatus::from_raw(9)), "signal: killed");
    assert_eq!(describe(ExitStatus::from_raw(15)), "signal: terminated");
    assert_eq!(
        describe(ExitStatus::from_raw(11 | 0x80)),
        "signal: segmentation fault (core dumped)"
    );
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
}

#[test]
fn host_keys_are_hex_hmac_sha256() {
    // RFC 4231, test case 2.
    assert_eq!(
        host_key(b"Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_ne!(
        host_key(b"master", "host-linux-bullseye"),
        host_key(b"master", "host-linux-arm64")
    );
}

#[test]
fn keys_are_presented_as_basic_passwords_or_bearer_tokens() {
    let with = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
        presented_key(&h)
    };
    // "gomote:s3cret:with:colons"
    assert_eq!(
        with("Basic Z29tb3RlOnMzY3JldDp3aXRoOmNvbG9ucw==").as_deref(),
        Some(&b"s3cret:with:colons"[..])
    );
    assert_eq!(with("bearer tok").as_deref(), Some(&b"tok"[..]));
    assert_eq!(with("Basic !!!"), None);
    assert_eq!(with("Digest x"), None);
    assert_eq!(presented_key(&HeaderMap::new()), None);
    assert_eq!(decode_base64("Zm9vYmFy").as_deref(), Some(&b"foobar"[..]));
    for plain in [&b""[..], b"f", b"fo", b"foo", b"git-gobot:secret"] {
        let encoded = encode_base64(plain);
        assert_eq!(decode_base64(&encoded).as_deref(), Some(plain));
    }
    assert_eq!(encode_base64(b"fo"), "Zm8=");
    assert_eq!(
        encode_base64(b"git-gobot:secret"),
        "Z2l0LWdvYm90OnNlY3JldA=="
    );
    assert_eq!(decode_base64("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
    assert!(keys_match(b"k", b"k"));
    assert!(!keys_match(b"k", b"K"));
    assert!(!keys_match(b"", b"k"));
}

#[test]
fn forms_decode_as_go_parses_them() {
    let mut form = Form::default();
    form.extend("cmd=go%2Fbin%2Fgo&cmdArg=test&cmdArg=-run+X&bad=%zz&&env=A%3Db");
    form.extend("cmdArg=from-query");
    assert_eq!(form.value("cmd"), "go/bin/go");
    assert_eq!(form.values("cmdArg"), ["test", "-run X", "from-query"]);
    assert_eq!(form.value("env"), "A=b");
    assert_eq!(form.value("bad"), "");
    assert_eq!(form.value("missing"), "");
    assert!(parse_bool("true") && parse_bool("1") && parse_bool("T"));
    assert!(!parse_bool("yes") && !parse_bool(""));
}

#[test]
fn path_values_rewrite_path() {
    let w = Path::new("/w");
    let cur = Some(OsStr::new("/usr/bin:/bin"));
    assert_eq!(
        rewrite_path(&["$WORKDIR/go/bin", "$PATH"], cur, w),
        "/w/go/bin:/usr/bin:/bin"
    );
    assert_eq!(rewrite_path(&["$EMPTY"], cur, w), "");
    assert_eq!(rewrite_path(&["/opt/x", "$PATH"], None, w), "/opt/x");
}

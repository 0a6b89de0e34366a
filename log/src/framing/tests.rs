//! Framing tests: Go's exact bytes and error texts, and properties.

use proptest::prelude::*;

use super::*;
use crate::quote::go_quote;

fn framed(offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, offset, payload);
    out
}

fn parse_err(buf: &[u8], offset: u64) -> String {
    parse(buf, offset).expect_err("should fail").to_string()
}

#[test]
fn header_is_lowercase_hex_without_padding() {
    assert_eq!(framed(0, b"abc"), b"REC@0+3=abc");
    let payload = vec![7u8; 0x1d3];
    let first = framed(0, &payload);
    assert!(first.starts_with(b"REC@0+1d3="));
    assert_eq!(first.len(), 0x1dd);
    let second = framed(0x1dd, b"");
    assert_eq!(second, b"REC@1dd+0=");
    assert_eq!(
        framed(u64::from(u32::MAX) + 1, b"x"),
        b"REC@100000000+1=x".to_vec()
    );
}

#[test]
fn record_len_matches_encoding() {
    for (offset, len) in [
        (0, 0),
        (0, 15),
        (15, 16),
        (0xfff, 0x1000),
        (u64::MAX >> 1, 3),
    ] {
        let payload = vec![0u8; len];
        assert_eq!(
            record_len(offset, len as u64),
            framed(offset, &payload).len() as u64
        );
    }
}

#[test]
fn the_longest_header_fits_the_limit() {
    // Sixteen hex digits each side: 4 + 16 + 1 + 16 + 1 = 38 bytes.
    let mut hdr = Vec::new();
    encode_header(&mut hdr, i64::MAX as u64, i64::MAX as u64);
    assert_eq!(hdr.len(), 38);
    let max = b"REC@0000000000000000+0000000000000003=abc";
    assert_eq!(
        parse(max, 0),
        Ok(Frame::Record {
            header_len: 38,
            payload_len: 3
        })
    );
}

#[test]
fn parses_what_go_accepts() {
    assert_eq!(
        parse(b"REC@1dd+3=abcREC", 0x1dd),
        Ok(Frame::Record {
            header_len: 10,
            payload_len: 3
        })
    );
    // Uppercase and leading zeros are accepted, as strconv.ParseInt does.
    assert_eq!(
        parse(b"REC@1DD+03=abc", 0x1dd),
        Ok(Frame::Record {
            header_len: 11,
            payload_len: 3
        })
    );
}

#[test]
fn incomplete_records_are_not_errors() {
    assert_eq!(parse(b"", 0), Ok(Frame::Incomplete { needed: None }));
    for cut in 1..b"REC@1dd+3".len() {
        assert_eq!(
            parse(&b"REC@1dd+3"[..cut], 0x1dd),
            Ok(Frame::Incomplete { needed: None }),
            "cut at {cut}"
        );
    }
    assert_eq!(
        parse(b"REC@0+a=abc", 0),
        Ok(Frame::Incomplete { needed: Some(18) })
    );
}

#[test]
fn go_error_texts() {
    assert_eq!(
        parse_err(b"REC@0+3=", 5),
        r#"malformed header "REC@0+3=" with offset 0 doesn't match expected offset 5"#
    );
    assert_eq!(
        parse_err(b"REX@0+3=abc", 0),
        r#"malformed header "REX@0+3=" at offset 0"#
    );
    assert_eq!(
        parse_err(b"REC@0+3+4=abc", 0),
        r#"malformed header "REC@0+3+4=" at offset 0"#
    );
    assert_eq!(
        parse_err(b"REC@+3=abc", 0),
        r#"malformed header "REC@+3=" (malformed offset) at offset 0"#
    );
    assert_eq!(
        parse_err(b"REC@-0+3=abc", 0),
        r#"malformed header "REC@-0+3=" (malformed offset) at offset 0"#
    );
    assert_eq!(
        parse_err(b"REC@0+zz=abc", 0),
        r#"malformed header "REC@0+zz=" (bad size) at offset 0"#
    );
    assert_eq!(
        parse_err(b"REC@0+=abc", 0),
        r#"malformed header "REC@0+=" (bad size) at offset 0"#
    );
    let long = [b"REC@".as_slice(), &[b'0'; 60], b"+1=x"].concat();
    assert_eq!(
        parse_err(&long, 0),
        format!(
            "malformed overlong header {} at offset 0",
            go_quote(&long[..40])
        )
    );
    assert_eq!(
        parse_err(b"\x00\x00\x00", 9),
        r#"malformed header "\x00\x00\x00" at offset 9"#
    );
    // Sizes beyond int64 are rejected like ParseInt's range error.
    assert_eq!(
        parse_err(b"REC@0+8000000000000000=", 0),
        r#"malformed header "REC@0+8000000000000000=" (bad size) at offset 0"#
    );
}

#[test]
fn truncation_texts() {
    let e = |payload_len, payload_present| {
        FrameError {
            offset: 16,
            kind: FrameErrorKind::Truncated {
                payload_len,
                payload_present,
            },
        }
        .to_string()
    };
    assert_eq!(e(Some(5), 0), "truncated record at offset 16: EOF");
    assert_eq!(
        e(Some(5), 2),
        "truncated record at offset 16: unexpected EOF"
    );
    assert_eq!(e(None, 0), "truncated header at offset 16: unexpected EOF");
}

#[test]
fn go_quote_matches_strconv_quote() {
    assert_eq!(go_quote(b"plain"), r#""plain""#);
    assert_eq!(go_quote(b"a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(go_quote(b"\n\t\r\x07\x08\x0c\x0b"), r#""\n\t\r\a\b\f\v""#);
    assert_eq!(go_quote(b"\x00\x1f\x7f"), r#""\x00\x1f\x7f""#);
    assert_eq!(go_quote(b"\xff\xfe"), r#""\xff\xfe""#);
    assert_eq!(go_quote("héllo, 世界".as_bytes()), "\"héllo, 世界\"");
    assert_eq!(
        go_quote("a\u{a0}b\u{feff}".as_bytes()),
        r#""a\u00a0b\ufeff""#
    );
    assert_eq!(go_quote("\u{85}".as_bytes()), r#""\u0085""#);
}

/// Parses a whole buffer of records, returning payloads and the outcome.
fn parse_all(mut buf: &[u8]) -> (Vec<Vec<u8>>, Result<Frame, FrameError>) {
    let mut offset = 0u64;
    let mut payloads = Vec::new();
    loop {
        match parse(buf, offset) {
            Ok(Frame::Record {
                header_len,
                payload_len,
            }) => {
                payloads.push(buf[header_len..header_len + payload_len].to_vec());
                let n = header_len + payload_len;
                buf = &buf[n..];
                offset += n as u64;
            }
            other => return (payloads, other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut buf = Vec::new();
        for p in &payloads {
            let offset = buf.len() as u64;
            encode_record(&mut buf, offset, p);
        }
        let (got, end) = parse_all(&buf);
        prop_assert_eq!(got, payloads);
        prop_assert_eq!(end, Ok(Frame::Incomplete { needed: None }));
    }

    #[test]
    fn every_prefix_is_a_prefix_of_records(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        cut_frac in 0.0f64..1.0,
    ) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for p in &payloads {
            let offset = buf.len() as u64;
            encode_record(&mut buf, offset, p);
            ends.push(buf.len());
        }
        let cut = ((buf.len() as f64) * cut_frac) as usize;
        let (got, end) = parse_all(&buf[..cut]);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert_eq!(&got[..], &payloads[..whole]);
        prop_assert!(matches!(end, Ok(Frame::Incomplete { .. })), "cut {} gave {:?}", cut, end);
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_parser(
        offset in 0u64..0x2000,
        len in 0u64..0x2000,
        upper in any::<bool>(),
        zeros in 0usize..3,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut hdr = format!("REC@{}{offset:x}+{len:x}=", "0".repeat(zeros));
        if upper {
            hdr = hdr.to_uppercase();
        }
        let mut buf = hdr.into_bytes();
        buf.extend_from_slice(&tail);
        for expected_offset in [offset, offset + 1] {
            let general = super::parse_general(&buf, expected_offset);
            prop_assert_eq!(parse(&buf, expected_offset), general.clone());
            if let Some(fast) = super::parse_well_formed(&buf, expected_offset) {
                prop_assert_eq!(Ok(fast), general);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), offset in 0u64..1000) {
        let _ = parse(&bytes, offset);
    }

    #[test]
    fn mutated_headers_are_errors_or_different(payload in proptest::collection::vec(any::<u8>(), 1..50), idx in 0usize..8, byte in any::<u8>()) {
        let buf = framed(0, &payload);
        let hdr_len = buf.iter().position(|&b| b == b'=').expect("has =") + 1;
        let idx = idx % hdr_len;
        let mut bad = buf.clone();
        prop_assume!(bad[idx] != byte);
        bad[idx] = byte;
        // A damaged header never yields the original record silently.
        if let Ok(Frame::Record { header_len, payload_len }) = parse(&bad, 0) {
            let same = bad[header_len..header_len + payload_len] == payload[..];
            // Only a change to an equivalent spelling (e.g. hex case) can keep it.
            prop_assert!(!same || bad[..hdr_len].eq_ignore_ascii_case(&buf[..hdr_len]));
        }
    }
}

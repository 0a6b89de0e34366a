//! Fuzzes the record parser: no input may panic it, and whatever it accepts
//! must re-encode to the same bytes when written the canonical way.
#![no_main]

use almanac_log::framing::{Frame, encode_record, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut off = 0usize;
    while off < data.len() {
        match parse(&data[off..], off as u64) {
            Ok(Frame::Record {
                header_len,
                payload_len,
            }) => {
                let payload = &data[off + header_len..off + header_len + payload_len];
                let mut again = Vec::new();
                encode_record(&mut again, off as u64, payload);
                // Our writer's spelling parses back to the same record.
                assert_eq!(
                    parse(&again, off as u64),
                    Ok(Frame::Record {
                        header_len: again.len() - payload_len,
                        payload_len
                    })
                );
                off += header_len + payload_len;
            }
            Ok(Frame::Incomplete { .. }) | Err(_) => break,
        }
    }
});

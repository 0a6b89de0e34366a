//! `application/x-www-form-urlencoded` values, as Go's `net/url` reads and
//! writes them: shared by the daemons that speak Go's form-based HTTP APIs
//! (pubsubhelper's queries, the buildlet's forms, the buildlet client).

/// One hex digit's value.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One form component: `+` is a space, `%XX` a byte; `None` for a broken
/// escape or bytes that are not UTF-8.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes one value (Go's `url.QueryEscape`: unreserved bytes as they
/// are, space as `+`, the rest `%XX`).
pub fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The first value of `key` in a form-encoded string (a query, or a
/// form body), decoded as Go's `FormValue` decodes it. An undecodable value
/// is returned raw.
pub fn first_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k).as_deref() == Some(key))
            .then(|| decode_component(v).unwrap_or_else(|| v.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_decode_round_trip() {
        for s in ["a b", "x=1&y", "café/../%", ""] {
            assert_eq!(decode_component(&escape_component(s)).as_deref(), Some(s));
        }
        assert_eq!(escape_component("a b&c"), "a+b%26c");
        assert_eq!(decode_component("%zz"), None);
    }
}

//! Go's `%q` quoting of byte strings, for error texts and dumps that must
//! read the same as Go's.
//!
//! Printable characters stay as they are; `"` and `\` are escaped; `\a \b \f
//! \n \r \t \v` use their short forms; other control bytes and invalid UTF-8
//! become `\xhh`; other non-printable characters become `\uhhhh` or
//! `\Uhhhhhhhh`. Go decides printability from Unicode tables; this follows it
//! for control, space and format characters, which is what real logs hold.

use std::fmt::{self, Write as _};

/// Displays bytes as Go's `strconv.Quote(string(b))` would.
#[derive(Debug, Clone, Copy)]
pub struct GoQuoted<'a>(pub &'a [u8]);

impl fmt::Display for GoQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                write_escaped(f, c)?;
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_char('"')
    }
}

/// Quotes a string as Go's `strconv.Quote`.
pub fn go_quote(s: impl AsRef<[u8]>) -> String {
    GoQuoted(s.as_ref()).to_string()
}

fn write_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '"' => f.write_str("\\\""),
        '\\' => f.write_str("\\\\"),
        '\x07' => f.write_str("\\a"),
        '\x08' => f.write_str("\\b"),
        '\x0c' => f.write_str("\\f"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\x0b' => f.write_str("\\v"),
        c if is_go_printable(c) => f.write_char(c),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(f, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x10000 => write!(f, "\\u{:04x}", c as u32),
        c => write!(f, "\\U{:08x}", c as u32),
    }
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0x00ad | 0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x180e
        | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f
        | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xf0000..=0x10ffff | 0xe0000..=0xe007f)
}

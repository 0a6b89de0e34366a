//! Instants as the corpus stores them: seconds and nanoseconds since the
//! Unix epoch, formatted as Go's `time.RFC3339Nano` in UTC.

use std::fmt;

/// An instant. `Time::ZERO` (also the default) stands for Go's zero
/// `time.Time` (unset). Packed to 12 bytes: millions of these sit in
/// comment and event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C, packed(4))]
pub struct Time {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds within the second, 0..1e9.
    pub nanos: u32,
}

impl Default for Time {
    fn default() -> Time {
        Time::ZERO
    }
}

impl Time {
    /// Unset (Go's zero time, which sorts before every real one).
    pub const ZERO: Time = Time {
        seconds: i64::MIN,
        nanos: 0,
    };

    /// Whether this is the unset time.
    pub fn is_zero(self) -> bool {
        self == Time::ZERO
    }

    /// From a protobuf timestamp, normalising the nanoseconds.
    pub fn from_proto(t: &prost_types::Timestamp) -> Time {
        let mut seconds = t.seconds;
        let mut nanos = i64::from(t.nanos);
        seconds += nanos.div_euclid(1_000_000_000);
        nanos = nanos.rem_euclid(1_000_000_000);
        Time {
            seconds,
            nanos: nanos as u32,
        }
    }

    /// Whole seconds since the epoch.
    pub fn from_unix(seconds: i64) -> Time {
        Time { seconds, nanos: 0 }
    }
}

impl fmt::Display for Time {
    /// RFC 3339 in UTC with nanoseconds only when non-zero (trailing zeros
    /// trimmed), or `-` when unset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("-");
        }
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano_in_utc() {
        assert_eq!(Time::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Time::from_unix(1_483_232_400).to_string(),
            "2017-01-01T01:00:00Z"
        );
        assert_eq!(
            Time {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            }
            .to_string(),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(Time::from_unix(-1).to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Time::from_unix(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(Time::ZERO.to_string(), "-");
        assert!(Time::ZERO < Time::from_unix(-62_135_596_800));
    }
}

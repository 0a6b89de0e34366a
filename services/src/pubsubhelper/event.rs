//! The event JSON pubsubhelper serves, key for key as Go's `pubsubtypes`
//! (spec/bots.md §3.4), so Go's maintnerd can follow us and we can follow Go's
//! pubsubhelper.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant as Go's `types.Time3339` writes it: RFC 3339 in UTC, with
/// nanoseconds and their trailing zeros trimmed (Go's `time.RFC3339Nano`),
/// for example `2017-04-05T18:43:09.12345Z`.
///
/// The text round-trips exactly, which matters: a client sends an event's
/// `Time` back as `after`, and the server compares instants, not strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time3339(pub DateTime<Utc>);

impl Time3339 {
    /// The system clock now.
    pub fn now() -> Time3339 {
        Time3339(DateTime::<Utc>::from(SystemTime::now()))
    }

    /// Parses RFC 3339 with any number of fraction digits and any offset,
    /// as Go's `time.Parse(time.RFC3339Nano, s)` does.
    pub fn parse(s: &str) -> Result<Time3339, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|t| Time3339(t.with_timezone(&Utc)))
    }
}

impl FromStr for Time3339 {
    type Err = chrono::ParseError;

    fn from_str(s: &str) -> Result<Time3339, chrono::ParseError> {
        Time3339::parse(s)
    }
}

impl fmt::Display for Time3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds from chrono, then Go's trimmed fraction by hand:
        // chrono's `AutoSi` pads to 3, 6 or 9 digits, Go trims every zero.
        let whole = self.0.to_rfc3339_opts(SecondsFormat::Secs, true);
        let whole = whole.strip_suffix('Z').unwrap_or(&whole);
        f.write_str(whole)?;
        let nanos = self.0.timestamp_subsec_nanos();
        if nanos != 0 {
            let digits = format!("{nanos:09}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Time3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time3339 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time3339, D::Error> {
        let text = String::deserialize(deserializer)?;
        Time3339::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One event: a GitHub or Gerrit change, or a long-poll timeout.
///
/// Keys are Go's field names. `LongPollTimeout` is omitted when false,
/// `Gerrit` and `GitHub` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When pubsubhelper received the event, or when the long-poll timed
    /// out. Clients send it back as `after` to resume.
    #[serde(rename = "Time")]
    pub time: Time3339,
    /// No event came: retry with `after` set to `time`.
    #[serde(rename = "LongPollTimeout", default, skip_serializing_if = "is_false")]
    pub long_poll_timeout: bool,
    /// Set for Gerrit events.
    #[serde(rename = "Gerrit", default, skip_serializing_if = "Option::is_none")]
    pub gerrit: Option<GerritEvent>,
    /// Set for GitHub events.
    #[serde(rename = "GitHub", default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubEvent>,
}

/// A change on a Gerrit server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GerritEvent {
    /// The change's web address, such as
    /// `https://go-review.googlesource.com/39551`; its host names the server.
    #[serde(rename = "URL", default)]
    pub url: String,
    /// The Gerrit project, such as `go` or `net`.
    #[serde(rename = "Project", default)]
    pub project: String,
    /// The commit new or commented upon (never a meta ref's hash).
    #[serde(rename = "CommitHash", default)]
    pub commit_hash: String,
    /// The change number; 0 (and omitted) for ref updates.
    #[serde(rename = "ChangeNumber", default, skip_serializing_if = "is_zero")]
    pub change_number: i64,
}

/// An issue or pull request on GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubEvent {
    /// The webhook's `action` (`opened`, `edited`, `closed`, ...).
    #[serde(rename = "Action", default)]
    pub action: String,
    /// `golang` in `golang/go`.
    #[serde(rename = "RepoOwner", default)]
    pub repo_owner: String,
    /// `go` in `golang/go`.
    #[serde(rename = "Repo", default)]
    pub repo: String,
    /// The issue number, 0 (and omitted) for a pull request event.
    #[serde(rename = "IssueNumber", default, skip_serializing_if = "is_zero")]
    pub issue_number: i64,
    /// The pull request number, 0 (and omitted) for an issue event.
    #[serde(rename = "PullRequestNumber", default, skip_serializing_if = "is_zero")]
    pub pull_request_number: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Event {
    /// A GitHub event; its time is stamped when published.
    pub fn github(github: GitHubEvent) -> Event {
        Event {
            time: Time3339::now(),
            long_poll_timeout: false,
            gerrit: None,
            github: Some(github),
        }
    }

    /// A Gerrit event; its time is stamped when published.
    pub fn gerrit(gerrit: GerritEvent) -> Event {
        Event {
            time: Time3339::now(),
            long_poll_timeout: false,
            gerrit: Some(gerrit),
            github: None,
        }
    }

    /// The answer to a long-poll that saw nothing.
    pub fn long_poll_timeout(time: Time3339) -> Event {
        Event {
            time,
            long_poll_timeout: true,
            gerrit: None,
            github: None,
        }
    }

    /// The JSON Go's `json.MarshalIndent(e, "", "\t")` writes: tab indents,
    /// and `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u` sequences.
    pub fn to_go_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        self.serialize(&mut ser)
            .expect("an Event has only strings, numbers and bools");
        let text = String::from_utf8(out).expect("serde_json writes UTF-8");
        escape_like_go(text)
    }
}

/// Go's encoder escapes these even inside strings; they never occur in JSON
/// outside strings, so a plain replacement is exact.
fn escape_like_go(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

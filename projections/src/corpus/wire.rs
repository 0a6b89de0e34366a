//! Zero-copy reading of `maintpb.Mutation` records for the corpus fold.
//!
//! Loading a multi-GB log with prost allocates every string twice (decode,
//! then copy into the corpus) and frees them on another thread. Instead,
//! [`check`] walks a record once with the schema, validating exactly what
//! prost validates (wire types, lengths, UTF-8 of strings), and the fold
//! then reads [`MutationView`]s: borrowed slices of the record, parsed
//! lazily, with no allocation.
//!
//! Views assume canonical records: every singular message field at most
//! once. A record that repeats one (legal protobuf, which prost merges, but
//! never written by Go or us), or that carries farm events, is reported as
//! [`Check::NeedsCanonical`]; the loader then decodes it with prost and
//! re-encodes it, which yields the canonical form of the same message.

use prost::encoding::WireType;

use super::time::Time;

/// A malformed record, as prost would reject it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub &'static str);

/// The outcome of checking a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Views can read it as it is.
    Canonical,
    /// Valid, but decode with prost and re-encode before viewing it.
    NeedsCanonical,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
    /// A group, skipped (the schema has none: valid only for unknown
    /// fields).
    Group,
}

/// Iterates the fields of a message.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    /// A varint. Keys, lengths and most values fit one byte, and most
    /// lengths of texts two, so those cases take no loop and no call.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        match *self.buf {
            [b0, ref rest @ ..] if b0 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0))
            }
            [b0, b1, ref rest @ ..] if b1 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7))
            }
            _ => self.varint_long(),
        }
    }

    /// A varint of any length (timestamps' seconds take five bytes).
    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        if let Some(head) = self.buf.first_chunk::<10>() {
            // Ten bytes are there: no bounds check per byte.
            let mut v: u64 = 0;
            for (i, &b) in head.iter().enumerate() {
                v |= u64::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    if i == 9 && b > 1 {
                        return Err(WireError("invalid varint"));
                    }
                    self.buf = &self.buf[i + 1..];
                    return Ok(v);
                }
            }
            return Err(WireError("invalid varint"));
        }
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(WireError("buffer underflow"));
            };
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(WireError("invalid varint"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError("invalid varint"))
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError("buffer underflow"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A length-delimited value.
    #[inline(always)]
    fn len_prefixed(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError("buffer underflow"))?;
        self.take(len)
    }

    /// The next field: number, wire type and value. A group's contents are
    /// skipped, and it comes back as [`Value::Group`].
    /// Inlined: it runs for every field of every record, and the call
    /// itself cost as much as the work.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireType, Value<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let (wire_type, value) = match wire_type {
            0 => (WireType::Varint, Value::Varint(self.varint()?)),
            1 => {
                self.take(8)?;
                (WireType::SixtyFourBit, Value::Fixed64)
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError("buffer underflow"))?;
                (WireType::LengthDelimited, Value::Bytes(self.take(len)?))
            }
            3 => {
                self.skip_group(number, 0)?;
                (WireType::StartGroup, Value::Group)
            }
            4 => return Err(WireError("unexpected end group tag")),
            5 => {
                self.take(4)?;
                (WireType::ThirtyTwoBit, Value::Fixed32)
            }
            _ => return Err(WireError("invalid wire type value")),
        };
        Ok(Some((number, wire_type, value)))
    }

    /// A field's key: its number (never 0) and its wire type's bits.
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u64), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let number = (key >> 3) as u32;
        if number == 0 {
            return Err(WireError("invalid tag value: 0"));
        }
        Ok((number, key & 7))
    }

    fn skip_group(&mut self, number: u32, depth: u32) -> Result<(), WireError> {
        if depth > 100 {
            return Err(WireError("recursion limit reached"));
        }
        loop {
            if self.buf.is_empty() {
                return Err(WireError("buffer underflow"));
            }
            // Keys inside a group are checked as prost checks every key.
            let (n, wire_type) = self.key()?;
            match wire_type {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = self.varint()?;
                    self.take(usize::try_from(len).map_err(|_| WireError("buffer underflow"))?)?;
                }
                3 => self.skip_group(n, depth + 1)?,
                4 => {
                    if n != number {
                        return Err(WireError("unexpected end group tag"));
                    }
                    return Ok(());
                }
                5 => {
                    self.take(4)?;
                }
                _ => return Err(WireError("invalid wire type value")),
            }
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Value<'a>);

    /// For canonical (already checked) records: stops at the first error.
    /// Inlined into each loop over fields: as a call, its entry and exit
    /// cost as much as the walk itself.
    #[inline(always)]
    fn next(&mut self) -> Option<(u32, Value<'a>)> {
        loop {
            match self.next_field().ok().flatten()? {
                // Only unknown fields can be groups in a checked record.
                (_, _, Value::Group) => continue,
                (n, _, v) => return Some((n, v)),
            }
        }
    }
}

/// The kinds of field the schema has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Varint,
    String,
    Bytes,
    /// A singular embedded message.
    Msg(Schema),
    /// A repeated embedded message.
    RepMsg(Schema),
    /// Repeated varints, packed or not.
    RepVarint,
    RepString,
}

/// The messages of maintpb the corpus reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Mutation,
    GithubMutation,
    GithubIssueMutation,
    BoolChange,
    StringChange,
    GithubLabel,
    GithubMilestone,
    GithubIssueEvent,
    GithubDismissedReviewEvent,
    GithubCommit,
    GithubReview,
    GithubIssueSyncStatus,
    GithubIssueCommentMutation,
    GithubUser,
    GithubTeam,
    GitMutation,
    GitRepo,
    GitCommit,
    GitDiffTree,
    GitDiffTreeFile,
    GerritMutation,
    GitRef,
    Timestamp,
}

/// Every schema, in declaration order.
const SCHEMAS: [Schema; 23] = {
    use Schema as S;
    [
        S::Mutation,
        S::GithubMutation,
        S::GithubIssueMutation,
        S::BoolChange,
        S::StringChange,
        S::GithubLabel,
        S::GithubMilestone,
        S::GithubIssueEvent,
        S::GithubDismissedReviewEvent,
        S::GithubCommit,
        S::GithubReview,
        S::GithubIssueSyncStatus,
        S::GithubIssueCommentMutation,
        S::GithubUser,
        S::GithubTeam,
        S::GitMutation,
        S::GitRepo,
        S::GitCommit,
        S::GitDiffTree,
        S::GitDiffTreeFile,
        S::GerritMutation,
        S::GitRef,
        S::Timestamp,
    ]
};

/// Field numbers below this are looked up in [`FIELDS`].
const TABLED: u32 = 32;

/// [`field`] for every schema and field number below [`TABLED`]: fields
/// with one-byte keys go through [`KEY_ACTIONS`], and the rest (numbers
/// from 16, common in issue mutations) are looked up here, an index being
/// cheaper than the nested match.
static FIELDS: [[Option<Kind>; TABLED as usize]; SCHEMAS.len()] = {
    let mut table = [[None; TABLED as usize]; SCHEMAS.len()];
    let mut s = 0;
    while s < SCHEMAS.len() {
        let mut n = 0;
        while n < TABLED {
            table[s][n as usize] = field(SCHEMAS[s], n);
            n += 1;
        }
        s += 1;
    }
    table
};

/// The kind of field `n` of `schema`, through [`FIELDS`].
#[inline(always)]
fn field_kind(schema: Schema, n: u32) -> Option<Kind> {
    match FIELDS[schema as usize].get(n as usize) {
        Some(kind) => *kind,
        None => field(schema, n),
    }
}

/// What the check does with a field whose key is one byte (numbers below
/// 16, which are most fields of every record): the key byte alone settles
/// the field's kind and whether its wire type fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAction {
    /// A varint: a known varint field, or an unknown one.
    Varint,
    /// A string: length-delimited UTF-8.
    Str,
    /// Length-delimited bytes: a bytes field, or an unknown one.
    Bytes,
    /// A singular message.
    Msg(Schema),
    /// One element of a repeated message.
    RepMsg(Schema),
    /// Packed repeated varints.
    Packed,
    /// An unknown fixed-width field.
    Skip8,
    Skip4,
    /// An unknown group.
    SkipGroup,
    /// A known field with the wrong wire type (a group included).
    WrongType,
    /// Field number 0.
    ZeroTag,
    /// An end-group key with no group open.
    EndGroup,
    /// Wire type 6 or 7.
    BadWireType,
}

/// [`KeyAction`] for every schema and one-byte key.
static KEY_ACTIONS: [[KeyAction; 128]; SCHEMAS.len()] = {
    let mut table = [[KeyAction::BadWireType; 128]; SCHEMAS.len()];
    let mut s = 0;
    while s < SCHEMAS.len() {
        let mut key = 0;
        while key < 128 {
            table[s][key] = key_action(SCHEMAS[s], key as u8);
            key += 1;
        }
        s += 1;
    }
    table
};

const fn key_action(schema: Schema, key: u8) -> KeyAction {
    let (n, wire_type) = ((key >> 3) as u32, key & 7);
    if n == 0 {
        return KeyAction::ZeroTag;
    }
    match (wire_type, field(schema, n)) {
        (6 | 7, _) => KeyAction::BadWireType,
        (4, _) => KeyAction::EndGroup,
        (0, None) => KeyAction::Varint,
        (1, None) => KeyAction::Skip8,
        (2, None) => KeyAction::Bytes,
        (3, None) => KeyAction::SkipGroup,
        (5, None) => KeyAction::Skip4,
        (0, Some(Kind::Varint | Kind::RepVarint)) => KeyAction::Varint,
        (2, Some(Kind::RepVarint)) => KeyAction::Packed,
        (2, Some(Kind::String | Kind::RepString)) => KeyAction::Str,
        (2, Some(Kind::Bytes)) => KeyAction::Bytes,
        (2, Some(Kind::Msg(inner))) => KeyAction::Msg(inner),
        (2, Some(Kind::RepMsg(inner))) => KeyAction::RepMsg(inner),
        _ => KeyAction::WrongType,
    }
}

const fn field(schema: Schema, n: u32) -> Option<Kind> {
    use Kind::*;
    use Schema as S;
    Some(match (schema, n) {
        (S::Mutation, 1) => Msg(S::GithubIssueMutation),
        (S::Mutation, 2) => Msg(S::GitMutation),
        (S::Mutation, 3) => Msg(S::GithubMutation),
        (S::Mutation, 4) => Msg(S::GerritMutation),
        (S::GithubMutation, 1 | 2) => String,
        (S::GithubMutation, 3) => RepMsg(S::GithubLabel),
        (S::GithubMutation, 4) => RepMsg(S::GithubMilestone),
        (S::GithubIssueMutation, 1 | 2 | 7 | 9 | 18) => String,
        (S::GithubIssueMutation, 3 | 12 | 13 | 15 | 16 | 17 | 28) => Varint,
        (S::GithubIssueMutation, 4 | 22) => Msg(S::GithubUser),
        (S::GithubIssueMutation, 5 | 6 | 21) => Msg(S::Timestamp),
        (S::GithubIssueMutation, 8) => RepMsg(S::GithubIssueCommentMutation),
        (S::GithubIssueMutation, 10) => RepMsg(S::GithubUser),
        (S::GithubIssueMutation, 11 | 23) => RepVarint,
        (S::GithubIssueMutation, 14 | 27 | 30) => Msg(S::GithubIssueSyncStatus),
        (S::GithubIssueMutation, 19 | 25) => Msg(S::BoolChange),
        (S::GithubIssueMutation, 24) => RepMsg(S::GithubLabel),
        (S::GithubIssueMutation, 26) => RepMsg(S::GithubIssueEvent),
        (S::GithubIssueMutation, 29) => RepMsg(S::GithubReview),
        (S::GithubIssueMutation, 31) => Msg(S::StringChange),
        (S::BoolChange, 1) => Varint,
        (S::StringChange, 1) => String,
        (S::GithubLabel, 1) => Varint,
        (S::GithubLabel, 2) => String,
        (S::GithubMilestone, 1 | 4) => Varint,
        (S::GithubMilestone, 2) => String,
        (S::GithubMilestone, 3) => Msg(S::BoolChange),
        (S::GithubIssueEvent, 1 | 3 | 7 | 8 | 13 | 14) => Varint,
        (S::GithubIssueEvent, 2 | 11 | 12) => String,
        (S::GithubIssueEvent, 4) => Msg(S::Timestamp),
        (S::GithubIssueEvent, 5) => Msg(S::GithubLabel),
        (S::GithubIssueEvent, 6) => Msg(S::GithubMilestone),
        (S::GithubIssueEvent, 9) => Msg(S::GithubCommit),
        (S::GithubIssueEvent, 10) => Bytes,
        (S::GithubIssueEvent, 15) => Msg(S::GithubDismissedReviewEvent),
        (S::GithubIssueEvent, 16) => Msg(S::GithubTeam),
        (S::GithubDismissedReviewEvent, 1) => Varint,
        (S::GithubDismissedReviewEvent, 3 | 4) => String,
        (S::GithubCommit, 1..=3) => String,
        (S::GithubReview, 1 | 2) => Varint,
        (S::GithubReview, 3) => Msg(S::Timestamp),
        (S::GithubReview, 4..=7) => String,
        (S::GithubReview, 8) => Bytes,
        (S::GithubIssueSyncStatus, 1) => Msg(S::Timestamp),
        (S::GithubIssueCommentMutation, 1) => Varint,
        (S::GithubIssueCommentMutation, 2) => Msg(S::GithubUser),
        (S::GithubIssueCommentMutation, 3) => String,
        (S::GithubIssueCommentMutation, 4 | 5) => Msg(S::Timestamp),
        (S::GithubUser | S::GithubTeam, 1) => Varint,
        (S::GithubUser | S::GithubTeam, 2) => String,
        (S::GitMutation, 1) => Msg(S::GitRepo),
        (S::GitMutation, 2) => Msg(S::GitCommit),
        (S::GitMutation, 100) => RepMsg(S::GitRef),
        (S::GitMutation, 101) => RepString,
        (S::GitRepo, 1) => String,
        (S::GitCommit, 1) => String,
        (S::GitCommit, 2) => Bytes,
        (S::GitCommit, 3) => Msg(S::GitDiffTree),
        (S::GitDiffTree, 1) => RepMsg(S::GitDiffTreeFile),
        (S::GitDiffTreeFile, 1) => String,
        (S::GitDiffTreeFile, 2..=4) => Varint,
        (S::GerritMutation, 1) => String,
        (S::GerritMutation, 2) => RepMsg(S::GitCommit),
        (S::GerritMutation, 3) => RepMsg(S::GitRef),
        (S::GerritMutation, 4) => RepString,
        (S::GitRef, 1 | 2) => String,
        (S::Timestamp, 1 | 2) => Varint,
        _ => return None,
    })
}

/// Checks a record as prost would decode it.
pub fn check(payload: &[u8]) -> Result<Check, WireError> {
    let mut canonical = true;
    check_message(payload, Schema::Mutation, 0, &mut canonical)?;
    Ok(if canonical {
        Check::Canonical
    } else {
        Check::NeedsCanonical
    })
}

fn check_message(
    buf: &[u8],
    schema: Schema,
    depth: u32,
    canonical: &mut bool,
) -> Result<(), WireError> {
    if depth > 100 {
        return Err(WireError("recursion limit reached"));
    }
    let mut seen: u64 = 0;
    let mut fields = Fields::new(buf);
    let actions = &KEY_ACTIONS[schema as usize];
    while let Some(&key) = fields.buf.first() {
        if key < 0x80 {
            fields.buf = &fields.buf[1..];
            match actions[usize::from(key)] {
                KeyAction::Varint => {
                    fields.varint()?;
                }
                KeyAction::Str => {
                    if !is_utf8(fields.len_prefixed()?) {
                        return Err(WireError("invalid string value: data is not UTF-8 encoded"));
                    }
                }
                KeyAction::Bytes => {
                    fields.len_prefixed()?;
                }
                KeyAction::Msg(inner) => {
                    let bit = 1u64 << (key >> 3);
                    if seen & bit != 0 {
                        *canonical = false;
                    }
                    seen |= bit;
                    check_message(fields.len_prefixed()?, inner, depth + 1, canonical)?;
                }
                KeyAction::RepMsg(inner) => {
                    check_message(fields.len_prefixed()?, inner, depth + 1, canonical)?;
                }
                KeyAction::Packed => {
                    let mut packed = Fields::new(fields.len_prefixed()?);
                    while !packed.buf.is_empty() {
                        packed.varint()?;
                    }
                }
                KeyAction::Skip8 => {
                    Fields::take(&mut fields, 8)?;
                }
                KeyAction::Skip4 => {
                    Fields::take(&mut fields, 4)?;
                }
                KeyAction::SkipGroup => fields.skip_group(u32::from(key >> 3), 0)?,
                KeyAction::WrongType => return Err(WireError("invalid wire type")),
                KeyAction::ZeroTag => return Err(WireError("invalid tag value: 0")),
                KeyAction::EndGroup => return Err(WireError("unexpected end group tag")),
                KeyAction::BadWireType => return Err(WireError("invalid wire type value")),
            }
            continue;
        }
        // A key of two bytes or more: field numbers from 16 on.
        let Some((n, wt, value)) = fields.next_field()? else {
            break;
        };
        let Some(kind) = field_kind(schema, n) else {
            // Farm events (fields 100 to 103) are outside the corpus's
            // schema: let prost validate them.
            if schema == Schema::Mutation && (100..=103).contains(&n) {
                *canonical = false;
            }
            continue;
        };
        // A known field never has the group wire type (prost refuses it;
        // groups are skipped only as unknown fields).
        if wt == WireType::StartGroup {
            return Err(WireError("invalid wire type"));
        }
        fn bytes(v: Value<'_>) -> Result<&[u8], WireError> {
            match v {
                Value::Bytes(b) => Ok(b),
                _ => Err(WireError("invalid wire type")),
            }
        }
        match kind {
            Kind::Varint => {
                if wt != WireType::Varint {
                    return Err(WireError("invalid wire type"));
                }
            }
            Kind::String | Kind::RepString => {
                if !is_utf8(bytes(value)?) {
                    return Err(WireError("invalid string value: data is not UTF-8 encoded"));
                }
            }
            Kind::Bytes => {
                bytes(value)?;
            }
            Kind::Msg(inner) => {
                let b = bytes(value)?;
                if n < 64 {
                    if seen & (1 << n) != 0 {
                        *canonical = false;
                    }
                    seen |= 1 << n;
                }
                check_message(b, inner, depth + 1, canonical)?;
            }
            Kind::RepMsg(inner) => check_message(bytes(value)?, inner, depth + 1, canonical)?,
            Kind::RepVarint => match value {
                Value::Varint(_) => {}
                Value::Bytes(packed) => {
                    let mut f = Fields::new(packed);
                    while !f.buf.is_empty() {
                        f.varint()?;
                    }
                }
                _ => return Err(WireError("invalid wire type")),
            },
        }
    }
    Ok(())
}

/// Whether `b` is UTF-8. Bodies are most of a log's bytes, and the SIMD
/// check is several times faster than the standard one on them; most other
/// strings are short ASCII (logins, names, hashes), which a word-wide test
/// settles before either.
#[inline]
fn is_utf8(b: &[u8]) -> bool {
    if b.len() < 64 {
        b.is_ascii() || std::str::from_utf8(b).is_ok()
    } else {
        simdutf8::basic::from_utf8(b).is_ok()
    }
}

// ---------------------------------------------------------------------------
// Views over checked, canonical records.

fn as_bytes(v: Value<'_>) -> &[u8] {
    match v {
        Value::Bytes(b) => b,
        _ => b"",
    }
}

fn as_varint(v: Value<'_>) -> u64 {
    match v {
        Value::Varint(x) => x,
        _ => 0,
    }
}

/// A `google.protobuf.Timestamp` as a corpus time.
fn timestamp(buf: &[u8]) -> Time {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for (n, v) in Fields::new(buf) {
        match n {
            1 => seconds = as_varint(v) as i64,
            2 => nanos = as_varint(v) as i32,
            _ => {}
        }
    }
    Time::from_proto(&prost_types::Timestamp { seconds, nanos })
}

/// A bool wrapper (`BoolChange`).
fn bool_change(buf: &[u8]) -> bool {
    Fields::new(buf).fold(
        false,
        |acc, (n, v)| if n == 1 { as_varint(v) != 0 } else { acc },
    )
}

/// The last occurrence of a string field.
fn string_field(buf: &[u8], number: u32) -> &[u8] {
    Fields::new(buf).fold(
        &b""[..],
        |acc, (n, v)| if n == number { as_bytes(v) } else { acc },
    )
}

/// Every occurrence of a length-delimited field.
fn repeated(buf: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(buf)
        .filter(move |(n, _)| *n == number)
        .map(|(_, v)| as_bytes(v))
}

/// Every value of a repeated varint field, packed or not.
fn repeated_varint(buf: &[u8], number: u32) -> impl Iterator<Item = u64> + '_ {
    Fields::new(buf)
        .filter(move |(n, _)| *n == number)
        .flat_map(|(_, v)| {
            let (single, packed) = match v {
                Value::Varint(x) => (Some(x), &b""[..]),
                Value::Bytes(b) => (None, b),
                _ => (None, &b""[..]),
            };
            let mut f = Fields::new(packed);
            single.into_iter().chain(std::iter::from_fn(move || {
                if f.buf.is_empty() {
                    None
                } else {
                    f.varint().ok()
                }
            }))
        })
}

/// A GitHub user.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserView<'a> {
    /// Id.
    pub id: i64,
    /// Login.
    pub login: &'a [u8],
}

fn user(buf: &[u8]) -> UserView<'_> {
    let mut u = UserView::default();
    for (n, v) in Fields::new(buf) {
        match n {
            1 => u.id = as_varint(v) as i64,
            2 => u.login = as_bytes(v),
            _ => {}
        }
    }
    u
}

/// A top-level mutation.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutationView<'a> {
    /// Field 1.
    pub github_issue: Option<IssueView<'a>>,
    /// Field 2.
    pub git: Option<GitView<'a>>,
    /// Field 3.
    pub github: Option<RepoView<'a>>,
    /// Field 4.
    pub gerrit: Option<GerritView<'a>>,
}

impl<'a> MutationView<'a> {
    /// Views a checked, canonical record.
    pub fn parse(buf: &'a [u8]) -> MutationView<'a> {
        let mut m = MutationView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                1 => m.github_issue = Some(IssueView::parse(as_bytes(v))),
                2 => m.git = Some(GitView::parse(as_bytes(v))),
                3 => m.github = Some(RepoView { buf: as_bytes(v) }),
                4 => m.gerrit = Some(GerritView::parse(as_bytes(v))),
                _ => {}
            }
        }
        m
    }

    /// Views only the parts that carry commits (git and Gerrit), leaving
    /// GitHub's unparsed: what the loader's decoding thread needs.
    pub fn parse_commit_parts(buf: &'a [u8]) -> MutationView<'a> {
        let mut m = MutationView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                2 => m.git = Some(GitView::parse(as_bytes(v))),
                4 => m.gerrit = Some(GerritView::parse(as_bytes(v))),
                _ => {}
            }
        }
        m
    }
}

/// `GithubMutation`: labels and milestones of a repo.
#[derive(Debug, Clone, Copy)]
pub struct RepoView<'a> {
    buf: &'a [u8],
}

/// A label.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelView<'a> {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: &'a [u8],
}

fn label(buf: &[u8]) -> LabelView<'_> {
    let mut l = LabelView::default();
    for (n, v) in Fields::new(buf) {
        match n {
            1 => l.id = as_varint(v) as i64,
            2 => l.name = as_bytes(v),
            _ => {}
        }
    }
    l
}

/// A milestone.
#[derive(Debug, Clone, Copy, Default)]
pub struct MilestoneView<'a> {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: &'a [u8],
    /// Closed, when present.
    pub closed: Option<bool>,
    /// Number.
    pub number: i64,
}

fn milestone(buf: &[u8]) -> MilestoneView<'_> {
    let mut m = MilestoneView::default();
    for (n, v) in Fields::new(buf) {
        match n {
            1 => m.id = as_varint(v) as i64,
            2 => m.title = as_bytes(v),
            3 => m.closed = Some(bool_change(as_bytes(v))),
            4 => m.number = as_varint(v) as i64,
            _ => {}
        }
    }
    m
}

impl<'a> RepoView<'a> {
    /// Owner.
    pub fn owner(&self) -> &'a [u8] {
        string_field(self.buf, 1)
    }

    /// Repo.
    pub fn repo(&self) -> &'a [u8] {
        string_field(self.buf, 2)
    }

    /// Labels.
    pub fn labels(&self) -> impl Iterator<Item = LabelView<'a>> {
        repeated(self.buf, 3).map(label)
    }

    /// Milestones.
    pub fn milestones(&self) -> impl Iterator<Item = MilestoneView<'a>> {
        repeated(self.buf, 4).map(milestone)
    }
}

/// `GithubIssueMutation`, with its singular fields parsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct IssueView<'a> {
    buf: &'a [u8],
    /// Bit `n` set when repeated field `n` occurs (so absent ones are not
    /// scanned for).
    present: u32,
    /// 1.
    pub owner: &'a [u8],
    /// 2.
    pub repo: &'a [u8],
    /// 3.
    pub number: i32,
    /// 4.
    pub user: Option<UserView<'a>>,
    /// 5.
    pub created: Option<Time>,
    /// 6.
    pub updated: Option<Time>,
    /// 7.
    pub body: &'a [u8],
    /// 9.
    pub title: &'a [u8],
    /// 12.
    pub id: i64,
    /// 13.
    pub not_exist: bool,
    /// 14.
    pub comment_status: Option<Time>,
    /// 15.
    pub no_milestone: bool,
    /// 16.
    pub milestone_id: i64,
    /// 17.
    pub milestone_num: i64,
    /// 18.
    pub milestone_title: &'a [u8],
    /// 19.
    pub closed: Option<bool>,
    /// 21.
    pub closed_at: Option<Time>,
    /// 22.
    pub closed_by: Option<UserView<'a>>,
    /// 25.
    pub locked: Option<bool>,
    /// 27.
    pub event_status: Option<Time>,
    /// 28.
    pub pull_request: bool,
    /// 30.
    pub review_status: Option<Time>,
    /// 31.
    pub body_change: Option<&'a [u8]>,
}

/// A sync status's server date, if present.
fn sync_status(buf: &[u8]) -> Option<Time> {
    Fields::new(buf)
        .filter(|(n, _)| *n == 1)
        .last()
        .map(|(_, v)| timestamp(as_bytes(v)))
}

impl<'a> IssueView<'a> {
    fn parse(buf: &'a [u8]) -> IssueView<'a> {
        let mut m = IssueView {
            buf,
            ..IssueView::default()
        };
        for (n, v) in Fields::new(buf) {
            if n < 32 {
                m.present |= 1 << n;
            }
            match n {
                1 => m.owner = as_bytes(v),
                2 => m.repo = as_bytes(v),
                3 => m.number = as_varint(v) as i32,
                4 => m.user = Some(user(as_bytes(v))),
                5 => m.created = Some(timestamp(as_bytes(v))),
                6 => m.updated = Some(timestamp(as_bytes(v))),
                7 => m.body = as_bytes(v),
                9 => m.title = as_bytes(v),
                12 => m.id = as_varint(v) as i64,
                13 => m.not_exist = as_varint(v) != 0,
                14 => m.comment_status = sync_status(as_bytes(v)),
                15 => m.no_milestone = as_varint(v) != 0,
                16 => m.milestone_id = as_varint(v) as i64,
                17 => m.milestone_num = as_varint(v) as i64,
                18 => m.milestone_title = as_bytes(v),
                19 => m.closed = Some(bool_change(as_bytes(v))),
                21 => m.closed_at = Some(timestamp(as_bytes(v))),
                22 => m.closed_by = Some(user(as_bytes(v))),
                25 => m.locked = Some(bool_change(as_bytes(v))),
                27 => m.event_status = sync_status(as_bytes(v)),
                28 => m.pull_request = as_varint(v) != 0,
                30 => m.review_status = sync_status(as_bytes(v)),
                31 => m.body_change = Some(string_field(as_bytes(v), 1)),
                _ => {}
            }
        }
        m
    }

    /// The message bytes if repeated field `n` occurs, else nothing to scan.
    fn scan(&self, n: u32) -> &'a [u8] {
        if self.present & (1 << n) != 0 {
            self.buf
        } else {
            b""
        }
    }

    /// 8: comments.
    pub fn comments(&self) -> impl Iterator<Item = CommentView<'a>> {
        repeated(self.scan(8), 8).map(CommentView::parse)
    }

    /// 10: assignees.
    pub fn assignees(&self) -> impl Iterator<Item = UserView<'a>> {
        repeated(self.scan(10), 10).map(user)
    }

    /// 11: user ids to unassign.
    pub fn deleted_assignees(&self) -> impl Iterator<Item = i64> + 'a {
        repeated_varint(self.scan(11), 11).map(|v| v as i64)
    }

    /// 23: label ids to remove.
    pub fn remove_labels(&self) -> impl Iterator<Item = i64> + 'a {
        repeated_varint(self.scan(23), 23).map(|v| v as i64)
    }

    /// 24: labels to add.
    pub fn add_labels(&self) -> impl Iterator<Item = LabelView<'a>> {
        repeated(self.scan(24), 24).map(label)
    }

    /// 26: events.
    pub fn events(&self) -> impl Iterator<Item = EventView<'a>> {
        repeated(self.scan(26), 26).map(EventView::parse)
    }

    /// 29: reviews.
    pub fn reviews(&self) -> impl Iterator<Item = ReviewView<'a>> {
        repeated(self.scan(29), 29).map(ReviewView::parse)
    }
}

/// A comment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentView<'a> {
    /// 1.
    pub id: i64,
    /// 2.
    pub user: Option<UserView<'a>>,
    /// 3.
    pub body: &'a [u8],
    /// 4.
    pub created: Option<Time>,
    /// 5.
    pub updated: Option<Time>,
}

impl<'a> CommentView<'a> {
    fn parse(buf: &'a [u8]) -> CommentView<'a> {
        let mut c = CommentView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                1 => c.id = as_varint(v) as i64,
                2 => c.user = Some(user(as_bytes(v))),
                3 => c.body = as_bytes(v),
                4 => c.created = Some(timestamp(as_bytes(v))),
                5 => c.updated = Some(timestamp(as_bytes(v))),
                _ => {}
            }
        }
        c
    }
}

/// An event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventView<'a> {
    /// 1.
    pub id: i64,
    /// 2.
    pub event_type: &'a [u8],
    /// 3.
    pub actor_id: i64,
    /// 4.
    pub created: Option<Time>,
    /// 5: the label's name, when the label is present.
    pub label: Option<&'a [u8]>,
    /// 6: the milestone's title, when present.
    pub milestone: Option<&'a [u8]>,
    /// 7.
    pub assignee_id: i64,
    /// 8.
    pub assigner_id: i64,
    /// 9: owner, repo, commit id.
    pub commit: Option<(&'a [u8], &'a [u8], &'a [u8])>,
    /// 11.
    pub rename_from: &'a [u8],
    /// 12.
    pub rename_to: &'a [u8],
    /// 13.
    pub reviewer_id: i64,
    /// 14.
    pub review_requester_id: i64,
    /// 15: review id, dismissal message, state.
    pub dismissed_review: Option<(i64, &'a [u8], &'a [u8])>,
    /// 16.
    pub team_reviewer: Option<UserView<'a>>,
}

impl<'a> EventView<'a> {
    fn parse(buf: &'a [u8]) -> EventView<'a> {
        let mut e = EventView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                1 => e.id = as_varint(v) as i64,
                2 => e.event_type = as_bytes(v),
                3 => e.actor_id = as_varint(v) as i64,
                4 => e.created = Some(timestamp(as_bytes(v))),
                5 => e.label = Some(label(as_bytes(v)).name),
                6 => e.milestone = Some(milestone(as_bytes(v)).title),
                7 => e.assignee_id = as_varint(v) as i64,
                8 => e.assigner_id = as_varint(v) as i64,
                9 => {
                    let b = as_bytes(v);
                    e.commit = Some((string_field(b, 1), string_field(b, 2), string_field(b, 3)));
                }
                11 => e.rename_from = as_bytes(v),
                12 => e.rename_to = as_bytes(v),
                13 => e.reviewer_id = as_varint(v) as i64,
                14 => e.review_requester_id = as_varint(v) as i64,
                15 => {
                    let b = as_bytes(v);
                    let id = Fields::new(b).fold(
                        0,
                        |acc, (n, v)| if n == 1 { as_varint(v) as i64 } else { acc },
                    );
                    e.dismissed_review = Some((id, string_field(b, 3), string_field(b, 4)));
                }
                16 => e.team_reviewer = Some(user(as_bytes(v))),
                _ => {}
            }
        }
        e
    }
}

/// A review.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReviewView<'a> {
    /// 1.
    pub id: i64,
    /// 2.
    pub actor_id: i64,
    /// 3.
    pub created: Option<Time>,
    /// 4.
    pub body: &'a [u8],
    /// 5.
    pub state: &'a [u8],
    /// 6.
    pub commit_id: &'a [u8],
    /// 7.
    pub actor_association: &'a [u8],
    /// 8.
    pub other_json: &'a [u8],
}

impl<'a> ReviewView<'a> {
    fn parse(buf: &'a [u8]) -> ReviewView<'a> {
        let mut r = ReviewView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                1 => r.id = as_varint(v) as i64,
                2 => r.actor_id = as_varint(v) as i64,
                3 => r.created = Some(timestamp(as_bytes(v))),
                4 => r.body = as_bytes(v),
                5 => r.state = as_bytes(v),
                6 => r.commit_id = as_bytes(v),
                7 => r.actor_association = as_bytes(v),
                8 => r.other_json = as_bytes(v),
                _ => {}
            }
        }
        r
    }
}

/// `GitMutation`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitView<'a> {
    /// The commit, if any.
    pub commit: Option<CommitView<'a>>,
    buf: &'a [u8],
}

impl<'a> GitView<'a> {
    fn parse(buf: &'a [u8]) -> GitView<'a> {
        let commit = Fields::new(buf)
            .filter(|(n, _)| *n == 2)
            .last()
            .map(|(_, v)| CommitView::parse(as_bytes(v)));
        GitView { commit, buf }
    }

    /// 1: `GitRepo.go_repo`.
    pub fn repo_name(&self) -> &'a [u8] {
        Fields::new(self.buf)
            .filter(|(n, _)| *n == 1)
            .last()
            .map_or(&b""[..], |(_, v)| string_field(as_bytes(v), 1))
    }

    /// 100: refs (almanac's extension), as (name, hex).
    pub fn refs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        repeated(self.buf, 100).map(|b| (string_field(b, 1), string_field(b, 2)))
    }

    /// 101: deleted ref names (almanac's extension).
    pub fn deleted_refs(&self) -> impl Iterator<Item = &'a [u8]> {
        repeated(self.buf, 101)
    }
}

/// A raw git commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitView<'a> {
    /// 1: 40 hex digits.
    pub sha1: &'a [u8],
    /// 2: `git cat-file commit` output.
    pub raw: &'a [u8],
    diff_tree: Option<&'a [u8]>,
}

/// One diff-tree line.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileView<'a> {
    /// Path.
    pub file: &'a [u8],
    /// Lines added.
    pub added: i64,
    /// Lines deleted.
    pub deleted: i64,
    /// Binary.
    pub binary: bool,
}

impl<'a> CommitView<'a> {
    fn parse(buf: &'a [u8]) -> CommitView<'a> {
        let mut c = CommitView::default();
        for (n, v) in Fields::new(buf) {
            match n {
                1 => c.sha1 = as_bytes(v),
                2 => c.raw = as_bytes(v),
                3 => c.diff_tree = Some(as_bytes(v)),
                _ => {}
            }
        }
        c
    }

    /// The diff tree's files, if the commit has a diff tree.
    pub fn files(&self) -> Option<impl Iterator<Item = FileView<'a>>> {
        self.diff_tree.map(|dt| {
            repeated(dt, 1).map(|b| {
                let mut f = FileView::default();
                for (n, v) in Fields::new(b) {
                    match n {
                        1 => f.file = as_bytes(v),
                        2 => f.added = as_varint(v) as i64,
                        3 => f.deleted = as_varint(v) as i64,
                        4 => f.binary = as_varint(v) != 0,
                        _ => {}
                    }
                }
                f
            })
        })
    }
}

/// `GerritMutation`, with its project and which fields occur.
#[derive(Debug, Clone, Copy)]
pub struct GerritView<'a> {
    buf: &'a [u8],
    project: &'a [u8],
    present: u32,
}

impl<'a> GerritView<'a> {
    fn parse(buf: &'a [u8]) -> GerritView<'a> {
        let mut g = GerritView {
            buf,
            project: b"",
            present: 0,
        };
        for (n, v) in Fields::new(buf) {
            if n < 32 {
                g.present |= 1 << n;
            }
            if n == 1 {
                g.project = as_bytes(v);
            }
        }
        g
    }

    fn scan(&self, n: u32) -> &'a [u8] {
        if self.present & (1 << n) != 0 {
            self.buf
        } else {
            b""
        }
    }

    /// The project (`host/project`).
    pub fn project(&self) -> &'a [u8] {
        self.project
    }

    /// Commits.
    pub fn commits(&self) -> impl Iterator<Item = CommitView<'a>> {
        repeated(self.scan(2), 2).map(CommitView::parse)
    }

    /// Refs: name and sha1.
    pub fn refs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        repeated(self.scan(3), 3).map(|b| (string_field(b, 1), string_field(b, 2)))
    }

    /// Deleted refs.
    pub fn deleted_refs(&self) -> impl Iterator<Item = &'a [u8]> {
        repeated(self.scan(4), 4)
    }
}

#[cfg(test)]
mod tests;

//! Text parsing of Gerrit NoteDB meta commits and commit messages, ported
//! from Go maintner's ad-hoc rules with their quirks (spec/maintner.md
//! "Hard parts" 8). Everything works on bytes, as Go's strings do.

/// Go's `strings.TrimSpace`: trims Unicode white space at both ends; bytes
/// that are not valid UTF-8 are not space.
pub fn trim_space(mut s: &[u8]) -> &[u8] {
    while let Some((c, n)) = first_char(s) {
        if !c.is_whitespace() {
            break;
        }
        s = &s[n..];
    }
    while let Some((c, n)) = last_char(s) {
        if !c.is_whitespace() {
            break;
        }
        s = &s[..s.len() - n];
    }
    s
}

fn first_char(s: &[u8]) -> Option<(char, usize)> {
    let n = match *s.first()? {
        b if b < 0x80 => return Some((b as char, 1)),
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        b if b >= 0xc0 => 2,
        _ => return None,
    };
    let c = std::str::from_utf8(s.get(..n)?).ok()?.chars().next()?;
    Some((c, n))
}

fn last_char(s: &[u8]) -> Option<(char, usize)> {
    if let Some(&b) = s.last()
        && b < 0x80
    {
        return Some((b as char, 1));
    }
    for n in 1..=4.min(s.len()) {
        if let Ok(t) = std::str::from_utf8(&s[s.len() - n..]) {
            let c = t.chars().next()?;
            return (c.len_utf8() == n).then_some((c, n));
        }
    }
    None
}

/// Finds `needle` in `haystack`.
///
/// The needles here are short and fixed; scanning for the first byte with
/// `memchr` and comparing the rest beats building a searcher per call.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &haystack[from..]) {
        let at = from + i;
        if haystack[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A fixed needle whose searcher is built once per process. A meta commit
/// is searched for several needles that mostly start with `\n`: scanning
/// for the first byte stops at every line, while `memmem`'s prefilter
/// jumps between occurrences of the needle's rarest bytes.
pub(crate) struct Needle {
    bytes: &'static [u8],
    finder: std::sync::OnceLock<memchr::memmem::Finder<'static>>,
}

impl Needle {
    pub(crate) const fn new(bytes: &'static [u8]) -> Needle {
        Needle {
            bytes,
            finder: std::sync::OnceLock::new(),
        }
    }

    /// The needle's length.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Where the needle first occurs, as [`find`] says.
    pub(crate) fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.finder
            .get_or_init(|| memchr::memmem::Finder::new(self.bytes))
            .find(haystack)
    }

    /// [`line_value`] with this needle as the prefix.
    pub(crate) fn line_value<'a>(&self, all: &'a [u8]) -> &'a [u8] {
        line_value_ok_by(all, self.len(), |hay| self.find(hay)).0
    }
}

static STATUS: Needle = Needle::new(b"\nStatus: ");
static PATCH_SET: Needle = Needle::new(b"\nPatch Set ");
static UPLOADED_PATCH_SET: Needle = Needle::new(b"\nUploaded patch set ");
static LABEL: Needle = Needle::new(b"\nLabel: ");
static PRIVATE: Needle = Needle::new(b"\nPrivate: true\n");
static PATCH_SET_FOOTER: Needle = Needle::new(b"\nPatch-set:");
static WORK_IN_PROGRESS: Needle = Needle::new(b"Work-in-progress:");
static BRANCH: Needle = Needle::new(b"Branch:");
pub(crate) static REVIEWER: Needle = Needle::new(b"Reviewer: ");

/// Go's `lineValueOK`: the value of the first line starting with `prefix`
/// (at offset 0 or after `\n` or `\r`), trimmed; the text after that line;
/// and whether it was found. An occurrence that is not at a line start is
/// skipped, and an occurrence right after a skipped one counts as a line
/// start (Go's quirk).
pub fn line_value_ok<'a>(all: &'a [u8], prefix: &[u8]) -> (&'a [u8], &'a [u8], bool) {
    line_value_ok_by(all, prefix.len(), |hay| find(hay, prefix))
}

/// [`line_value_ok`] with the prefix's search given.
fn line_value_ok_by(
    all: &[u8],
    prefix_len: usize,
    find_prefix: impl Fn(&[u8]) -> Option<usize>,
) -> (&[u8], &[u8], bool) {
    let orig = all;
    let mut all = all;
    let mut consumed = 0usize;
    loop {
        let Some(i) = find_prefix(all) else {
            return (b"", b"", false);
        };
        if i > 0 && all[i - 1] != b'\n' && all[i - 1] != b'\r' {
            let skip = i + prefix_len;
            all = &all[skip..];
            consumed += skip;
            continue;
        }
        let mut val = &all[i + prefix_len..];
        consumed += i + prefix_len;
        match memchr::memchr(b'\n', val) {
            Some(nl) => {
                val = &val[..=nl];
                consumed += nl + 1;
            }
            None => consumed = orig.len(),
        }
        return (trim_space(val), &orig[consumed..], true);
    }
}

/// Go's `lineValue`.
pub fn line_value<'a>(all: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    line_value_ok(all, prefix).0
}

/// Go's `lineValueRest`.
pub fn line_value_rest<'a>(all: &'a [u8], prefix: &[u8]) -> (&'a [u8], &'a [u8]) {
    let (v, rest, _) = line_value_ok(all, prefix);
    (v, rest)
}

/// Go's `getGerritStatus`: after the first `\nStatus: `, the first of
/// `merged`, `abandoned`, `draft`, `new` that is a prefix of the rest.
pub fn gerrit_status(msg: &[u8]) -> Option<&'static str> {
    let i = STATUS.find(msg)?;
    let rest = &msg[i + STATUS.len()..];
    ["merged", "abandoned", "draft", "new"]
        .into_iter()
        .find(|s| rest.starts_with(s.as_bytes()))
}

/// A review message found in a meta commit: its patch set and the byte
/// range of the text within the commit message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    /// The patch set number.
    pub version: i32,
    /// Start of the message text in the commit message.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
}

/// Go's `getGerritMessage`: the earlier of `\nPatch Set ` and `\nUploaded
/// patch set `, a patch-set number up to the next `:` (no `\n` or `.` in
/// it), and the text from the phrase up to the `Patch-set:` line minus two
/// bytes. The `Patch-set:` line must end with `\n`.
pub fn gerrit_message(msg: &[u8]) -> Option<MessageSpan> {
    let exist = PATCH_SET.find(msg).map(|i| (i, PATCH_SET.len()));
    // Only an upload phrase that starts before the first `\nPatch Set `
    // matters: search no further.
    let upload_within = match exist {
        Some((i, _)) => &msg[..msg.len().min(i + UPLOADED_PATCH_SET.len())],
        None => msg,
    };
    let new = UPLOADED_PATCH_SET
        .find(upload_within)
        .map(|i| (i, UPLOADED_PATCH_SET.len()));
    let (start, phrase_len) = match (exist, new) {
        (None, None) => return None,
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
    };
    let num_start = start + phrase_len;
    let colon = msg[num_start..].iter().position(|&b| b == b':')?;
    let num = &msg[num_start..num_start + colon];
    if num.contains(&b'\n') || num.contains(&b'.') {
        return None;
    }
    let version = parse_go_i32(num)?;
    let start = start + 1;
    let mut l = 0usize;
    loop {
        let rest = &msg[start + l..];
        let nl = memchr::memchr(b'\n', rest)?;
        let line = &rest[..nl];
        if line.starts_with(b"Patch-set:") {
            let end = (start + l).checked_sub(2)?;
            if end < start {
                return None;
            }
            return Some(MessageSpan {
                version,
                start,
                end,
            });
        }
        l += nl + 1;
    }
}

fn parse_go_i32(s: &[u8]) -> Option<i32> {
    super::git::parse_go_int(s).and_then(|v| i32::try_from(v).ok())
}

/// What deriving a CL needs from one NoteDB meta commit's message,
/// computed once when the commit is folded so that CL derivation never
/// reads the text again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoteFacts {
    /// The message has a `\nLabel: ` line (a label change).
    pub label: bool,
    /// The message says `\nPrivate: true\n`.
    pub private: bool,
    /// The status after the first `\nStatus: `, if any.
    pub status: Option<&'static str>,
    /// The review message, if any.
    pub message: Option<MessageSpan>,
    /// The first `Branch:` value, as written, interned by the fold (empty
    /// if none).
    pub branch: super::text::Sym,
    /// The first `Work-in-progress:` value: `Some(true)`, `Some(false)`, or
    /// `None` when absent or neither.
    pub wip: Option<bool>,
}

impl NoteFacts {
    /// The facts of a commit message, interning the branch.
    pub fn of(msg: &[u8], syms: &mut super::text::Interner) -> NoteFacts {
        let (mut facts, branch) = NoteFacts::of_raw(msg);
        facts.branch = syms.intern(branch);
        facts
    }

    /// The facts, with the branch left as the bytes of the message (the
    /// `branch` field empty), for parsing off the folding thread.
    pub fn of_raw(msg: &[u8]) -> (NoteFacts, &[u8]) {
        let facts = NoteFacts {
            branch: super::text::Sym::default(),
            label: LABEL.find(msg).is_some(),
            private: PRIVATE.find(msg).is_some(),
            status: gerrit_status(msg),
            message: gerrit_message(msg),
            wip: match WORK_IN_PROGRESS.line_value(msg) {
                b"true" => Some(true),
                b"false" => Some(false),
                _ => None,
            },
        };
        (facts, BRANCH.line_value(msg))
    }

    /// Whether a message may be a NoteDB meta commit worth precomputing:
    /// Gerrit writes a `Patch-set:` footer on every one.
    pub fn worth_computing(msg: &[u8]) -> bool {
        PATCH_SET_FOOTER.find(msg).is_some()
    }
}

/// Go's `GerritMeta.Footer()`: the text after the last `\n\n`.
pub fn footer(msg: &[u8]) -> &[u8] {
    match memchr::memmem::rfind(msg, b"\n\n") {
        Some(i) => &msg[i + 2..],
        None => b"",
    }
}

/// Go's `ActionTag()`.
pub fn action_tag(msg: &[u8]) -> &[u8] {
    line_value(footer(msg), b"Tag: ")
}

/// Go's `GerritCL.ChangeID()` over a commit message.
pub fn change_id(msg: &[u8]) -> &[u8] {
    let id = line_value(msg, b"Change-Id:");
    if id.starts_with(b"I") && id.len() == 41 {
        id
    } else {
        b""
    }
}

/// Go's `GerritCL.Subject()`: the text before the first `\n\n` (or all of
/// it), with every `\n` turned into a space.
pub fn subject(msg: &[u8]) -> Vec<u8> {
    let head = match find(msg, b"\n\n") {
        Some(i) => &msg[..i],
        None => msg,
    };
    head.iter()
        .map(|&b| if b == b'\n' { b' ' } else { b })
        .collect()
}

/// Go's `parseGerritLabelValue`: `[-]Name[=±N] [Display Name <id@uuid>]`.
pub fn parse_label_value(v: &[u8]) -> (&[u8], i8, &[u8]) {
    let mut v = v;
    let mut whose: &[u8] = b"";
    if let Some(sp) = v.iter().position(|&b| b == b' ') {
        let after = &v[sp + 1..];
        v = &v[..sp];
        if let Some(lt) = after.iter().position(|&b| b == b'<') {
            let rest = &after[lt + 1..];
            if let Some(gt) = rest.iter().position(|&b| b == b'>') {
                whose = &rest[..gt];
            }
        }
    }
    let v = trim_space(v);
    match v.iter().position(|&b| b == b'=') {
        None => (v, 0, whose),
        Some(eq) => {
            let value = super::git::parse_go_int(&v[eq + 1..])
                .and_then(|n| i8::try_from(n).ok())
                .unwrap_or(0);
            (&v[..eq], value, whose)
        }
    }
}

/// A GitHub issue reference found in a commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRef {
    /// Lowercased owner.
    pub owner: String,
    /// Lowercased repo.
    pub repo: String,
    /// Issue number.
    pub number: i32,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_name(b: u8) -> bool {
    is_word(b) || b == b'-'
}

/// Go's `parseGithubRefs` with the regex
/// `(?:\b([\w\-]+)/([\w\-]+))?\#(\d+)\b` (ASCII classes), searched only from
/// the start of the line holding the first `#`; owner and repo lowercased;
/// a bare `#N` means golang/go only in project `go.googlesource.com/go`;
/// duplicates dropped, first occurrence first.
pub fn github_refs(project: &str, msg: &[u8]) -> Vec<GitHubRef> {
    github_refs_trying(project, msg, next_ref_start)
}

/// [`github_refs`], trying the pattern at the starts `next_start` gives
/// (the first at or after a position, `None` when there is none).
fn github_refs_trying(
    project: &str,
    msg: &[u8],
    next_start: impl Fn(&[u8], usize) -> Option<usize>,
) -> Vec<GitHubRef> {
    let Some(hash) = memchr::memchr(b'#', msg) else {
        return Vec::new();
    };
    let line_start = msg[..hash]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let s = &msg[line_start..];
    let mut out: Vec<GitHubRef> = Vec::new();
    let mut p = 0;
    while p < s.len() {
        let Some((owner, repo, digits, end)) = match_ref_at(s, p) else {
            match next_start(s, p + 1) {
                Some(next) => p = next,
                None => break,
            }
            continue;
        };
        p = end;
        let Some(number) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<i32>().ok())
        else {
            continue;
        };
        let (owner, repo) = match (owner, repo) {
            (Some(o), Some(r)) => (
                String::from_utf8_lossy(o).to_lowercase(),
                String::from_utf8_lossy(r).to_lowercase(),
            ),
            _ if project == "go.googlesource.com/go" => ("golang".to_owned(), "go".to_owned()),
            _ => continue,
        };
        let r = GitHubRef {
            owner,
            repo,
            number,
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// The first position at or after `p` where [`match_ref_at`] can match.
/// A match holds exactly one `#`, the first at or after its start, and only
/// an `owner/repo` run of name bytes and slashes comes before it; starts
/// further left are skipped without trying them.
fn next_ref_start(s: &[u8], p: usize) -> Option<usize> {
    let hash = p + memchr::memchr(b'#', s.get(p..)?)?;
    let run = s[p..hash]
        .iter()
        .rposition(|&b| !(is_name(b) || b == b'/'))
        .map_or(p, |i| p + i + 1);
    Some(run)
}

type RefMatch<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a [u8], usize);

/// The regex at position `p`, leftmost-first: the optional owner/repo group
/// first, then a bare `#`.
fn match_ref_at(s: &[u8], p: usize) -> Option<RefMatch<'_>> {
    let word_at = |i: usize| i < s.len() && is_word(s[i]);
    let boundary = |i: usize| (i > 0 && is_word(s[i - 1])) != word_at(i);
    let digits_from = |i: usize| -> Option<(&[u8], usize)> {
        let n = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        (n > 0 && boundary(i + n)).then(|| (&s[i..i + n], i + n))
    };
    if boundary(p) {
        let n1 = s[p..].iter().take_while(|&&b| is_name(b)).count();
        let slash = p + n1;
        if n1 > 0 && s.get(slash) == Some(&b'/') {
            let n2 = s[slash + 1..].iter().take_while(|&&b| is_name(b)).count();
            let hash = slash + 1 + n2;
            if n2 > 0
                && s.get(hash) == Some(&b'#')
                && let Some((digits, end)) = digits_from(hash + 1)
            {
                return Some((Some(&s[p..slash]), Some(&s[slash + 1..hash]), digits, end));
            }
        }
    }
    if s[p] == b'#' {
        let (digits, end) = digits_from(p + 1)?;
        return Some((None, None, digits, end));
    }
    None
}

#[cfg(test)]
mod tests;

//! Git commits folded from raw commit objects, with Go maintner's parsing
//! (spec/maintner.md §3.3): one global map of commits by hash, parents that
//! are referenced before they are seen become placeholders that are filled
//! in place later, and people are interned by their `Name <email>` text.

use rustc_hash::FxHashMap as HashMap;
use std::fmt;

use super::text::{Interner, Sym, Text, Texts};
use super::time::Time;
use super::wire::CommitView;

/// A git object id: 20 bytes, shown as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GitHash(pub [u8; 20]);

impl GitHash {
    /// Parses 40 hex digits (either case).
    pub fn from_hex(hex: &[u8]) -> Option<GitHash> {
        let hex: &[u8; 40] = hex.try_into().ok()?;
        let (chunks, _) = hex.as_chunks::<8>();
        let mut out = [0u8; 20];
        // Eight digits at a time; any non-digit is remembered and tested
        // once at the end.
        let mut bad = 0u64;
        for (o, chunk) in out.chunks_exact_mut(4).zip(chunks) {
            let (value, invalid) = hex8(u64::from_le_bytes(*chunk));
            bad |= invalid;
            o.copy_from_slice(&value.to_le_bytes());
        }
        (bad == 0).then_some(GitHash(out))
    }

    /// Whether this is the all-zero id (used for "no tree").
    pub fn is_zero(self) -> bool {
        self.0 == [0; 20]
    }
}

/// Decodes eight ASCII hex digits of either case, held little-endian in
/// `v` (the first digit in the lowest byte), as one word: returns the four
/// bytes they spell (the first in the lowest byte) and a mask that is
/// nonzero when any of the eight is not a hex digit.
#[inline(always)]
fn hex8(v: u64) -> (u32, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const LOW7: u64 = ONES * 0x7f;
    // The high bit of each byte of `x` with m < byte < n (m, n <= 128).
    // Neither sum nor difference carries across bytes, and a byte with its
    // own high bit set is never in range.
    let between = |x: u64, m: u64, n: u64| {
        ((ONES * (127 + n)).wrapping_sub(x & LOW7)) & !x & ((x & LOW7) + ONES * (127 - m)) & HIGH
    };
    let digit = between(v, b'0' as u64 - 1, b'9' as u64 + 1);
    let letter = between(v | (ONES * 0x20), b'a' as u64 - 1, b'f' as u64 + 1);
    let invalid = !(digit | letter) & HIGH;
    // A digit's value is its low four bits; a letter's (bit 6 set) nine
    // more.
    let nibbles = (v & (ONES * 0x0f)) + ((v >> 6) & ONES) * 9;
    // Each even byte takes its digit as the high half and the next as the
    // low half; then the even bytes are packed together.
    let mut t = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    t = (t | (t >> 8)) & 0x0000_ffff_0000_ffff;
    t = (t | (t >> 16)) & 0x0000_0000_ffff_ffff;
    (t as u32, invalid)
}

impl fmt::Display for GitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitHash({self})")
    }
}

/// Index of a commit in the global table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitIdx(pub(crate) u32);

/// A time as written in a commit: the instant and its zone text (`-0700`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, packed(4))]
pub struct GitTime {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// The zone as written; its name in Go's `FixedZone`.
    pub zone: Sym,
}

/// Who committed: nobody yet, the placeholder sentinel, or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Committer {
    /// Not set.
    #[default]
    None,
    /// A parent referenced before it was seen.
    Placeholder,
    /// A person, interned by `Name <email>`.
    Person(Sym),
}

/// Parents: almost always one, so no allocation for that case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Parents {
    /// A root commit (or a placeholder).
    #[default]
    None,
    /// The common case.
    One(CommitIdx),
    /// Merges.
    Many(Box<[CommitIdx]>),
}

impl Parents {
    /// The parents in order.
    pub fn as_slice(&self) -> &[CommitIdx] {
        match self {
            Parents::None => &[],
            Parents::One(p) => std::slice::from_ref(p),
            Parents::Many(ps) => ps,
        }
    }
}

/// One line of `git diff-tree --numstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// File name (kept in the log record).
    pub file: Text,
    /// Lines added.
    pub added: i64,
    /// Lines deleted.
    pub deleted: i64,
    /// A binary file.
    pub binary: bool,
}

/// A commit.
#[derive(Debug, Clone, Default)]
pub struct CommitData {
    pub(crate) hash: GitHash,
    pub(crate) tree: GitHash,
    pub(crate) parents: Parents,
    pub(crate) author: Option<Sym>,
    pub(crate) author_time: Option<GitTime>,
    pub(crate) committer: Committer,
    pub(crate) commit_time: Option<GitTime>,
    pub(crate) reviewer: Option<Text>,
    pub(crate) msg: Text,
    /// Sorted by file name.
    pub(crate) files: Option<Box<[FileStat]>>,
    /// Set when a Gerrit meta walk visited it (Go's cached `GerritMeta`);
    /// cleared when the commit is processed again.
    pub(crate) gerrit_meta: MetaMark,
    /// NoteDB facts of its message (index + 1 into `GitState::notes`), for
    /// messages with a `Patch-set:` footer; 0 when not computed.
    pub(crate) note: u32,
    /// The first Gerrit project that logged it (its id + 1; 0 for none).
    /// Further projects that log it keep it in their own set.
    pub(crate) project: u16,
}

/// Whether a Gerrit meta walk visited a commit. Walks of different CLs run
/// on several threads over the shared commit table and only ever set it,
/// so it is an atomic flag (relaxed: the walking threads are joined before
/// anyone reads it).
#[derive(Debug, Default)]
pub(crate) struct MetaMark(std::sync::atomic::AtomicBool);

impl MetaMark {
    pub(crate) fn new(visited: bool) -> MetaMark {
        MetaMark(std::sync::atomic::AtomicBool::new(visited))
    }

    pub(crate) fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clone for MetaMark {
    fn clone(&self) -> MetaMark {
        MetaMark::new(self.get())
    }
}

impl CommitData {
    /// Whether this is a placeholder for a parent not yet seen.
    pub fn is_placeholder(&self) -> bool {
        self.committer == Committer::Placeholder
    }
}

/// Why a commit was not applied (Go logs or panics; we count and go on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The sha1 is not 40 characters (Go's `bogus git sha1`).
    #[error("bogus git sha1 {0:?}")]
    BogusSha1(String),
    /// Not hex (Go panics).
    #[error("git sha1 {0:?} is not hex")]
    BadHex(String),
    /// No blank line between header and message (Go errors at offset 0 and
    /// panics when there is none at all).
    #[error("commit {0} lacks double newline")]
    NoDoubleNewline(GitHash),
    /// A bad `parent` or `tree` line (Go panics).
    #[error("commit {0}: bad hash on line {1:?}")]
    BadHeaderHash(GitHash, String),
    /// An unparseable author or committer line.
    #[error("Unparseable commit {0}: unrecognized {1} line {2:?}")]
    BadPerson(GitHash, &'static str, String),
}

/// The global commit table.
#[derive(Debug, Clone, Default)]
pub struct GitState {
    pub(crate) commits: super::chunked::Chunked<CommitData>,
    pub(crate) by_hash: super::commit_index::CommitIndex,
    /// `golang-hg` header values to commit hashes.
    pub(crate) hg: HashMap<Box<[u8]>, GitHash>,
    /// NoteDB facts of meta-looking commits.
    pub(crate) notes: super::chunked::Chunked<super::notedb::NoteFacts>,
    /// The branch and tag refs of plain git repositories (almanac's
    /// `GitMutation.refs`), by `GitRepo.go_repo` then ref name.
    pub(crate) repo_refs:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, GitHash>>,
}

/// The interned people, zones and file names, and the text arena.
pub(crate) struct GitStrings<'a> {
    pub(crate) syms: &'a mut Interner,
    pub(crate) texts: &'a mut Texts,
    /// The symbols of the keys [`CommitKeys`] gave so far.
    pub(crate) keyed: &'a mut KeyedSyms,
}

impl GitStrings<'_> {
    /// The symbol of `bytes`, which the decoding thread named `key`
    /// ([`NO_KEY`]: it did not).
    fn intern_keyed(&mut self, key: u32, bytes: &[u8]) -> Sym {
        if key == NO_KEY {
            return self.syms.intern(bytes);
        }
        let k = key as usize;
        if let Some(Some(sym)) = self.keyed.syms.get(k) {
            return *sym;
        }
        let sym = self.syms.intern(bytes);
        if k >= self.keyed.syms.len() {
            self.keyed.syms.resize(k + 1, None);
        }
        self.keyed.syms[k] = Some(sym);
        sym
    }
}

/// A key [`CommitKeys`] did not assign.
pub(crate) const NO_KEY: u32 = u32::MAX;

/// Dense keys for the short strings of commits (people, zones, branches),
/// given by one of the loader's decoders to the records it decodes: the
/// folding thread then finds each string's symbol by index ([`KeyedSyms`],
/// one per decoder) instead of hashing and comparing it against every
/// symbol of the corpus.
#[derive(Debug)]
pub struct CommitKeys {
    generation: u64,
    index: HashMap<Box<[u8]>, u32>,
}

impl Default for CommitKeys {
    fn default() -> CommitKeys {
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        CommitKeys {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            index: HashMap::default(),
        }
    }
}

impl CommitKeys {
    fn key(&mut self, bytes: &[u8]) -> u32 {
        if let Some(&k) = self.index.get(bytes) {
            return k;
        }
        let k = self.index.len() as u32;
        self.index.insert(bytes.into(), k);
        k
    }

    /// Which key table this is, so that keys of another are never resolved
    /// against this one's symbols.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// The folding side of [`CommitKeys`]: each key's symbol, once seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyedSyms {
    /// The generation of the key table these symbols belong to.
    generation: u64,
    syms: Vec<Option<Sym>>,
}

impl KeyedSyms {
    /// Prepares to apply a batch keyed by table `generation`: the symbols
    /// are kept if it is the same table, else forgotten.
    pub(crate) fn begin_batch(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.syms.clear();
        }
    }
}

impl GitState {
    /// The commit with this hash, placeholder or not.
    pub fn lookup(&self, hash: &GitHash) -> Option<CommitIdx> {
        self.by_hash.get(hash, &self.commits)
    }

    /// A commit by index.
    pub fn get(&self, idx: CommitIdx) -> &CommitData {
        &self.commits[idx.0 as usize]
    }

    fn placeholder(&mut self, hash: GitHash) -> CommitIdx {
        if let Some(idx) = self.by_hash.get(&hash, &self.commits) {
            return idx;
        }
        let idx = CommitIdx(self.commits.len() as u32);
        self.commits.push(CommitData {
            hash,
            committer: Committer::Placeholder,
            ..CommitData::default()
        });
        self.by_hash.insert_new(&hash, idx);
        idx
    }

    /// Go's `processGitCommit`: parses and stores a commit, overwriting a
    /// placeholder or an earlier copy in place.
    /// Applies a plain repository's ref changes: refs whose hash parses are
    /// set, then deleted names removed (Gerrit's order). A mutation naming
    /// no repository changes nothing.
    pub(crate) fn apply_repo_refs(&mut self, g: &super::wire::GitView<'_>) {
        let name = String::from_utf8_lossy(g.repo_name());
        if name.is_empty() {
            return;
        }
        let mut refs = g.refs().peekable();
        let mut deleted = g.deleted_refs().peekable();
        if refs.peek().is_none() && deleted.peek().is_none() {
            return;
        }
        let table = self.repo_refs.entry(name.into_owned()).or_default();
        for (name, hex) in refs {
            if let Some(hash) = GitHash::from_hex(hex) {
                table.insert(String::from_utf8_lossy(name).into_owned(), hash);
            }
        }
        for name in deleted {
            table.remove(&*String::from_utf8_lossy(name));
        }
    }

    pub(crate) fn apply_commit(
        &mut self,
        strings: &mut GitStrings<'_>,
        base: &[u8],
        pb: &CommitView<'_>,
    ) -> Result<CommitIdx, CommitError> {
        let mut files = Vec::new();
        let parsed = ParsedCommit::parse(base, pb, &mut files);
        self.apply_parsed(strings, base, &parsed, &files)
    }

    /// Stores a commit parsed by [`ParsedCommit::parse`] from the record
    /// bytes `base`.
    pub(crate) fn apply_parsed(
        &mut self,
        strings: &mut GitStrings<'_>,
        base: &[u8],
        p: &ParsedCommit,
        batch_files: &[FileSpan],
    ) -> Result<CommitIdx, CommitError> {
        // Go creates placeholders for the parent lines it read before a
        // failing line; they stay.
        let parents = match p.n_parents {
            0 => Parents::None,
            1 => Parents::One(self.placeholder(p.parents[0])),
            _ => Parents::Many(p.parents().map(|h| self.placeholder(*h)).collect()),
        };
        if let Some(e) = &p.error {
            return Err(e.clone());
        }
        let slice = |r: Span| r.get(base);
        let mut commit = CommitData {
            hash: p.hash,
            tree: p.tree,
            parents,
            msg: strings.texts.push(slice(p.msg)),
            ..CommitData::default()
        };
        let [
            author_key,
            author_zone_key,
            committer_key,
            committer_zone_key,
            branch_key,
        ] = p.keys;
        if let Some((who, secs, zone)) = p.author {
            commit.author = Some(strings.intern_keyed(author_key, slice(who)));
            commit.author_time = Some(GitTime {
                seconds: secs,
                zone: strings.intern_keyed(author_zone_key, slice(zone)),
            });
        }
        if let Some((who, secs, zone)) = p.committer {
            commit.committer = Committer::Person(strings.intern_keyed(committer_key, slice(who)));
            commit.commit_time = Some(GitTime {
                seconds: secs,
                zone: strings.intern_keyed(committer_zone_key, slice(zone)),
            });
        }
        if p.reviewer.len > 0 {
            commit.reviewer = Some(strings.texts.push(slice(p.reviewer)));
        }
        if let Some((start, len)) = p.files {
            let files = &batch_files[start as usize..(start + len) as usize];
            commit.files = Some(
                files
                    .iter()
                    .map(|f| FileStat {
                        file: strings.texts.push(slice(f.name)),
                        added: f.added,
                        deleted: f.deleted,
                        binary: f.binary,
                    })
                    .collect(),
            );
        }
        for hg in &p.hg {
            self.hg.insert(slice(*hg).into(), p.hash);
        }
        if let Some(n) = &p.note {
            let mut facts = n.facts;
            facts.branch = strings.intern_keyed(branch_key, slice(n.branch));
            self.notes.push(facts);
            commit.note = self.notes.len() as u32;
        }
        Ok(match self.by_hash.get(&p.hash, &self.commits) {
            Some(idx) => {
                // Project membership is not a property of the commit object.
                commit.project = self.commits[idx.0 as usize].project;
                self.commits[idx.0 as usize] = commit;
                idx
            }
            None => {
                let idx = CommitIdx(self.commits.len() as u32);
                self.commits.push(commit);
                self.by_hash.insert_new(&p.hash, idx);
                idx
            }
        })
    }

    /// Whether `ancestor` is reachable from `commit` through parents (a
    /// commit is not its own ancestor).
    pub fn has_ancestor(&self, commit: CommitIdx, ancestor: CommitIdx) -> bool {
        let target = self.get(ancestor).hash;
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<CommitIdx> = self.get(commit).parents.as_slice().to_vec();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            let data = self.get(c);
            if data.hash == target {
                return true;
            }
            stack.extend_from_slice(data.parents.as_slice());
        }
        false
    }
}

/// A byte range of the record a commit came in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The bytes of `base` it covers.
    pub(crate) fn get(self, base: &[u8]) -> &[u8] {
        &base[self.start as usize..(self.start + self.len) as usize]
    }

    /// Where `part` lies within `base`.
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        if part.is_empty() {
            return Span::default();
        }
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        debug_assert!(start + part.len() <= base.len());
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }
}

/// One diff-tree line of a parsed commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileSpan {
    name: Span,
    added: i64,
    deleted: i64,
    binary: bool,
}

/// NoteDB facts, with the branch still as bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawNote {
    facts: super::notedb::NoteFacts,
    branch: Span,
}

/// A commit parsed from its raw object without touching any shared state,
/// so that parsing can run on the decoding thread. Spans refer to the
/// record the commit came in.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedCommit {
    hash: GitHash,
    tree: GitHash,
    /// Parents read before any error (Go leaves placeholders for these):
    /// the first two inline, the rest (merges of three or more) beside.
    parents: [GitHash; 2],
    n_parents: u8,
    more_parents: Vec<GitHash>,
    /// Person, seconds, zone.
    author: Option<(Span, i64, Span)>,
    committer: Option<(Span, i64, Span)>,
    msg: Span,
    reviewer: Span,
    /// Start and length in the batch's file list, sorted by name.
    files: Option<(u32, u32)>,
    hg: Vec<Span>,
    note: Option<RawNote>,
    error: Option<CommitError>,
    /// For a commit that came in a Gerrit record and is not a NoteDB meta
    /// commit: the GitHub issues its message references, read ahead for
    /// when a patch-set ref points at it.
    pub(crate) github_refs: Option<Vec<super::notedb::GitHubRef>>,
    /// [`CommitKeys`] of the author, author zone, committer, committer
    /// zone and meta branch ([`NO_KEY`] where not given).
    keys: [u32; 5],
}

impl ParsedCommit {
    /// The commit's hash.
    pub(crate) fn hash(&self) -> GitHash {
        self.hash
    }

    /// Reads the GitHub references of a patch-set commit's message (Gerrit
    /// project `project`) ahead of folding; meta commits and commits that
    /// failed to parse have none to read.
    pub(crate) fn read_github_refs(&mut self, base: &[u8], project: &str) {
        if self.note.is_none() && self.error.is_none() {
            let msg = self.msg.get(base);
            self.github_refs = Some(super::notedb::github_refs(project, msg));
        }
    }

    /// Names the commit's short strings with `keys`' dense keys.
    pub(crate) fn assign_keys(&mut self, base: &[u8], keys: &mut CommitKeys) {
        let slice = |r: Span| r.get(base);
        if let Some((who, _, zone)) = self.author {
            self.keys[0] = keys.key(slice(who));
            self.keys[1] = keys.key(slice(zone));
        }
        if let Some((who, _, zone)) = self.committer {
            self.keys[2] = keys.key(slice(who));
            self.keys[3] = keys.key(slice(zone));
        }
        if let Some(n) = &self.note {
            self.keys[4] = keys.key(slice(n.branch));
        }
    }

    fn push_parent(&mut self, h: GitHash) {
        match self.n_parents {
            0 | 1 => self.parents[self.n_parents as usize] = h,
            _ => self.more_parents.push(h),
        }
        self.n_parents = self.n_parents.saturating_add(1);
    }

    fn parents(&self) -> impl Iterator<Item = &GitHash> {
        self.parents[..(self.n_parents as usize).min(2)]
            .iter()
            .chain(&self.more_parents)
    }

    /// Parses as Go's `processGitCommit` reads a commit; `base` is the
    /// record holding it. Diff-tree lines go to `files` (shared by a batch,
    /// so parsing allocates nothing per commit).
    pub(crate) fn parse(
        base: &[u8],
        c: &CommitView<'_>,
        files_out: &mut Vec<FileSpan>,
    ) -> ParsedCommit {
        let (sha1, raw) = (c.sha1, c.raw);
        let mut p = ParsedCommit {
            keys: [NO_KEY; 5],
            ..ParsedCommit::default()
        };
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if sha1.len() != 40 {
            p.error = Some(CommitError::BogusSha1(lossy(sha1)));
            return p;
        }
        let Some(hash) = GitHash::from_hex(sha1) else {
            p.error = Some(CommitError::BadHex(lossy(sha1)));
            return p;
        };
        p.hash = hash;
        let Some(i) = find(raw, b"\n\n").filter(|&i| i > 0) else {
            p.error = Some(CommitError::NoDoubleNewline(hash));
            return p;
        };
        let (hdr, msg) = (&raw[..i], &raw[i + 2..]);
        p.msg = Span::of(base, msg);
        let mut line_start = 0;
        let line_ends = memchr::memchr_iter(b'\n', hdr).chain(std::iter::once(hdr.len()));
        for line_end in line_ends {
            let line = &hdr[line_start..line_end];
            line_start = line_end + 1;
            if let Some(rest) = line.strip_prefix(b"parent ") {
                match GitHash::from_hex(rest) {
                    Some(parent) => p.push_parent(parent),
                    None => {
                        p.error = Some(CommitError::BadHeaderHash(hash, lossy(line)));
                        return p;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"author ") {
                match split_person(rest) {
                    Some((who, secs, zone)) => {
                        p.author = Some((Span::of(base, who), secs, Span::of(base, zone)));
                    }
                    None => {
                        p.error = Some(CommitError::BadPerson(hash, "author", lossy(line)));
                        return p;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"committer ") {
                match split_person(rest) {
                    Some((who, secs, zone)) => {
                        p.committer = Some((Span::of(base, who), secs, Span::of(base, zone)));
                    }
                    None => {
                        p.error = Some(CommitError::BadPerson(hash, "committer", lossy(line)));
                        return p;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"tree ") {
                match GitHash::from_hex(rest) {
                    Some(tree) => p.tree = tree,
                    None => {
                        p.error = Some(CommitError::BadHeaderHash(hash, lossy(line)));
                        return p;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"golang-hg ") {
                p.hg.push(Span::of(base, rest));
            }
            // gpgsig, continuation lines (leading space), encoding and
            // anything unrecognised (mergetag, ...) are ignored, as Go does.
        }
        let reviewer = super::notedb::REVIEWER.line_value(msg);
        if !reviewer.is_empty() {
            p.reviewer = Span::of(base, reviewer);
        }
        if let Some(files) = c.files() {
            let start = files_out.len();
            files_out.extend(files.map(|f| FileSpan {
                name: Span::of(base, f.file),
                added: f.added,
                deleted: f.deleted,
                binary: f.binary,
            }));
            files_out[start..].sort_by(|a, b| {
                let name = |s: Span| s.get(base);
                name(a.name).cmp(name(b.name))
            });
            p.files = Some((start as u32, (files_out.len() - start) as u32));
        }
        if super::notedb::NoteFacts::worth_computing(msg) {
            let (facts, branch) = super::notedb::NoteFacts::of_raw(msg);
            p.note = Some(RawNote {
                facts,
                branch: Span::of(base, branch),
            });
        }
        p
    }
}

/// Go's `parsePerson`: `Name <email> 1257894000 -0800`, split at the last
/// two spaces after trimming. The zone must be at least 5 bytes (Go panics
/// on shorter ones; we reject the line).
fn split_person(v: &[u8]) -> Option<(&[u8], i64, &[u8])> {
    let v = super::notedb::trim_space(v);
    let sp = v.iter().rposition(|&b| b == b' ')?;
    let (rest, tz) = (&v[..sp], &v[sp + 1..]);
    let sp = rest.iter().rposition(|&b| b == b' ')?;
    let (name_email, unix) = (&rest[..sp], &rest[sp + 1..]);
    let seconds = parse_go_int(unix)?;
    if tz.len() < 5 {
        return None;
    }
    Some((name_email, seconds, tz))
}

/// `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits.
/// Out of range is an error, as in Go.
pub(crate) fn parse_go_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Accumulating toward the sign reaches i64::MIN too.
        v = v.checked_mul(10)?;
        v = if negative {
            v.checked_sub(i64::from(d))?
        } else {
            v.checked_add(i64::from(d))?
        };
    }
    Some(v)
}

/// The zone offset in seconds east of UTC for a zone text, as Go computes
/// it: sign from the first byte, hours and minutes from bytes 1..3 and 3..5
/// (unparseable parts count as 0).
pub fn zone_offset(zone: &[u8]) -> i32 {
    if zone.len() < 5 {
        return 0;
    }
    let num = |b: &[u8]| -> i32 {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let east = if zone[0] == b'-' { -1 } else { 1 };
    east * (num(&zone[1..3]) * 3600 + num(&zone[3..5]) * 60)
}

impl GitTime {
    /// The instant, without the zone.
    pub fn instant(self) -> Time {
        Time::from_unix(self.seconds)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    super::notedb::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::{GitHash, parse_go_int};

    /// Go's `strconv.ParseInt(s, 10, 64)` on the cases that matter: signs,
    /// the range's ends and one past them, and anything not a digit.
    #[test]
    fn integers_parse_as_go_parses_them() {
        let good: [(&str, i64); 9] = [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("1700000000", 1_700_000_000),
            ("+42", 42),
            ("-42", -42),
            ("007", 7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, want) in good {
            assert_eq!(parse_go_int(text.as_bytes()), Some(want), "{text}");
        }
        let bad = [
            "",
            "+",
            "-",
            "+-1",
            "--1",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "1.5",
            "١",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
        ];
        for text in bad {
            assert_eq!(parse_go_int(text.as_bytes()), None, "{text}");
        }
    }

    /// Each byte's value as a hex digit (either case), 0xff if it is none.
    fn hex_digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }

    /// `from_hex` a digit at a time.
    fn from_hex_by_digit(hex: &[u8]) -> Option<GitHash> {
        let hex: &[u8; 40] = hex.try_into().ok()?;
        let mut out = [0u8; 20];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *o = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
        }
        Some(GitHash(out))
    }

    #[test]
    fn hex_ids_parse_as_they_do_a_digit_at_a_time() {
        let bases: [&[u8; 40]; 3] = [
            b"0123456789abcdef0123456789abcdef01234567",
            b"FEDCBA9876543210fedcba9876543210ffffffff",
            b"0000000000000000000000000000000000000000",
        ];
        // Every byte value at every place of each base.
        for base in bases {
            assert!(from_hex_by_digit(base).is_some());
            for at in 0..40 {
                for b in 0..=255u8 {
                    let mut text = *base;
                    text[at] = b;
                    assert_eq!(
                        GitHash::from_hex(&text),
                        from_hex_by_digit(&text),
                        "byte {b:#x} at {at} of {:?}",
                        std::str::from_utf8(base)
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_hex_ids_parse_as_they_do_a_digit_at_a_time(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()),
                    proptest::num::u8::ANY,
                ],
                40,
            ),
        ) {
            proptest::prop_assert_eq!(GitHash::from_hex(&text), from_hex_by_digit(&text));
        }
    }

    #[test]
    fn hex_ids_parse_in_either_case_and_nothing_else() {
        let lower = b"0123456789abcdef0123456789abcdef01234567";
        let upper = b"0123456789ABCDEF0123456789ABCDEF01234567";
        let want = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
        ];
        assert_eq!(GitHash::from_hex(lower).map(|h| h.0), Some(want));
        assert_eq!(GitHash::from_hex(upper).map(|h| h.0), Some(want));
        assert_eq!(
            GitHash::from_hex(lower).map(|h| h.to_string()).as_deref(),
            Some(std::str::from_utf8(lower).unwrap())
        );
        for bad in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0xff] {
            let mut text = *lower;
            text[17] = bad;
            assert_eq!(GitHash::from_hex(&text), None, "byte {bad:#x}");
        }
        assert_eq!(GitHash::from_hex(&lower[..39]), None);
        assert_eq!(GitHash::from_hex(b""), None);
    }
}

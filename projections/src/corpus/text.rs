//! Compact storage for the corpus's strings.
//!
//! Bodies, messages and titles are kept where they already are: in the log
//! record that carried them, read through memory maps of the segments, so
//! loading copies no text and the texts cost no heap. A [`Text`] is a log
//! position and length. Text that is not in any record goes into a
//! [`TextArena`]: large blocks of bytes with no per-string allocation.
//! Short strings that repeat (logins, label names, people, file names) are
//! interned once as a [`Sym`]. Both only grow; nothing is freed while the
//! corpus lives, which matches a fold (Go keeps every string it ever set,
//! too, until it is overwritten).

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::sync::Arc;

/// Where an arena block starts a new allocation.
const BLOCK_LEN: usize = 4 << 20;

/// A string of the corpus: either bytes of the log record that carried it,
/// in a memory-mapped segment (most text: bodies, messages), or bytes in
/// the corpus's own arena (text that is not in any record, such as built
/// URLs, or records the corpus re-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C, packed(4))]
pub struct Text {
    /// A log position, or `ARENA | block << 32 | start`.
    loc: u64,
    len: u32,
}

/// Marks an arena location.
const ARENA: u64 = 1 << 63;

impl Text {
    /// The empty string.
    pub const EMPTY: Text = Text { loc: 0, len: 0 };

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.len as usize
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// A sub-range of this text.
    pub fn slice(self, from: usize, to: usize) -> Text {
        debug_assert!(from <= to && to <= self.len());
        Text {
            loc: self.loc + from as u64,
            len: (to - from) as u32,
        }
    }

    fn arena(block: u32, start: u32, len: u32) -> Text {
        Text {
            loc: ARENA | u64::from(block) << 32 | u64::from(start),
            len,
        }
    }

    /// Whether the bytes are in the arena (else in the log).
    pub(crate) fn in_arena(self) -> bool {
        self.loc & ARENA != 0
    }

    /// The log position of a log-backed text.
    pub(crate) fn log_position(self) -> u64 {
        self.loc
    }

    pub(crate) fn to_parts(self) -> (u64, u32) {
        (self.loc, self.len)
    }

    pub(crate) fn from_parts(loc: u64, len: u32) -> Text {
        Text { loc, len }
    }
}

/// The record being folded: where its payload sits in memory and in the
/// log, so that slices of it can be kept as log positions.
#[derive(Debug, Clone, Copy)]
struct Base {
    addr: usize,
    len: usize,
    pos: u64,
}

/// Where the corpus's text lives: mapped log segments and an arena.
#[derive(Debug, Default)]
pub struct Texts {
    arena: TextArena,
    log: Option<almanac_log::mapped::SegmentMaps>,
    base: Option<Base>,
}

impl Texts {
    /// Stores `s`: as a log position when it is a slice of the record being
    /// folded, else as a copy in the arena.
    pub fn push(&mut self, s: &[u8]) -> Text {
        if s.is_empty() {
            return Text::EMPTY;
        }
        if let Some(b) = self.base {
            let addr = s.as_ptr() as usize;
            if addr >= b.addr && addr + s.len() <= b.addr + b.len {
                return Text {
                    loc: b.pos + (addr - b.addr) as u64,
                    len: s.len() as u32,
                };
            }
        }
        self.arena.push(s)
    }

    /// Copies `s` into the arena, whatever it is a slice of.
    pub fn push_owned(&mut self, s: &[u8]) -> Text {
        self.arena.push(s)
    }

    /// The bytes behind `t`.
    pub fn get(&self, t: Text) -> &[u8] {
        if t.len == 0 {
            return b"";
        }
        if t.in_arena() {
            return self.arena.get(t);
        }
        self.log
            .as_ref()
            .and_then(|maps| maps.get(almanac_log::Position(t.loc), t.len()))
            .unwrap_or(b"")
    }

    /// The text behind `t` as a string (invalid UTF-8, possible only in git
    /// text, is replaced).
    pub fn get_str(&self, t: Text) -> Cow<'_, str> {
        String::from_utf8_lossy(self.get(t))
    }

    /// Folds the record whose payload is `payload`, at log position `pos`,
    /// until [`Texts::end_record`].
    pub(crate) fn begin_record(&mut self, payload: &[u8], pos: Option<u64>) {
        self.base = pos.map(|pos| Base {
            addr: payload.as_ptr() as usize,
            len: payload.len(),
            pos,
        });
    }

    /// Ends [`Texts::begin_record`].
    pub(crate) fn end_record(&mut self) {
        self.base = None;
    }

    /// The maps of the log, if texts live there.
    pub(crate) fn maps(&self) -> Option<&almanac_log::mapped::SegmentMaps> {
        self.log.as_ref()
    }

    /// The maps of the log, if texts may live there.
    pub(crate) fn maps_mut(&mut self) -> &mut Option<almanac_log::mapped::SegmentMaps> {
        &mut self.log
    }

    /// Whether `t` can be read: inside the arena, or inside the mapped log.
    pub(crate) fn contains(&self, t: Text) -> bool {
        if t.len == 0 {
            return true;
        }
        if t.in_arena() {
            return self.arena.contains(t);
        }
        self.log
            .as_ref()
            .is_some_and(|m| m.get(almanac_log::Position(t.loc), t.len()).is_some())
    }

    /// Arena bytes reserved.
    pub fn arena_reserved(&self) -> usize {
        self.arena.reserved()
    }

    pub(crate) fn arena(&self) -> &TextArena {
        &self.arena
    }

    pub(crate) fn with_arena(arena: TextArena) -> Texts {
        Texts {
            arena,
            log: None,
            base: None,
        }
    }
}

/// Append-only storage of byte strings in large blocks.
#[derive(Debug, Clone, Default)]
pub struct TextArena {
    blocks: Vec<Vec<u8>>,
}

impl TextArena {
    /// Stores `s` and returns its handle.
    pub fn push(&mut self, s: &[u8]) -> Text {
        if s.is_empty() {
            return Text::EMPTY;
        }
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= s.len());
        if !fits {
            self.blocks.push(Vec::with_capacity(BLOCK_LEN.max(s.len())));
        }
        let block = self.blocks.len() - 1;
        let buf = &mut self.blocks[block];
        let start = buf.len();
        buf.extend_from_slice(s);
        Text::arena(block as u32, start as u32, s.len() as u32)
    }

    /// The bytes behind an arena text.
    fn get(&self, t: Text) -> &[u8] {
        let (block, start) = (
            ((t.loc & !ARENA) >> 32) as usize,
            (t.loc & 0xffff_ffff) as usize,
        );
        self.blocks
            .get(block)
            .and_then(|b| b.get(start..start + t.len()))
            .unwrap_or(b"")
    }

    /// Whether `t` lies within the stored bytes (for validating loaded
    /// checkpoints).
    pub(crate) fn contains(&self, t: Text) -> bool {
        let (block, start) = (
            ((t.loc & !ARENA) >> 32) as usize,
            (t.loc & 0xffff_ffff) as usize,
        );
        t.len == 0
            || self
                .blocks
                .get(block)
                .is_some_and(|b| start.saturating_add(t.len as usize) <= b.len())
    }

    /// Bytes stored.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }

    /// Bytes reserved (stored plus the unused rest of each block).
    pub fn reserved(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum()
    }

    pub(crate) fn blocks(&self) -> &[Vec<u8>] {
        &self.blocks
    }

    pub(crate) fn from_blocks(blocks: Vec<Vec<u8>>) -> TextArena {
        TextArena { blocks }
    }
}

/// An interned string; the default is the empty string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sym(pub(crate) u32);

/// Interns short, repeating byte strings. Symbol 0 is the empty string.
#[derive(Debug, Clone)]
pub struct Interner {
    strings: Vec<Arc<[u8]>>,
    index: HashMap<Arc<[u8]>, Sym>,
}

impl Default for Interner {
    fn default() -> Interner {
        let mut i = Interner {
            strings: Vec::new(),
            index: HashMap::default(),
        };
        i.intern(b"");
        i
    }
}

impl Interner {
    /// The empty string's symbol.
    pub const EMPTY: Sym = Sym(0);

    /// The symbol for `s`, interning it if new.
    pub fn intern(&mut self, s: &[u8]) -> Sym {
        if let Some(&sym) = self.index.get(s) {
            return sym;
        }
        let sym = Sym(self.strings.len() as u32);
        let arc: Arc<[u8]> = Arc::from(s);
        self.strings.push(arc.clone());
        self.index.insert(arc, sym);
        sym
    }

    /// The symbol for `s` if it was interned.
    pub fn lookup(&self, s: &[u8]) -> Option<Sym> {
        self.index.get(s).copied()
    }

    /// The bytes of `sym`.
    pub fn get(&self, sym: Sym) -> &[u8] {
        &self.strings[sym.0 as usize]
    }

    /// The string of `sym` (invalid UTF-8 replaced).
    pub fn get_str(&self, sym: Sym) -> Cow<'_, str> {
        String::from_utf8_lossy(self.get(sym))
    }

    /// Approximate heap bytes: the strings and the index.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| s.len() + 16).sum();
        strings + self.strings.capacity() * 16 + self.index.capacity() * 24
    }

    /// How many strings are interned.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether only the empty string is interned.
    pub fn is_empty(&self) -> bool {
        self.strings.len() <= 1
    }

    pub(crate) fn strings(&self) -> &[Arc<[u8]>] {
        &self.strings
    }

    pub(crate) fn from_strings(strings: Vec<Arc<[u8]>>) -> Interner {
        let index = strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), Sym(i as u32)))
            .collect();
        Interner { strings, index }
    }
}

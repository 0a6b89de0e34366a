//! Compact storage for the corpus's strings.
//!
//! Bodies, messages and titles go into a [`TextArena`]: large blocks of
//! bytes with no per-string allocation, addressed by a 12-byte [`Text`].
//! Short strings that repeat (logins, label names, people, file names) are
//! interned once as a [`Sym`]. Both only grow; nothing is freed while the
//! corpus lives, which matches a fold (Go keeps every string it ever set,
//! too, until it is overwritten).

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::sync::Arc;

/// Where an arena block starts a new allocation.
const BLOCK_LEN: usize = 4 << 20;

/// A string in a [`TextArena`]: block, start and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Text {
    block: u32,
    start: u32,
    len: u32,
}

impl Text {
    /// The empty string.
    pub const EMPTY: Text = Text {
        block: 0,
        start: 0,
        len: 0,
    };

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.len as usize
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// A sub-range of this text (byte offsets, which must fall on character
    /// boundaries of the stored string).
    pub fn slice(self, from: usize, to: usize) -> Text {
        debug_assert!(from <= to && to <= self.len());
        Text {
            block: self.block,
            start: self.start + from as u32,
            len: (to - from) as u32,
        }
    }

    pub(crate) fn to_parts(self) -> [u32; 3] {
        [self.block, self.start, self.len]
    }

    pub(crate) fn from_parts(parts: [u32; 3]) -> Text {
        Text {
            block: parts[0],
            start: parts[1],
            len: parts[2],
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
        Text {
            block: block as u32,
            start: start as u32,
            len: s.len() as u32,
        }
    }

    /// The bytes behind `t`.
    pub fn get(&self, t: Text) -> &[u8] {
        if t.len == 0 {
            return b"";
        }
        &self.blocks[t.block as usize][t.start as usize..(t.start + t.len) as usize]
    }

    /// The text behind `t` as a string (invalid UTF-8, possible only in git
    /// text, is replaced).
    pub fn get_str(&self, t: Text) -> Cow<'_, str> {
        String::from_utf8_lossy(self.get(t))
    }

    /// Bytes held (for memory accounting).
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
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

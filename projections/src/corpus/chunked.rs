//! A table that grows by whole chunks and never moves what it holds.
//!
//! The commit table reaches millions of entries and hundreds of megabytes.
//! As one `Vec` it doubled as it grew: each doubling copied everything so
//! far into fresh memory, which the kernel had to zero first, and profiles
//! of a full load showed those copies and page clears as a tenth of the
//! folding thread's time. Here only the first chunk grows by doubling (up
//! to [`CHUNK`] entries); every later chunk is allocated at its full size
//! once, and nothing is ever copied.
//!
//! Indexing costs one extra, well-cached load (the chunk table). It never
//! shrinks or removes entries: the corpus only appends commits.

use std::ops::{Index, IndexMut};

/// Entries per chunk. The checkpoint writes the commit table in sections
/// of the same size.
pub(crate) const CHUNK: usize = 1 << 17;

/// An append-only table of `T` in chunks of [`CHUNK`] entries.
#[derive(Debug, Clone)]
pub(crate) struct Chunked<T> {
    /// Every chunk but the last holds exactly [`CHUNK`] entries.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends an entry.
    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                // The first chunk starts small (most corpora are small);
                // once one chunk is full, the next is allocated whole.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// The entry at `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The entries in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// The chunks in order, each of [`CHUNK`] entries but the last.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[T]> {
        self.chunks.iter().map(Vec::as_slice)
    }

    /// The memory held for entries, used or not, in entries.
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Builds the table from chunks as [`Chunked::chunks`] gives them
    /// (every chunk but the last holding exactly [`CHUNK`] entries, none
    /// empty); `None` if they are not so.
    pub(crate) fn from_chunks(chunks: Vec<Vec<T>>) -> Option<Chunked<T>> {
        let n = chunks.len();
        let well_formed = chunks.iter().enumerate().all(|(i, c)| {
            if i + 1 < n {
                c.len() == CHUNK
            } else {
                (1..=CHUNK).contains(&c.len())
            }
        });
        let len = chunks.iter().map(Vec::len).sum();
        well_formed.then_some(Chunked { chunks, len })
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        &self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, Chunked};

    #[test]
    fn entries_keep_their_index_and_order_across_chunks() {
        let mut table = Chunked::default();
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(0), None);
        let n = 2 * CHUNK + 5;
        for i in 0..n {
            table.push(i as u64 * 3);
        }
        assert_eq!(table.len(), n);
        assert_eq!(table[0], 0);
        assert_eq!(table[CHUNK - 1], (CHUNK as u64 - 1) * 3);
        assert_eq!(table[CHUNK], CHUNK as u64 * 3);
        assert_eq!(table.get(n - 1), Some(&((n as u64 - 1) * 3)));
        assert_eq!(table.get(n), None);
        table[CHUNK + 1] = 7;
        assert_eq!(table.get(CHUNK + 1), Some(&7));
        let lens: Vec<usize> = table.chunks().map(<[u64]>::len).collect();
        assert_eq!(lens, [CHUNK, CHUNK, 5]);
        assert_eq!(table.iter().count(), n);
        assert!(
            table
                .iter()
                .enumerate()
                .all(|(i, &v)| i == CHUNK + 1 && v == 7 || v == i as u64 * 3)
        );
        assert!(table.capacity() >= n);
    }

    #[test]
    fn only_well_formed_chunks_rebuild_a_table() {
        let full = vec![1u8; CHUNK];
        let rebuilt = Chunked::from_chunks(vec![full.clone(), vec![2, 3]]).expect("well formed");
        assert_eq!(rebuilt.len(), CHUNK + 2);
        assert_eq!(rebuilt[CHUNK + 1], 3);
        assert!(Chunked::from_chunks(Vec::<Vec<u8>>::new()).is_some_and(|t| t.len() == 0));
        assert!(Chunked::from_chunks(vec![vec![1u8], vec![2]]).is_none());
        assert!(Chunked::from_chunks(vec![full.clone(), Vec::new()]).is_none());
        assert!(
            Chunked::from_chunks(vec![full.clone(), full.clone(), vec![0; CHUNK + 1]]).is_none()
        );
    }
}

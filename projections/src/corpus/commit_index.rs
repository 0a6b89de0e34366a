//! The commit table's index by hash: open addressing with linear probing,
//! keyed by the first eight bytes of the hash.
//!
//! A slot holds that prefix and the commit's index, 12 bytes, and a match on
//! the prefix is confirmed against the full hash in the commit table, so the
//! index never answers wrongly even for commits that share a prefix. Slots
//! are scattered by a per-index random seed, so commits crafted to share
//! bucket bits cannot pile up in one run of slots; the seed shapes only the
//! layout, never an answer.
//!
//! It exists instead of a `HashMap<GitHash, CommitIdx>` because it is plain
//! data: a checkpoint saves the slots as they are and reopening reads them
//! back, where a map would have to be rebuilt, insert by insert, over
//! millions of commits.

use std::hash::BuildHasher as _;

use super::chunked::Chunked;
use super::git::{CommitData, CommitIdx, GitHash};

/// One slot: the hash prefix and the commit's index plus one (0 = empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) prefix_lo: u32,
    pub(crate) prefix_hi: u32,
    pub(crate) idx_plus_one: u32,
}

impl Slot {
    fn prefix(self) -> u64 {
        u64::from(self.prefix_hi) << 32 | u64::from(self.prefix_lo)
    }
}

/// Commits by hash.
#[derive(Debug, Clone)]
pub(crate) struct CommitIndex {
    seed: u64,
    len: usize,
    slots: Vec<Slot>,
}

impl Default for CommitIndex {
    fn default() -> CommitIndex {
        CommitIndex {
            seed: std::collections::hash_map::RandomState::new()
                .hash_one(0x0061_6c6d_616e_6163_u64),
            len: 0,
            slots: Vec::new(),
        }
    }
}

/// The smallest table, in slots.
const MIN_SLOTS: usize = 1024;

fn prefix_of(hash: &GitHash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[..8]);
    u64::from_le_bytes(b)
}

impl CommitIndex {
    fn home(&self, prefix: u64) -> usize {
        // Multiply-shift over the seeded prefix: the top bits are the slot.
        let bits = self.slots.len().trailing_zeros();
        ((prefix ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The commit with this hash.
    pub(crate) fn get(&self, hash: &GitHash, commits: &Chunked<CommitData>) -> Option<CommitIdx> {
        if self.slots.is_empty() {
            return None;
        }
        let prefix = prefix_of(hash);
        let mask = self.slots.len() - 1;
        let mut i = self.home(prefix);
        loop {
            let slot = self.slots[i];
            if slot.idx_plus_one == 0 {
                return None;
            }
            if slot.prefix() == prefix {
                let idx = slot.idx_plus_one - 1;
                if commits.get(idx as usize).is_some_and(|c| c.hash == *hash) {
                    return Some(CommitIdx(idx));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a commit the index does not hold yet.
    pub(crate) fn insert_new(&mut self, hash: &GitHash, idx: CommitIdx) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let prefix = prefix_of(hash);
        self.place(Slot {
            prefix_lo: prefix as u32,
            prefix_hi: (prefix >> 32) as u32,
            idx_plus_one: idx.0 + 1,
        });
        self.len += 1;
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(slot.prefix());
        while self.slots[i].idx_plus_one != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        for slot in old.into_iter().filter(|s| s.idx_plus_one != 0) {
            self.place(slot);
        }
    }

    /// Bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }

    /// The saved form: seed, entry count, slots.
    pub(crate) fn parts(&self) -> (u64, usize, &[Slot]) {
        (self.seed, self.len, &self.slots)
    }

    /// Rebuilds from saved parts, checking they form a table over
    /// `commits` commits (every answer is still confirmed by full hash).
    pub(crate) fn from_parts(
        seed: u64,
        len: usize,
        slots: Vec<Slot>,
        commits: usize,
    ) -> Result<CommitIndex, &'static str> {
        if !(slots.is_empty() || slots.len().is_power_of_two() && slots.len() >= MIN_SLOTS) {
            return Err("the commit index has a bad size");
        }
        if len * 2 > slots.len() || len > commits {
            return Err("the commit index is overfull");
        }
        let mut used = 0usize;
        for s in &slots {
            if s.idx_plus_one != 0 {
                used += 1;
                if s.idx_plus_one as usize > commits {
                    return Err("the commit index refers outside the commits");
                }
            }
        }
        if used != len {
            return Err("the commit index's count does not match its slots");
        }
        Ok(CommitIndex { seed, len, slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(hash: GitHash) -> CommitData {
        CommitData {
            hash,
            ..CommitData::default()
        }
    }

    fn hash(n: u32, salt: u8) -> GitHash {
        let mut h = [salt; 20];
        h[8..12].copy_from_slice(&n.to_le_bytes());
        GitHash(h)
    }

    #[test]
    fn finds_every_commit_through_growth_and_shared_prefixes() {
        let mut index = CommitIndex::default();
        let mut commits = Chunked::default();
        // Every hash shares its first eight bytes with the others of its
        // salt: only the full-hash check tells them apart.
        for n in 0..2_000u32 {
            for salt in [1u8, 2] {
                let h = hash(n, salt);
                let idx = CommitIdx(commits.len() as u32);
                commits.push(commit(h));
                index.insert_new(&h, idx);
            }
        }
        for (i, c) in commits.iter().enumerate() {
            assert_eq!(index.get(&c.hash, &commits), Some(CommitIdx(i as u32)));
        }
        assert_eq!(index.get(&hash(2_000, 1), &commits), None);
        assert_eq!(index.get(&hash(1, 3), &commits), None);

        let (seed, len, slots) = index.parts();
        let again = CommitIndex::from_parts(seed, len, slots.to_vec(), commits.len())
            .expect("a saved index reloads");
        assert_eq!(again.get(&hash(77, 2), &commits), Some(CommitIdx(155)));
        assert!(CommitIndex::from_parts(seed, len, slots.to_vec(), 10).is_err());
        assert!(CommitIndex::from_parts(seed, len + 1, slots.to_vec(), commits.len()).is_err());
        assert!(CommitIndex::from_parts(seed, len, slots[1..].to_vec(), commits.len()).is_err());
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        assert_eq!(
            CommitIndex::default().get(&hash(0, 0), &Chunked::default()),
            None
        );
    }
}

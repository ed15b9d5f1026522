//! The set of pending locks in one direction of a channel, committed to by a Merkle root.
//!
//! The exact hashing (which the contract matches byte for byte) is specified in the crate docs,
//! section "Locks root". In short: leaves are [`Lock::leaf_hash`] in slot order, an inner node is
//! `keccak256(left ‖ right)` with a missing right child read as 32 zero bytes, the tree is as deep
//! as `ceil(log2(n))`, and the empty set's root is zero. A new lock takes the next slot; a removed
//! lock's slot is filled by the last lock (swap-remove), so both operations rehash O(log n) nodes.

use crate::{Amount, Lock, SecretHash};
use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most locks that may be pending in one direction of a channel.
///
/// Bounds the memory a partner can make us hold and the depth of a membership proof (10 hashes).
/// Lightning allows 483 HTLCs per direction; a hub routing hundreds of concurrent payments over one
/// channel fits.
pub const MAX_PENDING_LOCKS: usize = 1024;

/// Why a lock could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// [`MAX_PENDING_LOCKS`] are already pending.
    #[error("{MAX_PENDING_LOCKS} locks already pending")]
    Full,
    /// A pending lock already uses this secret hash; a secret hash names one lock per direction.
    #[error("a lock with secret hash {0:?} is already pending")]
    DuplicateSecretHash(SecretHash),
    /// The locked total would exceed `uint256`.
    #[error("locked amount overflows")]
    Overflow,
}

/// The pending locks of one direction, with their Merkle tree kept up to date.
///
/// Serialised as its locks in slot order; deserialising rebuilds the tree and checks every
/// insertion rule again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<Lock>", try_from = "Vec<Lock>")]
pub struct PendingLocks {
    /// Slot order: the order of the tree's leaves.
    locks: Vec<Lock>,
    /// `levels[0]` are the leaf hashes, `levels[k][j] = node(levels[k-1][2j], levels[k-1][2j+1])`;
    /// the last level holds the root (or is empty when there are no locks).
    levels: Vec<Vec<B256>>,
    /// Secret hash to slot, for `Unlock` and `LockExpired` (ordered: no randomly keyed hasher).
    slots: BTreeMap<SecretHash, usize>,
    total: Amount,
}

impl Default for PendingLocks {
    /// An empty set, as [`PendingLocks::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl From<PendingLocks> for Vec<Lock> {
    fn from(set: PendingLocks) -> Self {
        set.locks
    }
}

impl TryFrom<Vec<Lock>> for PendingLocks {
    type Error = InsertError;

    fn try_from(locks: Vec<Lock>) -> Result<Self, InsertError> {
        Self::from_locks(locks)
    }
}

/// A lock's membership proof: its slot and the sibling hashes from the leaf up to the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockProof {
    /// The lock's slot; bit `k` says whether the path goes right (1) at height `k`.
    pub index: u64,
    /// One sibling per level, leaf level first; as many as the tree is deep.
    pub siblings: Vec<B256>,
}

impl PendingLocks {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            locks: Vec::new(),
            levels: vec![Vec::new()],
            slots: BTreeMap::new(),
            total: Amount::ZERO,
        }
    }

    /// Builds the set from locks in slot order (as persisted).
    pub fn from_locks(locks: impl IntoIterator<Item = Lock>) -> Result<Self, InsertError> {
        let mut set = Self::new();
        for lock in locks {
            set.insert(lock)?;
        }
        Ok(set)
    }

    /// How many locks are pending.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Whether no lock is pending.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// The sum of pending lock amounts: the proof's `lockedAmount`.
    pub fn total(&self) -> Amount {
        self.total
    }

    /// The Merkle root over the pending locks: the proof's `locksRoot`.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or(B256::ZERO)
    }

    /// The pending lock with this secret hash.
    pub fn get(&self, secret_hash: &SecretHash) -> Option<&Lock> {
        self.slots.get(secret_hash).map(|&slot| &self.locks[slot])
    }

    /// The pending locks in slot order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Lock> {
        self.locks.iter()
    }

    /// Adds a lock in the next slot; returns the slot.
    pub fn insert(&mut self, lock: Lock) -> Result<usize, InsertError> {
        if self.locks.len() >= MAX_PENDING_LOCKS {
            return Err(InsertError::Full);
        }
        if self.slots.contains_key(&lock.secret_hash) {
            return Err(InsertError::DuplicateSecretHash(lock.secret_hash));
        }
        self.total = self
            .total
            .checked_add(lock.amount)
            .ok_or(InsertError::Overflow)?;
        let slot = self.locks.len();
        self.locks.push(lock);
        self.slots.insert(lock.secret_hash, slot);
        self.levels[0].push(lock.leaf_hash());
        self.rehash_path(slot);
        Ok(slot)
    }

    /// Removes the lock with this secret hash; the last lock moves into its slot.
    /// Returns the slot it held and the lock.
    pub fn remove(&mut self, secret_hash: &SecretHash) -> Option<(usize, Lock)> {
        let slot = self.slots.remove(secret_hash)?;
        let lock = self.locks.swap_remove(slot);
        self.levels[0].swap_remove(slot);
        // Subtracting a lock that was added can't underflow.
        self.total = self.total.checked_sub(lock.amount).unwrap_or(Amount::ZERO);
        let last = self.locks.len();
        if slot < last {
            self.slots.insert(self.locks[slot].secret_hash, slot);
            self.rehash_path(slot);
        }
        self.rehash_path(last);
        Some((slot, lock))
    }

    /// Undoes the last [`insert`](Self::insert).
    pub(crate) fn undo_insert(&mut self) {
        if let Some(lock) = self.locks.last() {
            let hash = lock.secret_hash;
            self.remove(&hash);
        }
    }

    /// Undoes a [`remove`](Self::remove) that returned `(slot, lock)`: the moved lock goes back
    /// to the last slot and `lock` back to `slot`, so the root is what it was.
    pub(crate) fn undo_remove(&mut self, slot: usize, lock: Lock) {
        let last = self.locks.len();
        if slot < last {
            let moved = self.locks[slot];
            self.locks.push(moved);
            let moved_leaf = self.levels[0][slot];
            self.levels[0].push(moved_leaf);
            self.slots.insert(moved.secret_hash, last);
            self.rehash_path(last);
            self.locks[slot] = lock;
            self.levels[0][slot] = lock.leaf_hash();
            self.rehash_path(slot);
        } else {
            self.locks.push(lock);
            self.levels[0].push(lock.leaf_hash());
            self.rehash_path(slot);
        }
        self.slots.insert(lock.secret_hash, slot);
        self.total = self.total.checked_add(lock.amount).unwrap_or(Amount::MAX);
    }

    /// The membership proof of the lock with this secret hash.
    pub fn proof(&self, secret_hash: &SecretHash) -> Option<LockProof> {
        let slot = *self.slots.get(secret_hash)?;
        let height = self.levels.len() - 1;
        let siblings = (0..height)
            .map(|k| {
                self.levels[k]
                    .get((slot >> k) ^ 1)
                    .copied()
                    .unwrap_or(B256::ZERO)
            })
            .collect();
        Some(LockProof {
            index: slot as u64,
            siblings,
        })
    }

    /// Recomputes the ancestors of leaf `slot` after it changed, appeared or disappeared, growing
    /// or trimming levels so the tree stays exactly `ceil(log2(n))` deep.
    fn rehash_path(&mut self, slot: usize) {
        let mut index = slot;
        let mut k = 0;
        while self.levels[k].len() > 1 {
            let parent_len = self.levels[k].len().div_ceil(2);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::with_capacity(parent_len));
            }
            let (below, above) = self.levels.split_at_mut(k + 1);
            let (children, parents) = (&below[k], &mut above[0]);
            parents.truncate(parent_len);
            let parent = index / 2;
            if parent < parent_len {
                let right = children.get(2 * parent + 1).copied().unwrap_or(B256::ZERO);
                let hash = node_hash(&children[2 * parent], &right);
                if parent == parents.len() {
                    parents.push(hash);
                } else {
                    parents[parent] = hash;
                }
            }
            index = parent;
            k += 1;
        }
        self.levels.truncate(k + 1);
    }
}

/// An inner node of the locks tree: `keccak256(left ‖ right)`.
fn node_hash(left: &B256, right: &B256) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left.as_slice());
    buf[32..].copy_from_slice(right.as_slice());
    keccak256(buf)
}

/// The locks root of `locks` in slot order, computed from scratch: the reference definition that
/// [`PendingLocks`] maintains incrementally.
pub fn locks_root(locks: &[Lock]) -> B256 {
    let mut level: Vec<B256> = locks.iter().map(Lock::leaf_hash).collect();
    if level.is_empty() {
        return B256::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| node_hash(&pair[0], pair.get(1).unwrap_or(&B256::ZERO)))
            .collect();
    }
    level[0]
}

/// Whether `proof` shows `lock` is committed to by `root`, as the contract checks it.
pub fn verify_lock_proof(root: &B256, lock: &Lock, proof: &LockProof) -> bool {
    if proof.siblings.len() < 64 && proof.index >> proof.siblings.len() != 0 {
        return false;
    }
    let hash = proof
        .siblings
        .iter()
        .enumerate()
        .fold(lock.leaf_hash(), |hash, (k, sibling)| {
            if (proof.index >> k) & 1 == 0 {
                node_hash(&hash, sibling)
            } else {
                node_hash(sibling, &hash)
            }
        });
    hash == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockNumber;
    use proptest::prelude::*;

    fn lock(n: u64) -> Lock {
        Lock {
            amount: Amount::from(n + 1),
            expiration: BlockNumber(1000 + n),
            secret_hash: SecretHash(keccak256(n.to_be_bytes())),
        }
    }

    #[test]
    fn small_trees_match_the_definition() {
        let (a, b, c) = (lock(0), lock(1), lock(2));
        let z = B256::ZERO;
        assert_eq!(locks_root(&[]), z);
        assert_eq!(locks_root(&[a]), a.leaf_hash());
        let ab = node_hash(&a.leaf_hash(), &b.leaf_hash());
        assert_eq!(locks_root(&[a, b]), ab);
        let c0 = node_hash(&c.leaf_hash(), &z);
        assert_eq!(locks_root(&[a, b, c]), node_hash(&ab, &c0));
    }

    #[test]
    fn a_default_set_is_an_empty_one() {
        // `Default` once left the tree without its leaf level, so the first insert panicked.
        let mut set = PendingLocks::default();
        assert_eq!(set, PendingLocks::new());
        set.insert(lock(0)).unwrap();
        assert_eq!(set.root(), locks_root(&[lock(0)]));
    }

    #[test]
    fn remove_swaps_the_last_lock_into_the_hole() {
        let mut set = PendingLocks::from_locks((0..5).map(lock)).unwrap();
        assert_eq!(set.remove(&lock(1).secret_hash), Some((1, lock(1))));
        let order: Vec<Lock> = set.iter().copied().collect();
        assert_eq!(order, vec![lock(0), lock(4), lock(2), lock(3)]);
        assert_eq!(set.root(), locks_root(&order));
        assert_eq!(set.total(), Amount::from(1 + 5 + 3 + 4u64));
    }

    #[test]
    fn insert_rejects_duplicates_overflow_and_a_full_set() {
        let mut set = PendingLocks::new();
        set.insert(lock(0)).unwrap();
        let root = set.root();
        assert_eq!(
            set.insert(lock(0)),
            Err(InsertError::DuplicateSecretHash(lock(0).secret_hash))
        );
        let huge = Lock {
            amount: Amount::MAX,
            ..lock(1)
        };
        assert_eq!(set.insert(huge), Err(InsertError::Overflow));
        assert_eq!(
            (set.len(), set.root()),
            (1, root),
            "a rejected insert changes nothing"
        );

        let mut full = PendingLocks::from_locks((0..MAX_PENDING_LOCKS as u64).map(lock)).unwrap();
        assert_eq!(full.insert(lock(1 << 40)), Err(InsertError::Full));
        for slot in [0, 511, 512, 1023] {
            let l = full.iter().nth(slot).copied().unwrap();
            let proof = full.proof(&l.secret_hash).unwrap();
            assert_eq!(proof.siblings.len(), 10);
            assert!(verify_lock_proof(&full.root(), &l, &proof));
        }
    }

    #[test]
    fn proofs_reject_a_wrong_lock_slot_or_depth() {
        let set = PendingLocks::from_locks((0..6).map(lock)).unwrap();
        let root = set.root();
        let proof = set.proof(&lock(3).secret_hash).unwrap();
        assert!(verify_lock_proof(&root, &lock(3), &proof));
        assert!(!verify_lock_proof(&root, &lock(2), &proof));
        let wrong_slot = LockProof {
            index: 2,
            ..proof.clone()
        };
        assert!(!verify_lock_proof(&root, &lock(3), &wrong_slot));
        let out_of_range = LockProof {
            index: proof.index + 8,
            ..proof.clone()
        };
        assert!(!verify_lock_proof(&root, &lock(3), &out_of_range));
        let mut shallow = proof.clone();
        shallow.siblings.pop();
        assert!(!verify_lock_proof(&root, &lock(3), &shallow));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Remove(usize),
        UndoInsert(u64),
        UndoRemove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..64).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (64u64..128).prop_map(Op::UndoInsert),
            1 => any::<usize>().prop_map(Op::UndoRemove),
        ]
    }

    proptest! {
        /// The incrementally kept root equals the from-scratch definition after any sequence of
        /// inserts, swap-removes and undos, and every pending lock has a valid proof.
        #[test]
        fn incremental_tree_matches_reference(ops in prop::collection::vec(op(), 1..120)) {
            let mut set = PendingLocks::new();
            for op in ops {
                match op {
                    Op::Insert(n) => { let _ = set.insert(lock(n)); }
                    Op::Remove(pick) if !set.is_empty() => {
                        let hash = set.iter().nth(pick % set.len()).unwrap().secret_hash;
                        set.remove(&hash);
                    }
                    Op::UndoInsert(n) => {
                        let before = set.root();
                        if set.insert(lock(n)).is_ok() {
                            set.undo_insert();
                            prop_assert_eq!(set.root(), before);
                        }
                    }
                    Op::UndoRemove(pick) if !set.is_empty() => {
                        let before: Vec<Lock> = set.iter().copied().collect();
                        let hash = before[pick % before.len()].secret_hash;
                        let (slot, removed) = set.remove(&hash).unwrap();
                        set.undo_remove(slot, removed);
                        let after: Vec<Lock> = set.iter().copied().collect();
                        prop_assert_eq!(after, before);
                    }
                    _ => {}
                }
                let locks: Vec<Lock> = set.iter().copied().collect();
                prop_assert_eq!(set.root(), locks_root(&locks));
                let total = locks.iter().try_fold(Amount::ZERO, |t, l| t.checked_add(l.amount));
                prop_assert_eq!(Some(set.total()), total);
                for l in &locks {
                    prop_assert_eq!(set.get(&l.secret_hash), Some(l));
                    let proof = set.proof(&l.secret_hash).unwrap();
                    prop_assert!(verify_lock_proof(&set.root(), l, &proof));
                }
            }
        }
    }
}

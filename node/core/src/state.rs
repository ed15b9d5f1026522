//! The node's bookkeeping that a crash must not lose, and how it is persisted: entry by entry,
//! each call writing only the entries it changed (so a record's size follows the change, not
//! the node's size; a message's removal from the outbox may wait for a later call's batch,
//! see `Node`'s docs).
//!
//! Each map of the live [`NodeState`] is a [`TrackedMap`]: it lends an entry for change only
//! by marking its key. `finish` compares the marked entries with the copy last persisted and
//! writes a [`Record::Entry`] for every one that differs (`None` for one that is gone), so a
//! call's work follows what it changed, not the node's size (a hub has thousands of
//! channels). No mutation site has to remember to mark anything: there is no other way to
//! change an entry. A driver keeps the latest value of each [`EntryKey`] (a table per kind,
//! if it likes) and hands them all back to [`Node::restore`](crate::Node::restore).

use crate::api::Record;
use crate::close::Closing;
use crate::invoice::PaymentId;
use crate::monitor::{ChannelMonitor, InFlight};
use crate::outbox::Outbox;
use crate::payments::{Payment, ReceivedLock, SentLock};
use crate::wire::MessageId;
use crate::withdraw::Withdrawing;
use alloy_primitives::Address;
use hoplite_htlc::{Amount, ChannelId, Secret, SecretHash, Signature};
use hoplite_routing::Policy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::collections::btree_map::{self, BTreeMap};
use std::time::Duration;

/// The node's bookkeeping that a crash must not lose: the work in flight, never the history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeState {
    /// Random words drawn, messages and chain requests made, cooperative closes proposed so
    /// far (each one's number comes from its counter, so a restored node never reuses one),
    /// and the policy set last.
    pub(crate) counters: Counters,
    /// Messages to peers until they are acknowledged.
    pub(crate) outbox: Outbox,
    /// Deposits to make once a channel we asked for opens, by partner.
    pub(crate) pending_opens: TrackedMap<Address, Amount>,
    pub(crate) payments: TrackedMap<PaymentId, Payment>,
    pub(crate) received: TrackedMap<(SecretHash, ChannelId), ReceivedLock>,
    pub(crate) sent: TrackedMap<(SecretHash, ChannelId), SentLock>,
    pub(crate) secrets: TrackedMap<SecretHash, Secret>,
    /// Our channels' on-chain duties.
    pub(crate) monitors: TrackedMap<ChannelId, ChannelMonitor>,
    /// Secret registrations out on the chain.
    pub(crate) registrations: TrackedMap<SecretHash, InFlight>,
    /// Our channels in a cooperative close.
    pub(crate) closing: TrackedMap<ChannelId, Closing>,
    /// The latest partner's proposal we answered, by channel.
    pub(crate) close_answered: TrackedMap<ChannelId, u64>,
    /// The partner's signature of a channel's announcement, for a capacity the chain has not
    /// shown us yet.
    pub(crate) announcement_parts: TrackedMap<ChannelId, (Amount, Signature)>,
    /// Our channels settled and forgotten: a replay of the chain does not take them up again.
    pub(crate) forgotten: TrackedMap<ChannelId, ()>,
    /// Our channels frozen by a withdrawal under way.
    pub(crate) withdrawing: TrackedMap<ChannelId, Withdrawing>,
}

/// The node's counters and its policy: one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub(crate) draws: u64,
    pub(crate) messages: u64,
    pub(crate) chain_requests: u64,
    pub(crate) close_rounds: u64,
    /// The policy last set with `set_policy`; `None`: the configuration's.
    pub(crate) policy: Option<Policy>,
}

/// Which entry of the node's bookkeeping a [`Record::Entry`] holds; keep the latest value of
/// each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntryKey {
    /// The node's counters (ids drawn so far) and its policy.
    Counters,
    /// A message to a peer, until it is acknowledged.
    Message(Address, MessageId),
    /// A deposit to make once a channel with this partner opens.
    PendingOpen(Address),
    /// A payment we make.
    Payment(PaymentId),
    /// What a lock sent to us (by secret hash and channel) is for.
    Received(SecretHash, ChannelId),
    /// What a lock we sent is for.
    Sent(SecretHash, ChannelId),
    /// A secret of a pending lock.
    Secret(SecretHash),
    /// A channel's on-chain duties.
    Monitor(ChannelId),
    /// A secret registration out on the chain.
    Registration(SecretHash),
    /// A cooperative close of a channel.
    Closing(ChannelId),
    /// The partner's latest cooperative-close proposal we answered.
    CloseAnswered(ChannelId),
    /// The partner's signature of a channel's announcement.
    AnnouncementPart(ChannelId),
    /// A channel of ours settled and forgotten.
    Forgotten(ChannelId),
    /// A withdrawal under way in a channel of ours.
    Withdrawing(ChannelId),
}

/// An entry's value: opaque bytes only [`Node::restore`](crate::Node::restore) reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryValue(Vec<u8>);

/// A stored entry that does not decode: the store is not what this node wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("persisted entry {key:?} does not decode")]
pub struct CorruptEntry {
    /// The entry.
    pub key: EntryKey,
}

fn encode<V: Serialize>(value: &V) -> EntryValue {
    // Plain data into a Vec: postcard can't fail on it. Room for most entries from the start
    // (from an empty `Vec` postcard grows it by doubling, copying at each step); what is not
    // used is given back, as the entry is kept until it changes.
    let mut bytes =
        postcard::to_extend(value, Vec::with_capacity(256)).expect("the bookkeeping serialises");
    bytes.shrink_to_fit();
    EntryValue(bytes)
}

/// A map of the bookkeeping that marks every key it lends for change (or inserts, or
/// removes) until [`NodeState::catch_up`] takes the marks. Reads go through `Deref`; there is
/// no `DerefMut`, so no change escapes the marks.
#[derive(Debug)]
pub(crate) struct TrackedMap<K, V> {
    map: BTreeMap<K, V>,
    /// Keys whose entry may have changed since the last `catch_up`.
    marked: BTreeSet<K>,
}

impl<K, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            marked: BTreeSet::new(),
        }
    }
}

/// The same entries and no marks: a copy to compare against, not a second record of changes.
impl<K: Clone, V: Clone> Clone for TrackedMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            marked: BTreeSet::new(),
        }
    }
}

/// Equal when the entries are: the marks are bookkeeping of the bookkeeping.
impl<K: PartialEq, V: PartialEq> PartialEq for TrackedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Eq, V: Eq> Eq for TrackedMap<K, V> {}

impl<K, V> std::ops::Deref for TrackedMap<K, V> {
    type Target = BTreeMap<K, V>;

    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Ord + Clone, V> TrackedMap<K, V> {
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.marked.insert(key.clone());
        self.map.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.marked.insert(key.clone());
        }
        removed
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.marked.insert(key.clone());
        Some(value)
    }

    pub(crate) fn entry(&mut self, key: K) -> btree_map::Entry<'_, K, V> {
        self.marked.insert(key.clone());
        self.map.entry(key)
    }

    /// Keeps the entries `keep` holds for (it sees them, it can't change them).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let marked = &mut self.marked;
        self.map.retain(|key, value| {
            let kept = keep(key, value);
            if !kept {
                marked.insert(key.clone());
            }
            kept
        });
    }

    /// Every value, for change: marks every key (a walk over the whole map anyway).
    pub(crate) fn values_mut(&mut self) -> btree_map::ValuesMut<'_, K, V> {
        self.marked.extend(self.map.keys().cloned());
        self.map.values_mut()
    }

    /// The keys marked since the last `catch_up`.
    pub(crate) fn marked(&self) -> impl Iterator<Item = &K> {
        self.marked.iter()
    }
}

/// Writes a record for every marked entry of `live` that differs from `persisted`, brings
/// `persisted` up to date and clears the marks.
fn catch_up_map<K: Ord + Clone, V: PartialEq + Clone + Serialize>(
    persisted: &mut TrackedMap<K, V>,
    live: &mut TrackedMap<K, V>,
    key: impl Fn(&K) -> EntryKey,
    out: &mut Vec<Record>,
) {
    for k in std::mem::take(&mut live.marked) {
        match live.map.get(&k) {
            Some(v) if persisted.map.get(&k) != Some(v) => {
                persisted.map.insert(k.clone(), v.clone());
                out.push(Record::Entry {
                    key: key(&k),
                    value: Some(encode(v)),
                });
            }
            Some(_) => {}
            None => {
                if persisted.map.remove(&k).is_some() {
                    out.push(Record::Entry {
                        key: key(&k),
                        value: None,
                    });
                }
            }
        }
    }
}

fn put<K: Ord + Clone, V: DeserializeOwned>(
    map: &mut TrackedMap<K, V>,
    k: K,
    value: Option<&EntryValue>,
) -> Result<(), postcard::Error> {
    match value {
        Some(bytes) => {
            map.insert(k, postcard::from_bytes(&bytes.0)?);
        }
        None => {
            map.remove(&k);
        }
    }
    Ok(())
}

impl NodeState {
    /// Brings `self`, the state as last persisted, up to `live`, writing a record for each
    /// marked entry that differs, and clears `live`'s marks. The pattern names every field: one added does not compile until it
    /// is persisted (and restored, in [`Self::apply`]).
    pub(crate) fn catch_up(&mut self, live: &mut NodeState, out: &mut Vec<Record>) {
        let NodeState {
            counters,
            outbox,
            pending_opens,
            payments,
            received,
            sent,
            secrets,
            monitors,
            registrations,
            closing,
            close_answered,
            announcement_parts,
            forgotten,
            withdrawing,
        } = live;
        if self.counters != *counters {
            self.counters = *counters;
            out.push(Record::Entry {
                key: EntryKey::Counters,
                value: Some(encode(counters)),
            });
        }
        catch_up_map(
            &mut self.outbox.messages,
            &mut outbox.messages,
            |(to, id)| EntryKey::Message(*to, *id),
            out,
        );
        catch_up_map(
            &mut self.pending_opens,
            pending_opens,
            |a| EntryKey::PendingOpen(*a),
            out,
        );
        catch_up_map(&mut self.payments, payments, |p| EntryKey::Payment(*p), out);
        catch_up_map(
            &mut self.received,
            received,
            |(h, c)| EntryKey::Received(*h, *c),
            out,
        );
        catch_up_map(&mut self.sent, sent, |(h, c)| EntryKey::Sent(*h, *c), out);
        catch_up_map(&mut self.secrets, secrets, |h| EntryKey::Secret(*h), out);
        catch_up_map(&mut self.monitors, monitors, |c| EntryKey::Monitor(*c), out);
        catch_up_map(
            &mut self.registrations,
            registrations,
            |h| EntryKey::Registration(*h),
            out,
        );
        catch_up_map(&mut self.closing, closing, |c| EntryKey::Closing(*c), out);
        catch_up_map(
            &mut self.close_answered,
            close_answered,
            |c| EntryKey::CloseAnswered(*c),
            out,
        );
        catch_up_map(
            &mut self.announcement_parts,
            announcement_parts,
            |c| EntryKey::AnnouncementPart(*c),
            out,
        );
        catch_up_map(
            &mut self.forgotten,
            forgotten,
            |c| EntryKey::Forgotten(*c),
            out,
        );
        catch_up_map(
            &mut self.withdrawing,
            withdrawing,
            |c| EntryKey::Withdrawing(*c),
            out,
        );
    }

    /// Takes back one persisted entry (`None`: it is gone).
    pub(crate) fn apply(
        &mut self,
        key: EntryKey,
        value: Option<&EntryValue>,
    ) -> Result<(), CorruptEntry> {
        let result = match key {
            EntryKey::Counters => value
                .map_or(Ok(Counters::default()), |bytes| {
                    postcard::from_bytes(&bytes.0)
                })
                .map(|counters| self.counters = counters),
            EntryKey::Message(to, id) => put(&mut self.outbox.messages, (to, id), value),
            EntryKey::PendingOpen(a) => put(&mut self.pending_opens, a, value),
            EntryKey::Payment(p) => put(&mut self.payments, p, value),
            EntryKey::Received(h, c) => put(&mut self.received, (h, c), value),
            EntryKey::Sent(h, c) => put(&mut self.sent, (h, c), value),
            EntryKey::Secret(h) => put(&mut self.secrets, h, value),
            EntryKey::Monitor(c) => put(&mut self.monitors, c, value),
            EntryKey::Registration(h) => put(&mut self.registrations, h, value),
            EntryKey::Closing(c) => put(&mut self.closing, c, value),
            EntryKey::CloseAnswered(c) => put(&mut self.close_answered, c, value),
            EntryKey::AnnouncementPart(c) => put(&mut self.announcement_parts, c, value),
            EntryKey::Forgotten(c) => put(&mut self.forgotten, c, value),
            EntryKey::Withdrawing(c) => put(&mut self.withdrawing, c, value),
        };
        result.map_err(|_| CorruptEntry { key })
    }

    /// The state as restored: what was persisted is what is persisted (the copy returned
    /// second; the first call compares the restored entries with it once and finds them
    /// equal); the outbox sends everything again.
    pub(crate) fn restored(mut self, now: Duration) -> (Self, Self) {
        let messages = std::mem::take(&mut self.outbox.messages);
        self.outbox = Outbox::restored(messages, now);
        let persisted = self.clone();
        (self, persisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(records: &[Record]) -> Vec<(EntryKey, bool)> {
        records
            .iter()
            .map(|r| match r {
                Record::Entry { key, value } => (*key, value.is_some()),
                other => panic!("not an entry: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn catch_up_writes_what_each_way_of_changing_changed_and_nothing_else() {
        let secret = |n: u8| (SecretHash([n; 32].into()), Secret([n; 32].into()));
        let mut live = NodeState::default();
        for n in 1..=5 {
            let (hash, value) = secret(n);
            live.secrets.insert(hash, value);
        }
        let mut persisted = NodeState::default();
        let mut out = Vec::new();
        persisted.catch_up(&mut live, &mut out);
        assert_eq!(out.len(), 5);

        // Lent but left as it was, or removed when absent: nothing to write.
        out.clear();
        let _ = live.secrets.get_mut(&secret(1).0);
        let _ = live.secrets.entry(secret(2).0);
        live.secrets.remove(&secret(9).0);
        live.secrets.retain(|_, _| true);
        persisted.catch_up(&mut live, &mut out);
        assert!(out.is_empty(), "{out:?}");

        // Changed through each door: each written once.
        let (_, other) = secret(7);
        *live.secrets.get_mut(&secret(1).0).unwrap() = other;
        live.secrets.entry(secret(2).0).and_modify(|s| *s = other);
        live.secrets.remove(&secret(3).0);
        live.secrets.retain(|hash, _| *hash != secret(4).0);
        persisted.catch_up(&mut live, &mut out);
        let mut expected = vec![
            (EntryKey::Secret(secret(1).0), true),
            (EntryKey::Secret(secret(2).0), true),
            (EntryKey::Secret(secret(3).0), false),
            (EntryKey::Secret(secret(4).0), false),
        ];
        expected.sort();
        let mut written = keys(&out);
        written.sort();
        assert_eq!(written, expected);
        assert_eq!(persisted, live);

        // Every value lent at once: only the changed one is written.
        out.clear();
        for value in live.secrets.values_mut().take(1) {
            *value = secret(8).1;
        }
        persisted.catch_up(&mut live, &mut out);
        assert_eq!(keys(&out), vec![(EntryKey::Secret(secret(1).0), true)]);
        assert_eq!(persisted, live);
    }
}

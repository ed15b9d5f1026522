//! The node's bookkeeping that a crash must not lose, and how it is persisted: entry by entry,
//! each call writing only the entries it changed (so a record's size follows the change, not
//! the node's size).
//!
//! `finish` compares the live [`NodeState`] with the copy last persisted and writes a
//! [`Record::Entry`] for every entry that differs (`None` for one that is gone). No mutation
//! site has to remember to mark anything: whatever changed is written. A driver keeps the
//! latest value of each [`EntryKey`] (a table per kind, if it likes) and hands them all back
//! to [`Node::restore`](crate::Node::restore).

use crate::api::Record;
use crate::close::Closing;
use crate::invoice::PaymentId;
use crate::monitor::{ChannelMonitor, InFlight};
use crate::outbox::Outbox;
use crate::payments::{Payment, ReceivedLock, SentLock};
use crate::wire::{Message, MessageId};
use crate::withdraw::Withdrawing;
use alloy_primitives::Address;
use hoplite_htlc::{Amount, ChannelId, Secret, SecretHash, Signature};
use hoplite_routing::Policy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub(crate) pending_opens: BTreeMap<Address, Amount>,
    pub(crate) payments: BTreeMap<PaymentId, Payment>,
    pub(crate) received: BTreeMap<(SecretHash, ChannelId), ReceivedLock>,
    pub(crate) sent: BTreeMap<(SecretHash, ChannelId), SentLock>,
    pub(crate) secrets: BTreeMap<SecretHash, Secret>,
    /// Our channels' on-chain duties.
    pub(crate) monitors: BTreeMap<ChannelId, ChannelMonitor>,
    /// Secret registrations out on the chain.
    pub(crate) registrations: BTreeMap<SecretHash, InFlight>,
    /// Our channels in a cooperative close.
    pub(crate) closing: BTreeMap<ChannelId, Closing>,
    /// The latest partner's proposal we answered, by channel.
    pub(crate) close_answered: BTreeMap<ChannelId, u64>,
    /// The partner's signature of a channel's announcement, for a capacity the chain has not
    /// shown us yet.
    pub(crate) announcement_parts: BTreeMap<ChannelId, (Amount, Signature)>,
    /// Our channels settled and forgotten: a replay of the chain does not take them up again.
    pub(crate) forgotten: BTreeMap<ChannelId, ()>,
    /// Our channels frozen by a withdrawal under way.
    pub(crate) withdrawing: BTreeMap<ChannelId, Withdrawing>,
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
    // Plain data into a Vec: postcard can't fail on it.
    EntryValue(postcard::to_allocvec(value).expect("the bookkeeping serialises"))
}

/// Writes a record for every entry of `live` that differs from `persisted`, and brings
/// `persisted` up to date.
fn diff_map<K: Ord + Clone, V: PartialEq + Clone + Serialize>(
    persisted: &mut BTreeMap<K, V>,
    live: &BTreeMap<K, V>,
    key: impl Fn(&K) -> EntryKey,
    out: &mut Vec<Record>,
) {
    persisted.retain(|k, _| {
        let kept = live.contains_key(k);
        if !kept {
            out.push(Record::Entry {
                key: key(k),
                value: None,
            });
        }
        kept
    });
    for (k, v) in live {
        if persisted.get(k) != Some(v) {
            persisted.insert(k.clone(), v.clone());
            out.push(Record::Entry {
                key: key(k),
                value: Some(encode(v)),
            });
        }
    }
}

fn put<K: Ord, V: DeserializeOwned>(
    map: &mut BTreeMap<K, V>,
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
    /// entry that differs. The pattern names every field: one added does not compile until it
    /// is persisted (and restored, in [`Self::apply`]).
    pub(crate) fn catch_up(&mut self, live: &NodeState, out: &mut Vec<Record>) {
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
        diff_map(
            &mut self.outbox.messages,
            &outbox.messages,
            |(to, id)| EntryKey::Message(*to, *id),
            out,
        );
        diff_map(
            &mut self.pending_opens,
            pending_opens,
            |a| EntryKey::PendingOpen(*a),
            out,
        );
        diff_map(&mut self.payments, payments, |p| EntryKey::Payment(*p), out);
        diff_map(
            &mut self.received,
            received,
            |(h, c)| EntryKey::Received(*h, *c),
            out,
        );
        diff_map(&mut self.sent, sent, |(h, c)| EntryKey::Sent(*h, *c), out);
        diff_map(&mut self.secrets, secrets, |h| EntryKey::Secret(*h), out);
        diff_map(&mut self.monitors, monitors, |c| EntryKey::Monitor(*c), out);
        diff_map(
            &mut self.registrations,
            registrations,
            |h| EntryKey::Registration(*h),
            out,
        );
        diff_map(&mut self.closing, closing, |c| EntryKey::Closing(*c), out);
        diff_map(
            &mut self.close_answered,
            close_answered,
            |c| EntryKey::CloseAnswered(*c),
            out,
        );
        diff_map(
            &mut self.announcement_parts,
            announcement_parts,
            |c| EntryKey::AnnouncementPart(*c),
            out,
        );
        diff_map(
            &mut self.forgotten,
            forgotten,
            |c| EntryKey::Forgotten(*c),
            out,
        );
        diff_map(
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

    /// The state as restored: what was persisted is what is persisted; the outbox sends
    /// everything again.
    pub(crate) fn restored(mut self, now: Duration) -> (Self, Self) {
        let messages: BTreeMap<(Address, MessageId), Message> =
            std::mem::take(&mut self.outbox.messages);
        self.outbox = Outbox::restored(messages, now);
        let persisted = self.clone();
        (self, persisted)
    }
}

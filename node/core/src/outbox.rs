//! Messages to peers until each is acknowledged: at-least-once delivery, bounded.
//!
//! A message is persisted (it is part of what a crash must not lose) and sent once the call
//! that made it is durable; it goes out again `resend_after` later, and when its peer
//! reconnects, until acknowledged. Nothing is resent to a peer reported offline. What one peer
//! can make us hold is bounded: a new message supersedes the unacknowledged one it repeats or
//! replaces ([`Message::supersedes`]), and the node signs no more updates to a partner with
//! `max_unacked` of them waiting.

use crate::state::TrackedMap;
use crate::wire::{Message, MessageId};
use alloy_primitives::Address;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Unacknowledged messages by peer and id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outbox {
    /// The messages (persisted).
    pub(crate) messages: TrackedMap<(Address, MessageId), Message>,
    /// When each went out last; absent while held back until its call is durable. Not
    /// persisted: a restored node sends everything again.
    sent_at: BTreeMap<(Address, MessageId), Duration>,
    /// Peers whose connection is down.
    offline: BTreeSet<Address>,
}

/// Every id of `peer`'s messages.
fn of(peer: Address) -> std::ops::RangeInclusive<(Address, MessageId)> {
    (peer, MessageId(0))..=(peer, MessageId(u64::MAX))
}

impl Outbox {
    /// Queues `message` to `to` under `id` (held back until [`Self::mark_sent`]), dropping
    /// what it supersedes.
    pub(crate) fn push(&mut self, to: Address, id: MessageId, message: Message) {
        let superseded: Vec<(Address, MessageId)> = self
            .messages
            .range(of(to))
            .filter(|(_, older)| message.supersedes(older))
            .map(|(key, _)| *key)
            .collect();
        for key in superseded {
            self.remove(key);
        }
        self.messages.insert((to, id), message);
    }

    /// The peer acknowledged `id`.
    pub(crate) fn acknowledged(&mut self, from: Address, id: MessageId) {
        self.remove((from, id));
    }

    /// Drops `peer`'s messages for which `drop` holds.
    pub(crate) fn drop_where(&mut self, peer: Address, drop: impl Fn(&Message) -> bool) {
        let dropped: Vec<(Address, MessageId)> = self
            .messages
            .range(of(peer))
            .filter(|(_, message)| drop(message))
            .map(|(key, _)| *key)
            .collect();
        for key in dropped {
            self.remove(key);
        }
    }

    /// Drops every peer's messages for which `drop` holds.
    pub(crate) fn drop_all_where(&mut self, drop: impl Fn(&Message) -> bool) {
        let dropped: Vec<(Address, MessageId)> = self
            .messages
            .iter()
            .filter(|(_, message)| drop(message))
            .map(|(key, _)| *key)
            .collect();
        for key in dropped {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: (Address, MessageId)) {
        self.messages.remove(&key);
        self.sent_at.remove(&key);
        // Whether a peer is offline matters only while something waits for it.
        if self.len(key.0) == 0 {
            self.offline.remove(&key.0);
        }
    }

    /// The message `id` to `to` goes out now (its call is durable).
    pub(crate) fn mark_sent(
        &mut self,
        to: Address,
        id: MessageId,
        now: Duration,
    ) -> Option<&Message> {
        let message = self.messages.get(&(to, id))?;
        self.sent_at.insert((to, id), now);
        Some(message)
    }

    /// The messages sent before to peers not offline, last sent `resend_after` ago or more:
    /// marked sent now.
    pub(crate) fn due(
        &mut self,
        now: Duration,
        resend_after: Duration,
    ) -> Vec<(Address, MessageId, Message)> {
        let mut due = Vec::new();
        for (key, at) in &mut self.sent_at {
            if *at + resend_after <= now && !self.offline.contains(&key.0) {
                *at = now;
                due.push((key.0, key.1, self.messages[key].clone()));
            }
        }
        due
    }

    /// When the next resend is due.
    pub(crate) fn next_due(&self, resend_after: Duration) -> Option<Duration> {
        self.sent_at
            .iter()
            .filter(|((peer, _), _)| !self.offline.contains(peer))
            .map(|(_, at)| *at + resend_after)
            .min()
    }

    /// `peer` is connected again: everything sent to it before goes out now.
    pub(crate) fn reconnected(
        &mut self,
        peer: Address,
        now: Duration,
    ) -> Vec<(MessageId, Message)> {
        self.offline.remove(&peer);
        let mut again = Vec::new();
        for ((_, id), at) in self.sent_at.range_mut(of(peer)) {
            *at = now;
            again.push((*id, self.messages[&(peer, *id)].clone()));
        }
        again
    }

    /// `peer`'s connection is down: nothing is resent to it until it is back. (Only peers
    /// with something waiting are remembered, so the set stays as small as the outbox.)
    pub(crate) fn disconnected(&mut self, peer: Address) {
        if self.len(peer) > 0 {
            self.offline.insert(peer);
        }
    }

    /// A restored outbox: every message counts as sent now, so it goes out again when its
    /// peer connects or its resend is due.
    pub(crate) fn restored(
        messages: TrackedMap<(Address, MessageId), Message>,
        now: Duration,
    ) -> Self {
        let sent_at = messages.keys().map(|key| (*key, now)).collect();
        Self {
            messages,
            sent_at,
            offline: BTreeSet::new(),
        }
    }

    /// How many messages to `peer` wait for its acknowledgement.
    pub(crate) fn len(&self, peer: Address) -> usize {
        self.messages.range(of(peer)).count()
    }

    /// How many balance updates to `peer` wait for its acknowledgement.
    pub(crate) fn updates(&self, peer: Address) -> usize {
        self.messages
            .range(of(peer))
            .filter(|(_, m)| matches!(m, Message::Update { .. }))
            .count()
    }
}

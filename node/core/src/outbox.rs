//! Messages to peers until each is acknowledged: at-least-once delivery, bounded.
//!
//! A message is persisted (it is part of what a crash must not lose) and sent once the call
//! that made it is durable; it goes out again `resend_after` later, and when its peer
//! reconnects, until acknowledged. Its removal is not written at once (see `Node`'s docs on
//! persistence): a node that crashed may send an acknowledged message again after restart.
//! Nothing is resent to a peer reported offline. What one peer can make us hold is bounded: a new message supersedes the unacknowledged one it repeats or
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
    /// The entries of `sent_at` whose peer is not offline, by time: the next resend without a
    /// walk over every message waiting (a hub has one or more per channel).
    resend_order: BTreeSet<(Duration, Address, MessageId)>,
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
        if let Some(at) = self.sent_at.remove(&key) {
            self.resend_order.remove(&(at, key.0, key.1));
        }
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
        if let Some(before) = self.sent_at.insert((to, id), now) {
            self.resend_order.remove(&(before, to, id));
        }
        if !self.offline.contains(&to) {
            self.resend_order.insert((now, to, id));
        }
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
        while let Some(&(at, peer, id)) = self.resend_order.first() {
            if at + resend_after > now {
                break;
            }
            self.resend_order.pop_first();
            due.push((peer, id));
        }
        // In the order of peers and ids, as they wait.
        due.sort_unstable();
        due.into_iter()
            .map(|(peer, id)| {
                self.sent_at.insert((peer, id), now);
                self.resend_order.insert((now, peer, id));
                (peer, id, self.messages[&(peer, id)].clone())
            })
            .collect()
    }

    /// When the next resend is due.
    pub(crate) fn next_due(&self, resend_after: Duration) -> Option<Duration> {
        self.resend_order
            .first()
            .map(|(at, _, _)| *at + resend_after)
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
            self.resend_order.remove(&(*at, peer, *id));
            *at = now;
            self.resend_order.insert((now, peer, *id));
            again.push((*id, self.messages[&(peer, *id)].clone()));
        }
        again
    }

    /// `peer`'s connection is down: nothing is resent to it until it is back. (Only peers
    /// with something waiting are remembered, so the set stays as small as the outbox.)
    pub(crate) fn disconnected(&mut self, peer: Address) {
        if self.len(peer) > 0 && self.offline.insert(peer) {
            for ((_, id), at) in self.sent_at.range(of(peer)) {
                self.resend_order.remove(&(*at, peer, *id));
            }
        }
    }

    /// A restored outbox: every message counts as sent now, so it goes out again when its
    /// peer connects or its resend is due.
    pub(crate) fn restored(
        messages: TrackedMap<(Address, MessageId), Message>,
        now: Duration,
    ) -> Self {
        let sent_at = messages.keys().map(|key| (*key, now)).collect();
        let resend_order = messages
            .keys()
            .map(|(peer, id)| (now, *peer, *id))
            .collect();
        Self {
            messages,
            sent_at,
            resend_order,
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

    /// The peers with at least `count` balance updates waiting for their acknowledgement.
    pub(crate) fn peers_with_updates(&self, count: usize) -> BTreeSet<Address> {
        let mut waiting: BTreeMap<Address, usize> = BTreeMap::new();
        for ((peer, _), message) in self.messages.iter() {
            if matches!(message, Message::Update { .. }) {
                *waiting.entry(*peer).or_default() += 1;
            }
        }
        waiting
            .into_iter()
            .filter(|&(_, n)| n >= count)
            .map(|(peer, _)| peer)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use hoplite_htlc::Secret;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push { peer: u8, id: u64, secret: u8 },
        MarkSent { peer: u8, id: u64 },
        Acknowledge { peer: u8, id: u64 },
        Disconnect(u8),
        Reconnect(u8),
        Due,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let peer = 0..3u8;
        let id = 0..6u64;
        prop_oneof![
            (peer.clone(), id.clone(), 0..4u8).prop_map(|(peer, id, secret)| Op::Push {
                peer,
                id,
                secret
            }),
            (peer.clone(), id.clone()).prop_map(|(peer, id)| Op::MarkSent { peer, id }),
            (peer.clone(), id).prop_map(|(peer, id)| Op::Acknowledge { peer, id }),
            peer.clone().prop_map(Op::Disconnect),
            peer.prop_map(Op::Reconnect),
            Just(Op::Due),
            (1..4u64).prop_map(Op::Wait),
        ]
    }

    fn address(peer: u8) -> Address {
        Address::repeat_byte(peer + 1)
    }

    /// What is due, by a walk over every message: the definition the index must agree with.
    fn due_by_walk(
        outbox: &Outbox,
        now: Duration,
        resend_after: Duration,
    ) -> Vec<(Address, MessageId)> {
        outbox
            .sent_at
            .iter()
            .filter(|((peer, _), at)| **at + resend_after <= now && !outbox.offline.contains(peer))
            .map(|(key, _)| *key)
            .collect()
    }

    fn next_due_by_walk(outbox: &Outbox, resend_after: Duration) -> Option<Duration> {
        outbox
            .sent_at
            .iter()
            .filter(|((peer, _), _)| !outbox.offline.contains(peer))
            .map(|(_, at)| *at + resend_after)
            .min()
    }

    proptest! {
        /// After any sequence of sends, acknowledgements, disconnections and resends, the
        /// time-ordered index gives the same next resend and the same resends, in the same
        /// order, as a walk over every waiting message.
        #[test]
        fn resend_order_matches_a_walk(ops in prop::collection::vec(op(), 1..80)) {
            let resend_after = Duration::from_secs(2);
            let mut outbox = Outbox::default();
            let mut now = Duration::ZERO;
            for op in ops {
                match op {
                    Op::Push { peer, id, secret } => outbox.push(
                        address(peer),
                        MessageId(id),
                        Message::RevealSecret { secret: Secret(B256::repeat_byte(secret)) },
                    ),
                    Op::MarkSent { peer, id } => {
                        let _ = outbox.mark_sent(address(peer), MessageId(id), now);
                    }
                    Op::Acknowledge { peer, id } => outbox.acknowledged(address(peer), MessageId(id)),
                    Op::Disconnect(peer) => outbox.disconnected(address(peer)),
                    Op::Reconnect(peer) => {
                        let again = outbox.reconnected(address(peer), now);
                        let waiting = outbox.sent_at.range(of(address(peer))).count();
                        prop_assert_eq!(again.len(), waiting);
                    }
                    Op::Due => {
                        let expected = due_by_walk(&outbox, now, resend_after);
                        let due: Vec<(Address, MessageId)> = outbox
                            .due(now, resend_after)
                            .into_iter()
                            .map(|(peer, id, _)| (peer, id))
                            .collect();
                        prop_assert_eq!(due, expected);
                    }
                    Op::Wait(seconds) => now += Duration::from_secs(seconds),
                }
                prop_assert_eq!(
                    outbox.next_due(resend_after),
                    next_due_by_walk(&outbox, resend_after)
                );
                let online = outbox
                    .sent_at
                    .keys()
                    .filter(|(peer, _)| !outbox.offline.contains(peer))
                    .count();
                prop_assert_eq!(outbox.resend_order.len(), online);
            }
        }
    }
}

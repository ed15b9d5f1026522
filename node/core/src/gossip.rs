//! Gossip: announcing our channels, our policies and ourselves, and judging what peers relay.
//!
//! Our policy is announced for every open channel of ours, again before peers would prune it
//! (at half of `stale_after`), and disabled while the channel closes cooperatively. A channel
//! is announced once both participants signed its capacity (each sends its signature to the
//! other, `Message::AnnouncementSignature`, when the deposits or withdrawals change it); the
//! node itself when a channel of ours opens and again at half of `stale_after`. Every message
//! a peer relays is checked against the chain and the store's rules, and the verdict goes back
//! to the runtime.
//!
//! A capacity is signed at the first block after the one that changed it, not at once: the
//! partner's first deposit usually lands a block after the opener's (two deposits on one
//! channel conflict in a block), and signing each would announce every new channel twice.

use crate::api::{CommandError, Event, Output, PeerError};
use crate::node::Node;
use crate::wire::Message;
use alloy_primitives::Address;
use hoplite_chain::events::Phase;
use hoplite_gossip::{
    ChannelAnnouncement, ChannelFacts, ChannelUpdate, GossipMessage, NodeAnnouncement, Rejection,
    Verdict,
};
use hoplite_htlc::crypto::Recovered;
use hoplite_htlc::{Amount, BlockNumber, ChannelId, Signature};
use hoplite_routing::{NodeId, Policy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

impl Node {
    /// Drops policies silent past `stale_after` from routing, and announces ours again when
    /// half of that has passed since we last did (so peers never prune our channels).
    pub(crate) fn refresh_gossip(&mut self) {
        // Asked under a read lock first: nothing is usually stale, and a write lock on a
        // shared view waits for every search other threads are running in it.
        let pruned = if !self.view.read().gossip.prune_due(self.now) {
            Vec::new()
        } else {
            let mut view = self.view.write();
            let pruned = view.gossip.prune(self.now);
            for &(channel, participant) in &pruned {
                let silent = Policy {
                    base_fee: 0,
                    fee_millionths: 0,
                    expiry_delta: 0,
                    min_lock: 0,
                    max_lock: 0,
                    enabled: false,
                };
                let _ = view
                    .graph
                    .update_policy(channel, NodeId(participant), silent);
            }
            pruned
        };
        for (channel, participant) in pruned {
            if participant == self.address {
                self.policy_schedule.set(channel, None);
            }
        }
        for channel in self.policy_schedule.due(self.now) {
            if self.partner_of(channel).is_err() {
                // Not open any more: nothing to announce.
                self.policy_schedule.set(channel, None);
                continue;
            }
            match self.announcement_due(channel) {
                Some(at) if at <= self.now => self.announce_policy(channel),
                // Announced meanwhile, or pruned: as the view says.
                due => self.policy_schedule.set(channel, due),
            }
        }
        if self
            .node_announcement_due()
            .is_some_and(|at| at <= self.now)
        {
            self.announce_node();
        }
    }

    /// When we should announce ourselves again (`None`: we have no open channel).
    pub(crate) fn node_announcement_due(&self) -> Option<Duration> {
        // Asked after every call: one read of the view (a lock other threads take too).
        let view = self.view.read();
        if !self.channels.keys().any(|id| view.is_open(*id)) {
            return None;
        }
        let last = view
            .gossip
            .node_announcement(self.address)
            .map_or(Duration::ZERO, |a| Duration::from_secs(a.timestamp));
        Some(last + self.config.gossip.stale_after / 2)
    }

    /// Signs and publishes our alias and addresses.
    pub(crate) fn announce_node(&mut self) {
        // Each channel that opens asks: a hub's thousands would sign as many announcements
        // that are ignored (ours was taken less than `min_update_interval` ago).
        let timestamp = self.now.as_secs();
        if !self
            .view
            .read()
            .gossip
            .node_announcement_is_news(self.now, self.address, timestamp)
        {
            return;
        }
        let announcement = NodeAnnouncement::sign(
            &self.key,
            self.config.token_network,
            timestamp,
            self.config.alias.clone(),
            self.config.addresses.clone(),
        );
        let has_channel = self.has_open_channel(self.address);
        // Ours was accepted less than `min_update_interval` ago: peers would ignore it too.
        let verdict =
            self.view
                .write()
                .gossip
                .handle_node_announcement(self.now, &announcement, has_channel);
        if verdict == Verdict::Accept {
            self.outputs
                .push_back(Output::Publish(GossipMessage::NodeAnnouncement(
                    announcement,
                )));
        }
    }

    /// What the chain shows of `channel`, if it is open.
    fn channel_facts(&self, channel: ChannelId) -> Option<ChannelFacts> {
        let view = self.view.read();
        let onchain = view
            .onchain
            .get(&channel)
            .filter(|c| c.phase == Phase::Opened)?;
        Some(ChannelFacts {
            participants: [onchain.state.participant1, onchain.state.participant2],
            capacity: Amount::from(onchain.available()),
        })
    }

    /// Whether `node` has a channel open on-chain.
    fn has_open_channel(&self, node: Address) -> bool {
        self.view.read().has_open_channel(node)
    }

    /// Our `channel`'s capacity changed in `block`: its announcement waits for the next block.
    pub(crate) fn capacity_changed(&mut self, channel: ChannelId, block: BlockNumber) {
        if self.channels.contains_key(&channel) {
            let last = self.capacity_changed.entry(channel).or_insert(block);
            *last = (*last).max(block);
        }
    }

    /// A block came in: share the announcement of each channel whose capacity changed before
    /// it (and not since).
    pub(crate) fn announce_settled_capacities(&mut self) {
        let block = self.block;
        let settled: Vec<ChannelId> = self
            .capacity_changed
            .iter()
            .filter(|&(_, &changed)| changed < block)
            .map(|(&channel, _)| channel)
            .collect();
        for channel in settled {
            self.capacity_changed.remove(&channel);
            self.share_announcement(channel);
        }
    }

    /// Our `channel`'s capacity settled: send the partner our signature of it, and announce
    /// the channel if we hold the partner's already.
    fn share_announcement(&mut self, channel: ChannelId) {
        let Ok(partner) = self.partner_of(channel) else {
            return;
        };
        let Some(facts) = self
            .channel_facts(channel)
            .filter(|f| !f.capacity.is_zero())
        else {
            return;
        };
        let digest = ChannelAnnouncement::digest(
            self.config.token_network,
            channel,
            facts.participants,
            facts.capacity,
        );
        let (signature, known) = Recovered::sign(&self.key, &digest);
        self.announcement_signed
            .insert(channel, (facts.capacity, signature, known.clone()));
        self.send(
            partner,
            Message::AnnouncementSignature {
                channel,
                capacity: facts.capacity,
                signature,
            },
        );
        if let Some((capacity, theirs)) = self.state.announcement_parts.get(&channel).copied()
            && capacity == facts.capacity
        {
            known.scope(|| self.announce_channel(channel, facts, signature, theirs));
        }
    }

    /// The partner's signature of our channel's capacity: announce the channel if the chain
    /// shows that capacity and it has settled for us too (no change since the last block), or
    /// keep it until then (`share_announcement`).
    pub(crate) fn handle_announcement_signature(
        &mut self,
        from: Address,
        channel: ChannelId,
        capacity: Amount,
        signature: Signature,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        let facts = self
            .channel_facts(channel)
            .ok_or(PeerError::ChannelClosed(channel))?;
        // An older capacity than the chain's is not worth announcing, nor checking.
        if capacity < facts.capacity {
            return Ok(());
        }
        let digest = ChannelAnnouncement::digest(
            self.config.token_network,
            channel,
            facts.participants,
            capacity,
        );
        let mut known = Recovered::recover([(digest, signature)]);
        if known.signer(&digest, &signature).ok() != Some(from) {
            return Err(PeerError::BadSignature);
        }
        if capacity == facts.capacity && !self.capacity_changed.contains_key(&channel) {
            // The store checks both signatures again: ours and theirs are known by now. Ours
            // was made when this capacity settled (`share_announcement`), unless we restarted
            // since.
            let ours = match self.announcement_signed.remove(&channel) {
                Some((signed, ours, mine)) if signed == capacity => {
                    known.extend(mine);
                    ours
                }
                _ => {
                    let (ours, mine) = Recovered::sign(&self.key, &digest);
                    known.extend(mine);
                    ours
                }
            };
            known.scope(|| self.announce_channel(channel, facts, ours, signature));
        } else {
            // The partner saw the chain, or the block after the change, before us: announce
            // when we catch up (`share_announcement`).
            self.state
                .announcement_parts
                .insert(channel, (capacity, signature));
        }
        Ok(())
    }

    /// Drops the halves of `channel`'s announcement we hold: it was announced, or it closed.
    pub(crate) fn forget_announcement(&mut self, channel: ChannelId) {
        self.state.announcement_parts.remove(&channel);
        self.announcement_signed.remove(&channel);
        self.capacity_changed.remove(&channel);
    }

    /// Publishes `channel`'s announcement with both participants' signatures of `facts`.
    fn announce_channel(
        &mut self,
        channel: ChannelId,
        facts: ChannelFacts,
        ours: Signature,
        theirs: Signature,
    ) {
        let signatures = if facts.participants[0] == self.address {
            [ours, theirs]
        } else {
            [theirs, ours]
        };
        let announcement = ChannelAnnouncement {
            token_network: self.config.token_network,
            channel,
            participants: facts.participants,
            capacity: facts.capacity,
            signatures,
        };
        self.forget_announcement(channel);
        let verdict = self
            .view
            .write()
            .gossip
            .handle_channel_announcement(&announcement, Some(facts));
        if verdict == Verdict::Accept {
            self.outputs
                .push_back(Output::Publish(GossipMessage::ChannelAnnouncement(
                    announcement,
                )));
        }
    }

    /// When our policy for `channel` should be announced again.
    pub(crate) fn announcement_due(&self, channel: ChannelId) -> Option<Duration> {
        let last = self
            .view
            .read()
            .gossip
            .latest(channel, self.address)?
            .timestamp;
        Some(Duration::from_secs(last) + self.config.gossip.stale_after / 2)
    }

    /// Changes our forwarding policy and announces it for every channel we have. Peers that
    /// heard from us less than `min_update_interval` ago ignore the announcement for now; we
    /// enforce the new policy at once.
    pub fn set_policy(&mut self, now: Duration, policy: Policy) -> Result<(), CommandError> {
        self.advance(now);
        let previous = std::mem::replace(&mut self.config.policy, policy);
        if let Err(error) = self.config.check() {
            self.config.policy = previous;
            return Err(error);
        }
        let ours: Vec<ChannelId> = self.channels.keys().copied().collect();
        for channel in ours {
            if self.partner_of(channel).is_ok() {
                self.announce_policy(channel);
            }
        }
        // Kept with the bookkeeping: a restored node forwards at the policy it announced.
        self.state.counters.policy = Some(policy);
        self.finish();
        Ok(())
    }

    /// Signs and publishes our policy for `channel` (disabled while it closes), and routes
    /// with it ourselves.
    pub(crate) fn announce_policy(&mut self, channel: ChannelId) {
        let policy = Policy {
            enabled: self.config.policy.enabled && !self.is_closing(channel),
            ..self.config.policy
        };
        let (update, known) = ChannelUpdate::sign_known(
            &self.key,
            self.config.token_network,
            channel,
            self.now.as_secs(),
            policy,
        );
        known.scope(|| self.apply_channel_update(&update));
        let _ = self
            .view
            .write()
            .graph
            .update_policy(channel, NodeId(self.address), policy);
        self.outputs
            .push_back(Output::Publish(GossipMessage::ChannelUpdate(update)));
    }

    pub(crate) fn handle_gossip(&mut self, from: Address, id: u64, bytes: &[u8]) {
        let verdict = match GossipMessage::decode(bytes) {
            Ok(GossipMessage::ChannelUpdate(update)) => self.apply_channel_update(&update),
            Ok(GossipMessage::ChannelAnnouncement(announcement)) => {
                let facts = self.channel_facts(announcement.channel);
                self.view
                    .write()
                    .gossip
                    .handle_channel_announcement(&announcement, facts)
            }
            Ok(GossipMessage::NodeAnnouncement(announcement)) => {
                let has_channel = self.has_open_channel(announcement.node);
                self.view.write().gossip.handle_node_announcement(
                    self.now,
                    &announcement,
                    has_channel,
                )
            }
            Err(_) => Verdict::Reject(Rejection::Malformed),
        };
        if let Verdict::Reject(rejection) = verdict {
            self.event(Event::GossipRejected { from, rejection });
        }
        self.outputs
            .push_back(Output::GossipVerdict { id, verdict });
    }

    /// Checks an update against the chain and gossip rules and, if accepted, feeds routing.
    pub(crate) fn apply_channel_update(&mut self, update: &ChannelUpdate) -> Verdict {
        let mut view = self.view.write();
        let participants = view
            .onchain
            .get(&update.channel)
            .filter(|c| c.phase == Phase::Opened)
            .map(|c| [c.state.participant1, c.state.participant2]);
        let verdict = view.gossip.handle_update(self.now, update, participants);
        if verdict == Verdict::Accept {
            // The channel is on-chain (checked above), so it is in the graph.
            let _ =
                view.graph
                    .update_policy(update.channel, NodeId(update.participant), update.policy);
        }
        drop(view);
        // Ours (made now, or fed back after a restart): when it is due again follows from
        // whichever of ours the view holds, accepted now or earlier.
        if update.participant == self.address && self.channels.contains_key(&update.channel) {
            let due = self.announcement_due(update.channel);
            self.policy_schedule.set(update.channel, due);
        }
        verdict
    }
}

/// When each of our channels' policy is next due to be announced again, in time order, so
/// finding the next one costs no walk over a hub's channels. An entry may outlive the
/// channel's being open (`refresh_gossip` drops it when due); it is never later than the view
/// says.
#[derive(Debug, Default)]
pub(crate) struct PolicySchedule {
    by_channel: BTreeMap<ChannelId, Duration>,
    by_time: BTreeSet<(Duration, ChannelId)>,
}

impl PolicySchedule {
    /// `channel`'s policy is next due `at` (`None`: not at all).
    pub(crate) fn set(&mut self, channel: ChannelId, at: Option<Duration>) {
        if let Some(before) = self.by_channel.remove(&channel) {
            self.by_time.remove(&(before, channel));
        }
        if let Some(at) = at {
            self.by_channel.insert(channel, at);
            self.by_time.insert((at, channel));
        }
    }

    /// The earliest due.
    pub(crate) fn next(&self) -> Option<Duration> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The channels due by `now`, in time order.
    fn due(&self, now: Duration) -> Vec<ChannelId> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, channel)| *channel)
            .collect()
    }
}

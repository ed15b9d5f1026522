//! Gossip: announcing our channels, our policies and ourselves, and judging what peers relay.
//!
//! Our policy is announced for every open channel of ours, again before peers would prune it
//! (at half of `stale_after`), and disabled while the channel closes cooperatively. A channel
//! is announced once both participants signed its capacity (each sends its signature to the
//! other, `Message::AnnouncementSignature`, whenever the deposits change); the node itself when
//! a channel of ours opens and again at half of `stale_after`. Every message a peer relays is
//! checked against the chain and the store's rules, and the verdict goes back to the runtime.

use crate::api::{CommandError, Event, Output, PeerError};
use crate::node::Node;
use crate::wire::Message;
use alloy_primitives::Address;
use hoplite_chain::events::Phase;
use hoplite_gossip::{
    ChannelAnnouncement, ChannelFacts, ChannelUpdate, GossipMessage, NodeAnnouncement, Rejection,
    Verdict,
};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::{Amount, ChannelId, Signature};
use hoplite_routing::{NodeId, Policy};
use std::time::Duration;

impl Node {
    /// Drops policies silent past `stale_after` from routing, and announces ours again when
    /// half of that has passed since we last did (so peers never prune our channels).
    pub(crate) fn refresh_gossip(&mut self) {
        {
            let mut view = self.view.write();
            for (channel, participant) in view.gossip.prune(self.now) {
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
        }
        let due: Vec<ChannelId> = self
            .channels
            .keys()
            .copied()
            .filter(|id| self.partner_of(*id).is_ok())
            .filter(|id| self.announcement_due(*id).is_some_and(|at| at <= self.now))
            .collect();
        for channel in due {
            self.announce_policy(channel);
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
        let ours = self.channels.keys().any(|id| self.partner_of(*id).is_ok());
        if !ours {
            return None;
        }
        let last = self
            .view
            .read()
            .gossip
            .node_announcement(self.address)
            .map_or(Duration::ZERO, |a| Duration::from_secs(a.timestamp));
        Some(last + self.config.gossip.stale_after / 2)
    }

    /// Signs and publishes our alias and addresses.
    pub(crate) fn announce_node(&mut self) {
        let announcement = NodeAnnouncement::sign(
            &self.key,
            self.config.token_network,
            self.now.as_secs(),
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

    /// The deposits of our `channel` changed: send the partner our signature of its new
    /// capacity, and announce the channel if we hold the partner's already.
    pub(crate) fn share_announcement(&mut self, channel: ChannelId) {
        let Ok(partner) = self.partner_of(channel) else {
            return;
        };
        let Some(facts) = self
            .channel_facts(channel)
            .filter(|f| !f.capacity.is_zero())
        else {
            return;
        };
        let signature = ChannelAnnouncement::sign_part(
            &self.key,
            self.config.token_network,
            channel,
            facts.participants,
            facts.capacity,
        );
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
            self.announce_channel(channel, facts, signature, theirs);
        }
    }

    /// The partner's signature of our channel's capacity: announce the channel if the chain
    /// shows that capacity, or keep it until it does.
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
        if recover_address(&digest, &signature).ok() != Some(from) {
            return Err(PeerError::BadSignature);
        }
        if capacity == facts.capacity {
            let ours = self.key.sign_digest(&digest);
            self.announce_channel(channel, facts, ours, signature);
        } else {
            // The partner saw the chain before us: announce when we catch up.
            self.state
                .announcement_parts
                .insert(channel, (capacity, signature));
        }
        Ok(())
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
        self.state.announcement_parts.remove(&channel);
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

    /// When the policy of one of our open channels is next due to be announced again. (One
    /// look at the view for all of them: this runs after every call.)
    pub(crate) fn next_policy_announcement(&self) -> Option<Duration> {
        let view = self.view.read();
        self.channels
            .keys()
            .filter(|id| view.channel(**id).is_some_and(|c| c.phase == Phase::Opened))
            .filter_map(|id| view.gossip.latest(*id, self.address))
            .map(|latest| {
                Duration::from_secs(latest.timestamp) + self.config.gossip.stale_after / 2
            })
            .min()
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
        let update = ChannelUpdate::sign(
            &self.key,
            self.config.token_network,
            channel,
            self.now.as_secs(),
            policy,
        );
        self.apply_channel_update(&update);
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
        verdict
    }
}

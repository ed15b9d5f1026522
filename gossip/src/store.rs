//! What a node believes about the network, and the verdict on each gossip message.

use crate::{ChannelAnnouncement, ChannelUpdate, NodeAnnouncement};
use alloy_primitives::Address;
use hoplite_htlc::{Amount, ChannelId, TokenNetwork};
use std::collections::BTreeMap;
use std::time::Duration;

/// Limits of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipParams {
    /// Fewest seconds between two accepted updates of one direction, or announcements of one
    /// node (by our clock); more frequent ones are ignored, not relayed.
    pub min_update_interval: Duration,
    /// How far ahead of our clock an update's timestamp may be.
    pub max_clock_skew: Duration,
    /// A direction whose last update, or a node whose last announcement, is older than this is
    /// pruned (each must be announced again periodically, as in Lightning, where two weeks of
    /// silence prune a channel).
    pub stale_after: Duration,
}

impl Default for GossipParams {
    fn default() -> Self {
        Self {
            min_update_interval: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(600),
            stale_after: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// What to do with a gossip message: the runtime reports it to gossipsub.
///
/// A message about a channel that is not open on-chain as far as we know, or a node with no
/// such channel, is ignored, not rejected: the relayer's view of the chain may be ahead of ours
/// (a channel just opened) or behind it (one just closed), and nobody is to blame (LDK does the
/// same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: applied, relay it.
    Accept,
    /// Valid but not news (duplicate, older, or too frequent): don't relay, don't blame.
    Ignore,
    /// Invalid: don't relay, and the peer that sent it is to blame.
    Reject(Rejection),
}

/// What the chain shows of an open channel: what its announcement must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelFacts {
    /// Its participants, in the contract's order.
    pub participants: [Address; 2],
    /// Both deposits less withdrawals.
    pub capacity: Amount,
}

/// Why a gossip message is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a well-formed gossip message.
    #[error("malformed gossip message")]
    Malformed,
    /// For another chain or contract.
    #[error("update for another token network")]
    WrongTokenNetwork,
    /// A channel announcement names other participants than the chain's.
    #[error("channel {0} has other participants on-chain")]
    WrongParticipants(ChannelId),
    /// The named participant is not an end of the channel.
    #[error("{participant} is not a participant of channel {channel}")]
    NotAParticipant {
        /// The channel.
        channel: ChannelId,
        /// Who the update names.
        participant: Address,
    },
    /// A signature does not recover to the participant or node it names.
    #[error("not signed by the participant it names")]
    BadSignature,
    /// The timestamp is too far in the future.
    #[error("timestamp {timestamp} is more than the allowed skew ahead of {now}")]
    FromTheFuture {
        /// The update's.
        timestamp: u64,
        /// Ours, in seconds.
        now: u64,
    },
    /// `min_lock > max_lock`: nothing could be forwarded.
    #[error("min_lock above max_lock")]
    EmptyLockRange,
}

#[derive(Clone, Debug)]
struct Latest<T> {
    message: T,
    /// The signer's timestamp.
    timestamp: u64,
    accepted_at: Duration,
}

/// The latest accepted announcement of each channel and node, and [`ChannelUpdate`] of each
/// channel direction.
///
/// Call the `handle_*` method of every message received (or made locally), with what the chain
/// shows; apply an `Accept`ed update to the routing graph. Call [`prune`](Self::prune) now and
/// then, [`forget_channel`](Self::forget_channel) when a channel closes on-chain and
/// [`forget_node`](Self::forget_node) when a node's last channel does.
#[derive(Clone, Debug)]
pub struct GossipStore {
    token_network: TokenNetwork,
    params: GossipParams,
    latest: BTreeMap<(ChannelId, Address), Latest<ChannelUpdate>>,
    channels: BTreeMap<ChannelId, ChannelAnnouncement>,
    nodes: BTreeMap<Address, Latest<NodeAnnouncement>>,
    /// At most the oldest timestamp kept (exact after a prune): `prune` has nothing to do
    /// until the cutoff passes it, so calling it often costs nothing.
    oldest: u64,
}

impl GossipStore {
    /// An empty store for one token network.
    pub fn new(token_network: TokenNetwork, params: GossipParams) -> Self {
        Self {
            token_network,
            params,
            latest: BTreeMap::new(),
            channels: BTreeMap::new(),
            nodes: BTreeMap::new(),
            oldest: u64::MAX,
        }
    }

    /// Checks a channel announcement against the chain (`facts`: the channel, if open) and
    /// keeps it if it is new. One of a channel we don't know open, or whose capacity differs
    /// from the chain's, is ignored, not rejected: it may be older than a deposit, or we may
    /// not have seen the chain's latest blocks yet.
    pub fn handle_channel_announcement(
        &mut self,
        announcement: &ChannelAnnouncement,
        facts: Option<ChannelFacts>,
    ) -> Verdict {
        if announcement.token_network != self.token_network {
            return Verdict::Reject(Rejection::WrongTokenNetwork);
        }
        let Some(facts) = facts else {
            return Verdict::Ignore;
        };
        if announcement.participants != facts.participants {
            return Verdict::Reject(Rejection::WrongParticipants(announcement.channel));
        }
        let known = self
            .channels
            .get(&announcement.channel)
            .is_some_and(|known| known.capacity == facts.capacity);
        if announcement.capacity != facts.capacity || known {
            return Verdict::Ignore;
        }
        if !announcement.signed_by_participants() {
            return Verdict::Reject(Rejection::BadSignature);
        }
        self.channels.insert(announcement.channel, *announcement);
        Verdict::Accept
    }

    /// Checks a node announcement (`has_channel`: the node has a channel open on-chain, which
    /// bounds how many nodes we keep; if not, it is ignored) and keeps it if it is new.
    pub fn handle_node_announcement(
        &mut self,
        now: Duration,
        announcement: &NodeAnnouncement,
        has_channel: bool,
    ) -> Verdict {
        if announcement.token_network != self.token_network {
            return Verdict::Reject(Rejection::WrongTokenNetwork);
        }
        if !announcement.within_bounds() {
            return Verdict::Reject(Rejection::Malformed);
        }
        if let Err(rejection) = self.check_timestamp(now, announcement.timestamp) {
            return Verdict::Reject(rejection);
        }
        // Already stale: a prune would drop it at once.
        if !has_channel || announcement.timestamp < self.cutoff(now) {
            return Verdict::Ignore;
        }
        if let Some(latest) = self.nodes.get(&announcement.node)
            && !self.is_news(now, announcement.timestamp, latest)
        {
            return Verdict::Ignore;
        }
        if !announcement.signed_by_node() {
            return Verdict::Reject(Rejection::BadSignature);
        }
        self.oldest = self.oldest.min(announcement.timestamp);
        self.nodes.insert(
            announcement.node,
            Latest {
                message: announcement.clone(),
                timestamp: announcement.timestamp,
                accepted_at: now,
            },
        );
        Verdict::Accept
    }

    fn check_timestamp(&self, now: Duration, timestamp: u64) -> Result<(), Rejection> {
        let horizon = now.saturating_add(self.params.max_clock_skew).as_secs();
        if timestamp > horizon {
            return Err(Rejection::FromTheFuture {
                timestamp,
                now: now.as_secs(),
            });
        }
        Ok(())
    }

    /// Whether a message with `timestamp` replaces `latest`: newer, and not too soon after it.
    fn is_news<T>(&self, now: Duration, timestamp: u64, latest: &Latest<T>) -> bool {
        timestamp > latest.timestamp
            && now.saturating_sub(latest.accepted_at) >= self.params.min_update_interval
    }

    /// Checks an update, cheapest test first, and keeps it if it is new. `participants`: the
    /// channel's two ends if it is open on-chain (if not, the update is ignored).
    pub fn handle_update(
        &mut self,
        now: Duration,
        update: &ChannelUpdate,
        participants: Option<[Address; 2]>,
    ) -> Verdict {
        match self.check(now, update, participants) {
            Ok(()) => {}
            Err(Some(rejection)) => return Verdict::Reject(rejection),
            Err(None) => return Verdict::Ignore,
        }
        self.oldest = self.oldest.min(update.timestamp);
        self.latest.insert(
            (update.channel, update.participant),
            Latest {
                message: *update,
                timestamp: update.timestamp,
                accepted_at: now,
            },
        );
        Verdict::Accept
    }

    /// `Err(None)`: valid but not news.
    fn check(
        &self,
        now: Duration,
        update: &ChannelUpdate,
        participants: Option<[Address; 2]>,
    ) -> Result<(), Option<Rejection>> {
        if update.token_network != self.token_network {
            return Err(Some(Rejection::WrongTokenNetwork));
        }
        let participants = participants.ok_or(None)?;
        if !participants.contains(&update.participant) {
            return Err(Some(Rejection::NotAParticipant {
                channel: update.channel,
                participant: update.participant,
            }));
        }
        if update.policy.min_lock > update.policy.max_lock {
            return Err(Some(Rejection::EmptyLockRange));
        }
        self.check_timestamp(now, update.timestamp)?;
        if update.timestamp < self.cutoff(now) {
            // Already stale: a prune would drop it at once (and a sender that sent such
            // updates again and again would have every node prune at every timer).
            return Err(None);
        }
        if let Some(latest) = self.latest.get(&(update.channel, update.participant))
            && !self.is_news(now, update.timestamp, latest)
        {
            // Checked before the signature, which is the expensive part.
            return Err(None);
        }
        match update.signer() {
            Ok(signer) if signer == update.participant => Ok(()),
            _ => Err(Some(Rejection::BadSignature)),
        }
    }

    /// The latest accepted update of `participant`'s direction of `channel`.
    pub fn latest(&self, channel: ChannelId, participant: Address) -> Option<&ChannelUpdate> {
        self.latest
            .get(&(channel, participant))
            .map(|latest| &latest.message)
    }

    /// The accepted announcement of `channel`.
    pub fn channel_announcement(&self, channel: ChannelId) -> Option<&ChannelAnnouncement> {
        self.channels.get(&channel)
    }

    /// The latest accepted announcement of `node`.
    pub fn node_announcement(&self, node: Address) -> Option<&NodeAnnouncement> {
        self.nodes.get(&node).map(|latest| &latest.message)
    }

    /// Whether `node`'s announcement made at `timestamp` would be news now (none kept yet, or
    /// newer than the one kept and `min_update_interval` after it was taken): an announcer
    /// asks before it signs one that would only be ignored.
    pub fn node_announcement_is_news(&self, now: Duration, node: Address, timestamp: u64) -> bool {
        self.nodes
            .get(&node)
            .is_none_or(|latest| self.is_news(now, timestamp, latest))
    }

    /// Forgets a channel's announcement and updates (it closed on-chain).
    pub fn forget_channel(&mut self, channel: ChannelId) {
        self.latest.retain(|(id, _), _| *id != channel);
        self.channels.remove(&channel);
    }

    /// Forgets a node's announcement (its last open channel closed).
    pub fn forget_node(&mut self, node: Address) {
        self.nodes.remove(&node);
    }

    /// Whether [`Self::prune`] may remove anything at `now` (`false`: it surely removes
    /// nothing). A caller that shares the store asks under a read lock before it takes a
    /// write lock to prune.
    pub fn prune_due(&self, now: Duration) -> bool {
        self.cutoff(now) > self.oldest
    }

    /// Removes directions and nodes silent for longer than `stale_after` (by their own
    /// timestamps); returns the directions, so the caller can drop them from the routing graph.
    pub fn prune(&mut self, now: Duration) -> Vec<(ChannelId, Address)> {
        if !self.prune_due(now) {
            return Vec::new();
        }
        let cutoff = self.cutoff(now);
        self.nodes.retain(|_, latest| latest.timestamp >= cutoff);
        let stale: Vec<_> = self
            .latest
            .iter()
            .filter(|(_, latest)| latest.timestamp < cutoff)
            .map(|(key, _)| *key)
            .collect();
        for key in &stale {
            self.latest.remove(key);
        }
        let timestamps = self.latest.values().map(|l| l.timestamp);
        self.oldest = timestamps
            .chain(self.nodes.values().map(|l| l.timestamp))
            .min()
            .unwrap_or(u64::MAX);
        stale
    }

    /// The oldest timestamp (seconds) that is not stale at `now`.
    fn cutoff(&self, now: Duration) -> u64 {
        now.saturating_sub(self.params.stale_after).as_secs()
    }

    /// How many nodes are announced.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many directions have a policy.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no direction has a policy.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

//! What a node believes about other channels' policies, and the verdict on each update.

use crate::ChannelUpdate;
use alloy_primitives::Address;
use hoplite_htlc::{ChannelId, TokenNetwork};
use std::collections::BTreeMap;
use std::time::Duration;

/// Limits of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipParams {
    /// Fewest seconds between two accepted updates of one direction (by our clock); more
    /// frequent ones are ignored, not relayed.
    pub min_update_interval: Duration,
    /// How far ahead of our clock an update's timestamp may be.
    pub max_clock_skew: Duration,
    /// A direction whose last update is older than this is pruned (the side must re-announce
    /// periodically, as in Lightning, where two weeks of silence prune a channel).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: applied, relay it.
    Accept,
    /// Valid but not news (duplicate, older, or too frequent): don't relay, don't blame.
    Ignore,
    /// Invalid: don't relay, and the peer that sent it is to blame.
    Reject(Rejection),
}

/// Why an update is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a well-formed gossip message.
    #[error("malformed gossip message")]
    Malformed,
    /// For another chain or contract.
    #[error("update for another token network")]
    WrongTokenNetwork,
    /// No such channel on-chain (or it was closed).
    #[error("channel {0} is not open on-chain")]
    UnknownChannel(ChannelId),
    /// The named participant is not an end of the channel.
    #[error("{participant} is not a participant of channel {channel}")]
    NotAParticipant {
        /// The channel.
        channel: ChannelId,
        /// Who the update names.
        participant: Address,
    },
    /// The signature does not recover to the named participant.
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

#[derive(Clone, Copy, Debug)]
struct Latest {
    update: ChannelUpdate,
    accepted_at: Duration,
}

/// The latest accepted [`ChannelUpdate`] per channel direction.
///
/// Call [`handle_update`](Self::handle_update) for every update received (or made locally),
/// with the channel's participants as the chain shows them; apply an `Accept`ed update to the
/// routing graph. Call [`prune`](Self::prune) now and then, and [`forget_channel`]
/// (Self::forget_channel) when a channel closes on-chain.
#[derive(Clone, Debug)]
pub struct GossipStore {
    token_network: TokenNetwork,
    params: GossipParams,
    latest: BTreeMap<(ChannelId, Address), Latest>,
}

impl GossipStore {
    /// An empty store for one token network.
    pub fn new(token_network: TokenNetwork, params: GossipParams) -> Self {
        Self {
            token_network,
            params,
            latest: BTreeMap::new(),
        }
    }

    /// Checks an update, cheapest test first, and keeps it if it is new. `participants`: the
    /// channel's two ends if it is open on-chain.
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
        self.latest.insert(
            (update.channel, update.participant),
            Latest {
                update: *update,
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
        let participants = participants.ok_or(Rejection::UnknownChannel(update.channel))?;
        if !participants.contains(&update.participant) {
            return Err(Some(Rejection::NotAParticipant {
                channel: update.channel,
                participant: update.participant,
            }));
        }
        if update.policy.min_lock > update.policy.max_lock {
            return Err(Some(Rejection::EmptyLockRange));
        }
        let horizon = now.saturating_add(self.params.max_clock_skew).as_secs();
        if update.timestamp > horizon {
            return Err(Some(Rejection::FromTheFuture {
                timestamp: update.timestamp,
                now: now.as_secs(),
            }));
        }
        if let Some(latest) = self.latest.get(&(update.channel, update.participant)) {
            // Not news: checked before the signature, which is the expensive part.
            if update.timestamp <= latest.update.timestamp
                || now.saturating_sub(latest.accepted_at) < self.params.min_update_interval
            {
                return Err(None);
            }
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
            .map(|latest| &latest.update)
    }

    /// Forgets a channel's updates (it closed on-chain).
    pub fn forget_channel(&mut self, channel: ChannelId) {
        self.latest.retain(|(id, _), _| *id != channel);
    }

    /// Removes directions silent for longer than `stale_after` (by their own timestamps);
    /// returns them, so the caller can drop them from the routing graph.
    pub fn prune(&mut self, now: Duration) -> Vec<(ChannelId, Address)> {
        let cutoff = now.saturating_sub(self.params.stale_after).as_secs();
        let stale: Vec<_> = self
            .latest
            .iter()
            .filter(|(_, latest)| latest.update.timestamp < cutoff)
            .map(|(key, _)| *key)
            .collect();
        for key in &stale {
            self.latest.remove(key);
        }
        stale
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

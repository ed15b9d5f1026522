//! What travels on the gossip topic, and its bounded encoding.

use crate::{ChannelAnnouncement, ChannelUpdate, NodeAnnouncement};
use alloy_primitives::B256;
use hoplite_htlc::Signature;
use serde::{Deserialize, Serialize};

/// An upper bound on an encoded [`GossipMessage`]: a node announcement at its bounds takes
/// 675 bytes.
pub const MAX_GOSSIP_SIZE: usize = 1024;

/// A message of the gossip topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// A channel and its capacity.
    ChannelAnnouncement(ChannelAnnouncement),
    /// A channel direction's policy.
    ChannelUpdate(ChannelUpdate),
    /// A node's alias and addresses.
    NodeAnnouncement(NodeAnnouncement),
}

/// Bytes that are not a well-formed [`GossipMessage`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_GOSSIP_SIZE`].
    #[error("gossip message of {0} bytes exceeds the {MAX_GOSSIP_SIZE}-byte limit")]
    TooLong(usize),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the gossip message")]
    TrailingBytes(usize),
    /// Not a valid encoding.
    #[error("malformed gossip message: {0}")]
    Malformed(#[from] postcard::Error),
    /// A node announcement's alias or addresses exceed their bounds.
    #[error("node announcement fields exceed their bounds")]
    FieldTooLong,
}

impl GossipMessage {
    /// The wire encoding (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a GossipMessage always serialises")
    }

    /// Parses [`encode`](Self::encode)'s output and checks the bounds of its fields. Never
    /// panics; the input is bounded by [`MAX_GOSSIP_SIZE`], so what it can make us allocate is
    /// too.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_GOSSIP_SIZE {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let (message, rest): (Self, _) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        if let Self::NodeAnnouncement(announcement) = &message
            && !announcement.within_bounds()
        {
            return Err(DecodeError::FieldTooLong);
        }
        Ok(message)
    }

    /// Every signature a receiver checks, with the digest it is checked against: what a driver
    /// can recover ahead of the call ([`hoplite_htlc::crypto::Recovered`]).
    pub fn signatures(&self) -> Vec<(B256, Signature)> {
        match self {
            Self::ChannelAnnouncement(a) => {
                let digest = ChannelAnnouncement::digest(
                    a.token_network,
                    a.channel,
                    a.participants,
                    a.capacity,
                );
                a.signatures.iter().map(|s| (digest, *s)).collect()
            }
            Self::ChannelUpdate(update) => vec![(update.digest(), update.signature)],
            Self::NodeAnnouncement(a) => vec![(a.digest(), a.signature)],
        }
    }
}

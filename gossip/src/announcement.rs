//! Announcements: a channel's existence and capacity, signed by both participants, and a
//! node's alias and network addresses, signed by the node.

use alloy_primitives::{Address, B256};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::{Amount, ChannelId, PrivateKey, Signature, TokenNetwork};
use serde::{Deserialize, Serialize};

mod eip712 {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        /// A channel and what it holds, signed by both participants.
        struct ChannelAnnouncement {
            uint256 channelId;
            address participant1;
            address participant2;
            uint256 capacity;
        }

        /// A node's alias and the addresses it listens on, signed by the node.
        struct NodeAnnouncement {
            address node;
            uint64 timestamp;
            string alias;
            string[] addresses;
        }
    }
}

/// The longest alias, in bytes.
pub const MAX_ALIAS_LEN: usize = 32;
/// The most addresses a node announces.
pub const MAX_ADDRESSES: usize = 4;
/// The longest address (a libp2p multiaddr in text), in bytes.
pub const MAX_ADDRESS_LEN: usize = 128;

/// A channel of the token network and its capacity (both deposits less withdrawals, as the
/// chain showed them when signed), signed by both participants: nodes that do not follow every
/// event of the contract learn the network from these, checking each one against the chain.
///
/// Signed as the EIP-712 type `ChannelAnnouncement(uint256 channelId,address
/// participant1,address participant2,uint256 capacity)` under the token network's domain, by
/// each participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAnnouncement {
    /// The chain and contract of the channel.
    pub token_network: TokenNetwork,
    /// The channel.
    pub channel: ChannelId,
    /// Its participants, in the contract's order.
    pub participants: [Address; 2],
    /// What it holds.
    pub capacity: Amount,
    /// Each participant's signature, in the same order.
    pub signatures: [Signature; 2],
}

impl ChannelAnnouncement {
    /// The digest both participants sign.
    pub fn digest(
        token_network: TokenNetwork,
        channel: ChannelId,
        participants: [Address; 2],
        capacity: Amount,
    ) -> B256 {
        token_network.typed_digest(&eip712::ChannelAnnouncement {
            channelId: channel.0,
            participant1: participants[0],
            participant2: participants[1],
            capacity: capacity.to_u256(),
        })
    }

    /// One participant's signature of the announcement.
    pub fn sign_part(
        key: &PrivateKey,
        token_network: TokenNetwork,
        channel: ChannelId,
        participants: [Address; 2],
        capacity: Amount,
    ) -> Signature {
        key.sign_digest(&Self::digest(
            token_network,
            channel,
            participants,
            capacity,
        ))
    }

    /// Whether both signatures are the participants' (in order).
    pub fn signed_by_participants(&self) -> bool {
        let digest = Self::digest(
            self.token_network,
            self.channel,
            self.participants,
            self.capacity,
        );
        self.participants
            .iter()
            .zip(&self.signatures)
            .all(|(participant, signature)| {
                recover_address(&digest, signature).ok() == Some(*participant)
            })
    }
}

/// A node's alias and the addresses it can be reached at (libp2p multiaddrs, as text; the
/// runtime parses them), signed by the node: this binds its network identity to its address
/// on-chain. Only a node with a channel open on-chain is announced.
///
/// Signed as the EIP-712 type `NodeAnnouncement(address node,uint64 timestamp,string
/// alias,string[] addresses)` under the token network's domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// The chain and contract it pays on.
    pub token_network: TokenNetwork,
    /// The node's address on-chain.
    pub node: Address,
    /// Seconds (the signer's clock); a newer announcement replaces an older one.
    pub timestamp: u64,
    /// A name for people, at most [`MAX_ALIAS_LEN`] bytes.
    pub alias: String,
    /// Where to connect, at most [`MAX_ADDRESSES`] of at most [`MAX_ADDRESS_LEN`] bytes.
    pub addresses: Vec<String>,
    /// The node's signature.
    pub signature: Signature,
}

impl NodeAnnouncement {
    /// `key`'s announcement.
    pub fn sign(
        key: &PrivateKey,
        token_network: TokenNetwork,
        timestamp: u64,
        alias: String,
        addresses: Vec<String>,
    ) -> Self {
        let mut announcement = Self {
            token_network,
            node: key.address(),
            timestamp,
            alias,
            addresses,
            signature: Signature(Default::default()),
        };
        announcement.signature = key.sign_digest(&announcement.digest());
        announcement
    }

    /// The EIP-712 digest that is signed.
    pub fn digest(&self) -> B256 {
        self.token_network.typed_digest(&eip712::NodeAnnouncement {
            node: self.node,
            timestamp: self.timestamp,
            alias: self.alias.clone(),
            addresses: self.addresses.clone(),
        })
    }

    /// Whether its fields are within their bounds.
    pub fn within_bounds(&self) -> bool {
        self.alias.len() <= MAX_ALIAS_LEN
            && self.addresses.len() <= MAX_ADDRESSES
            && self.addresses.iter().all(|a| a.len() <= MAX_ADDRESS_LEN)
    }

    /// Whether the node it names signed it.
    pub fn signed_by_node(&self) -> bool {
        recover_address(&self.digest(), &self.signature).ok() == Some(self.node)
    }
}

//! Hoplite's gossip logic: what nodes tell each other about the network, and what they believe.
//! Pure: time comes in as `now`; the libp2p glue (gossipsub) lives in the node's runtime, which
//! reports each [`Verdict`] back to gossipsub so invalid messages are not relayed.
//!
//! # Layout
//! - [`ChannelAnnouncement`]: a channel and its capacity, EIP-712-signed by both participants;
//!   [`NodeAnnouncement`]: a node's alias and addresses, signed by the node
//!   (`announcement.rs`).
//! - [`ChannelUpdate`]: one direction's fee policy and limits, EIP-712-signed by the side that
//!   sends on it (`update.rs`).
//! - [`GossipMessage`]: what travels on the gossip topic, with a bounded postcard encoding
//!   (`message.rs`).
//! - [`GossipStore`]: what a node believes, and the verdict on every message: each is checked
//!   against the chain (the channel is open on-chain with these participants and this
//!   capacity; an announced node has a channel open), newer timestamp wins, a rate limit per
//!   direction and per node, pruning of closed channels and silent directions and nodes.
//!
//! A node that follows every event of the TokenNetwork (as `hoplite-node` does) learns the
//! channels from the chain, the authority an announcement is checked against; announcements
//! are validated and relayed for nodes that don't, and tell everyone the nodes' addresses.

mod announcement;
mod message;
mod store;
mod update;

pub use announcement::{
    ChannelAnnouncement, MAX_ADDRESS_LEN, MAX_ADDRESSES, MAX_ALIAS_LEN, NodeAnnouncement,
};
pub use message::{DecodeError, GossipMessage, MAX_GOSSIP_SIZE};
pub use store::{ChannelFacts, GossipParams, GossipStore, Rejection, Verdict};
pub use update::ChannelUpdate;

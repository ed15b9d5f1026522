//! Hoplite's gossip logic: what nodes tell each other about the network, and what they believe.
//! Pure: time comes in as `now`; the libp2p glue (gossipsub) lives in the node's runtime, which
//! reports each [`Verdict`] back to gossipsub so invalid messages are not relayed.
//!
//! # Layout
//! - [`ChannelUpdate`]: one direction's fee policy and limits, EIP-712-signed by the side that
//!   sends on it (`update.rs`).
//! - [`GossipMessage`]: what travels on the gossip topic, with a bounded postcard encoding.
//! - [`GossipStore`]: the latest accepted update per channel direction; validation against the
//!   chain (the signer must be that side's participant of a channel that exists on-chain), newer
//!   timestamp wins, a per-direction rate limit, and pruning of silent directions.
//!
//! Channels themselves are not announced here: a node follows the TokenNetwork's events, so it
//! learns every channel, its participants and its deposits from the chain, which is the
//! authority an announcement would have to be checked against anyway.

mod store;
mod update;

pub use store::{GossipParams, GossipStore, Rejection, Verdict};
pub use update::{ChannelUpdate, DecodeError, GossipMessage, MAX_GOSSIP_SIZE};

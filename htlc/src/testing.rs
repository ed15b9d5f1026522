//! Both ends of one channel in one process, for tests and benchmarks (feature `test-utils`).
//!
//! Alice is index 0, Bob index 1. Each end is the [`Channel`] as that participant sees it;
//! updates travel through their wire encoding, as they would between two nodes.

use crate::{
    Amount, BalanceChange, BalanceUpdate, BlockNumber, Channel, ChannelConfig, ChannelId,
    PrivateKey, ReceiveError, SendError, Side, TokenNetwork,
};
use alloy_primitives::{B256, address, keccak256};

pub mod vectors;

/// The token network every test pair lives in.
pub const TOKEN_NETWORK: TokenNetwork = TokenNetwork {
    chain_id: 1337,
    address: address!("00000000000000000000000000000000000070ce"),
};

/// Timeouts of every test pair.
pub const CONFIG: ChannelConfig = ChannelConfig {
    reveal_timeout: 10,
    settle_timeout: 100,
};

/// A deterministic key: `keccak256(seed ‖ index)`, rehashed until valid.
pub fn key(seed: u64, index: u8) -> PrivateKey {
    PrivateKey::from_bytes(&key_bytes(seed, index)).expect("key_bytes returns a valid key")
}

/// The 32 secret bytes of [`key`]`(seed, index)`, for signers outside this crate (a wallet).
pub fn key_bytes(seed: u64, index: u8) -> B256 {
    let mut bytes = [0u8; 9];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8] = index;
    let mut candidate: B256 = keccak256(bytes);
    while PrivateKey::from_bytes(&candidate).is_err() {
        candidate = keccak256(candidate);
    }
    candidate
}

/// Both ends of one channel.
#[derive(Clone, Debug)]
pub struct ChannelPair {
    /// Alice's and Bob's keys.
    pub keys: [PrivateKey; 2],
    /// Alice's and Bob's views of the channel.
    pub ends: [Channel; 2],
}

impl ChannelPair {
    /// Channel 1 with both deposits made, keys derived from `seed`.
    pub fn new(seed: u64, deposits: [Amount; 2]) -> Self {
        Self::open([key(seed, 0), key(seed, 1)], ChannelId::from(1), deposits)
    }

    /// A channel between the holders of `keys`, with both deposits made.
    pub fn open(keys: [PrivateKey; 2], id: ChannelId, deposits: [Amount; 2]) -> Self {
        let end = |me: usize| {
            let mut channel = Channel::new(
                TOKEN_NETWORK,
                id,
                CONFIG,
                keys[me].address(),
                keys[1 - me].address(),
            )
            .expect("test config is valid");
            for (who, deposit) in deposits.iter().enumerate() {
                let side = if who == me { Side::Ours } else { Side::Partner };
                channel
                    .set_total_deposit(side, *deposit)
                    .expect("test deposits fit");
            }
            channel
        };
        Self {
            ends: [end(0), end(1)],
            keys,
        }
    }

    /// `from` signs `change`.
    pub fn send(
        &mut self,
        from: usize,
        change: BalanceChange,
        block: BlockNumber,
    ) -> Result<BalanceUpdate, SendError> {
        self.ends[from].send(&self.keys[from], change, block)
    }

    /// The other end receives `update` through its wire encoding.
    pub fn deliver(
        &mut self,
        to: usize,
        update: &BalanceUpdate,
        block: BlockNumber,
    ) -> Result<(), ReceiveError> {
        let decoded = BalanceUpdate::decode(&update.encode()).expect("own encoding decodes");
        self.ends[to].handle_update(&decoded, block)
    }

    /// `from` signs `change` and the other end applies it; panics with the reason if either fails.
    pub fn transfer(&mut self, from: usize, change: BalanceChange, block: BlockNumber) {
        let update = self
            .send(from, change, block)
            .unwrap_or_else(|e| panic!("send: {e}"));
        self.deliver(1 - from, &update, block)
            .unwrap_or_else(|e| panic!("deliver: {e}"));
    }

    /// What `who` can spend, as `who` sees it.
    pub fn spendable(&self, who: usize) -> Amount {
        self.ends[who].spendable(Side::Ours)
    }
}

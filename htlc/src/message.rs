//! The messages that move one direction of a channel to a new signed state, and their encoding.
//!
//! The node wraps these with routing data and delivery ids; this module owns only what the
//! channel checks. The encoding is postcard, and decoding is bounded: input longer than
//! [`MAX_UPDATE_SIZE`] is refused before any parsing, and nothing in a [`BalanceUpdate`] is
//! variable-length, so hostile bytes can't make us allocate.

use crate::{Amount, Lock, Secret, SecretHash, SignedBalanceProof};
use serde::{Deserialize, Serialize};

/// An upper bound on an encoded [`BalanceUpdate`]; the largest possible one is 316 bytes.
pub const MAX_UPDATE_SIZE: usize = 512;

/// What a new balance proof changes, relative to the sender's previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BalanceChange {
    /// `transferredAmount += amount`, no lock: direct payments and metering.
    DirectTransfer {
        /// What is paid.
        amount: Amount,
    },
    /// Adds a lock: one hop of a multi-hop payment.
    LockedTransfer {
        /// The new lock.
        lock: Lock,
    },
    /// Removes the lock locked to `sha256(secret)` and adds its amount to `transferredAmount`.
    Unlock {
        /// The preimage of the lock's secret hash.
        secret: Secret,
    },
    /// Removes a lock whose expiration block has passed; its amount returns to the sender.
    LockExpired {
        /// The expired lock's secret hash.
        secret_hash: SecretHash,
    },
}

/// A change with the sender's signed proof of the state after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceUpdate {
    /// What changed.
    pub change: BalanceChange,
    /// The sender's new state, signed.
    pub proof: SignedBalanceProof,
}

/// Bytes that are not a well-formed [`BalanceUpdate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_UPDATE_SIZE`].
    #[error("update of {0} bytes exceeds the {MAX_UPDATE_SIZE}-byte limit")]
    TooLong(usize),
    /// Bytes left over after a complete update.
    #[error("{0} trailing bytes after the update")]
    TrailingBytes(usize),
    /// Not a valid encoding.
    #[error("malformed update: {0}")]
    Malformed(#[from] postcard::Error),
}

impl BalanceUpdate {
    /// The wire encoding (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a BalanceUpdate always serialises")
    }

    /// Parses [`encode`](Self::encode)'s output. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_UPDATE_SIZE {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let (update, rest) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BalanceProof, BlockNumber, ChannelId, Nonce, Signature, TokenNetwork};
    use alloy_primitives::{Address, B256, FixedBytes};

    #[test]
    fn largest_update_fits_the_limit() {
        let lock = Lock {
            amount: Amount::MAX,
            expiration: BlockNumber(u64::MAX),
            secret_hash: SecretHash(B256::repeat_byte(0xff)),
        };
        let proof = BalanceProof {
            token_network: TokenNetwork {
                chain_id: u64::MAX,
                address: Address::repeat_byte(0xff),
            },
            channel_id: ChannelId(alloy_primitives::U256::MAX),
            nonce: Nonce(u64::MAX),
            transferred_amount: Amount::MAX,
            locked_amount: Amount::MAX,
            locks_root: B256::repeat_byte(0xff),
        };
        let update = BalanceUpdate {
            change: BalanceChange::LockedTransfer { lock },
            proof: SignedBalanceProof {
                proof,
                signature: Signature(FixedBytes([0xff; 65])),
            },
        };
        let bytes = update.encode();
        assert_eq!(bytes.len(), 316);
        assert!(bytes.len() <= MAX_UPDATE_SIZE);
        assert_eq!(BalanceUpdate::decode(&bytes), Ok(update));
    }
}

//! Identifiers, block numbers, secrets and the hash-time-lock.

use crate::Amount;
use alloy_primitives::{B256, U256, keccak256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A channel's identifier in its TokenNetwork contract (`uint256` on-chain).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(pub U256);

/// Hashes the low 128 bits alone. The contract makes an id as a keccak hash, so those bits
/// are as spread as all 256. Ids that hash alike under every seed must share them: about 2^64
/// hashes to grind two such ids (by picking partner addresses), and each needs a channel
/// opened. A router looks a direction up for every edge it considers: one 128-bit word hashes
/// in a fraction of the time of 32 bytes. An id a peer merely claims can be anything: keep
/// those in ordered maps until the chain shows them (as every hash map here does: they hold
/// on-chain channels only).
impl std::hash::Hash for ChannelId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [low, high, _, _] = self.0.into_limbs();
        state.write_u128(u128::from(low) | (u128::from(high) << 64));
    }
}

impl From<u64> for ChannelId {
    fn from(value: u64) -> Self {
        Self(U256::from(value))
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The sequence number of a balance proof in one direction of a channel (`uint64` on-chain).
///
/// Nonce 0 is the empty state nobody signed; the first proof has nonce 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nonce(pub u64);

impl Nonce {
    /// The next nonce, or `None` once `u64` is exhausted.
    #[must_use]
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A block number: the clock of lock expirations and the on-chain challenge window.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BlockNumber(pub u64);

impl fmt::Display for BlockNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The preimage that claims a lock. Whoever reveals it can be paid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub B256);

impl Secret {
    /// `sha256(secret)`: SHA-256 rather than keccak so the same lock can be used across chains
    /// and with Lightning.
    pub fn hash(&self) -> SecretHash {
        SecretHash(B256::from(<[u8; 32]>::from(Sha256::digest(self.0))))
    }
}

impl fmt::Debug for Secret {
    // A secret in a log line is a claim on someone's money.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(hash {})", self.hash().0)
    }
}

/// `sha256(secret)`: what a lock is locked to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SecretHash(pub B256);

/// A hash-time-lock: `amount` goes to the receiver if the preimage of `secret_hash` is revealed
/// (off-chain by `Unlock`, or registered on-chain) by block `expiration`; else back to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lock {
    /// What the lock pays.
    pub amount: Amount,
    /// The last block at which a secret registered on-chain still claims the lock.
    pub expiration: BlockNumber,
    /// `sha256(secret)`.
    pub secret_hash: SecretHash,
}

impl Lock {
    /// The lock's leaf in the locks tree: `keccak256(abi.encode(uint256 amount,
    /// uint64 expiration, bytes32 secretHash))`, 96 bytes hashed (see the crate docs).
    pub fn leaf_hash(&self) -> B256 {
        let mut buf = [0u8; 96];
        buf[..32].copy_from_slice(&self.amount.to_be_bytes());
        buf[56..64].copy_from_slice(&self.expiration.0.to_be_bytes());
        buf[64..].copy_from_slice(self.secret_hash.0.as_slice());
        keccak256(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::b256;

    #[test]
    fn secret_hash_is_sha256() {
        // sha256 of 32 zero bytes.
        let hash = Secret(B256::ZERO).hash();
        assert_eq!(
            hash.0,
            b256!("66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925")
        );
    }

    #[test]
    fn leaf_hash_is_abi_encoding() {
        let lock = Lock {
            amount: Amount::from(0x0102u64),
            expiration: BlockNumber(0x0304),
            secret_hash: SecretHash(B256::repeat_byte(0xab)),
        };
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0u8; 30]);
        expected.extend_from_slice(&[1, 2]);
        expected.extend_from_slice(&[0u8; 30]);
        expected.extend_from_slice(&[3, 4]);
        expected.extend_from_slice(&[0xab; 32]);
        assert_eq!(lock.leaf_hash(), keccak256(expected));
    }
}

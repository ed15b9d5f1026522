//! The known-answer vectors in `htlc/test-vectors/balance-proofs.json`, parsed into domain types.
//!
//! Made by an independent implementation (`test-vectors/generate.py`, eth-account); htlc's tests
//! and the contract tests check they compute the same bytes.

use crate::locks::LockProof;
use crate::{
    Amount, BalanceProof, BlockNumber, ChannelId, Lock, Nonce, Secret, SecretHash, Signature,
    TokenNetwork,
};
use alloy_primitives::{Address, B256, FixedBytes, U256};
use serde::{Deserialize, Deserializer};
use std::str::FromStr;

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct Vectors {
    /// The EIP-712 domain name and version.
    pub domain: Domain,
    /// The EIP-712 type string of a balance proof.
    pub eip712_type: String,
    /// Lock sets with their leaves, roots and membership proofs.
    pub lock_sets: Vec<LockSet>,
    /// Signed balance proofs with their digests.
    pub balance_proofs: Vec<ProofVector>,
}

/// EIP-712 domain name and version.
#[derive(Debug, Deserialize)]
pub struct Domain {
    /// `"Hoplite"`.
    pub name: String,
    /// `"1"`.
    pub version: String,
}

/// One step building a lock set.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum LockOperation {
    /// Append a lock.
    Add {
        /// Lock amount.
        #[serde(deserialize_with = "decimal")]
        amount: Amount,
        /// Lock expiration.
        expiration: BlockNumber,
        /// Lock secret hash.
        secret_hash: SecretHash,
    },
    /// Swap-remove the lock with this secret hash.
    Remove {
        /// Which lock.
        secret_hash: SecretHash,
    },
}

/// A lock of a set, with its secret.
#[derive(Debug, Deserialize)]
pub struct LockVector {
    /// Lock amount.
    #[serde(deserialize_with = "decimal")]
    pub amount: Amount,
    /// Lock expiration.
    pub expiration: BlockNumber,
    /// The preimage.
    pub secret: Secret,
    /// `sha256(secret)`.
    pub secret_hash: SecretHash,
}

impl LockVector {
    /// The lock.
    pub fn lock(&self) -> Lock {
        Lock {
            amount: self.amount,
            expiration: self.expiration,
            secret_hash: self.secret_hash,
        }
    }
}

/// A lock set built by `operations`, and what it commits to.
#[derive(Debug, Deserialize)]
pub struct LockSet {
    /// A label.
    pub name: String,
    /// How the set was built.
    pub operations: Vec<LockOperation>,
    /// The resulting locks in slot order.
    pub locks: Vec<LockVector>,
    /// Leaf hash per slot.
    pub leaf_hashes: Vec<B256>,
    /// Sum of the amounts.
    #[serde(deserialize_with = "decimal")]
    pub locked_amount: Amount,
    /// The root.
    pub locks_root: B256,
    /// Membership proof per slot.
    pub proofs: Vec<LockProof>,
}

/// A signed balance proof.
#[derive(Debug, Deserialize)]
pub struct ProofVector {
    /// The signer's key.
    pub private_key: B256,
    /// Its address.
    pub signer: Address,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The verifying contract.
    pub token_network: Address,
    /// Channel id.
    #[serde(deserialize_with = "decimal")]
    pub channel_id: U256,
    /// Nonce.
    pub nonce: u64,
    /// Transferred amount.
    #[serde(deserialize_with = "decimal")]
    pub transferred_amount: Amount,
    /// Locked amount.
    #[serde(deserialize_with = "decimal")]
    pub locked_amount: Amount,
    /// Locks root.
    pub locks_root: B256,
    /// EIP-712 domain separator.
    pub domain_separator: B256,
    /// `hashStruct(BalanceProof)`.
    pub struct_hash: B256,
    /// The signed digest.
    pub digest: B256,
    /// The signature.
    pub signature: FixedBytes<65>,
}

impl ProofVector {
    /// The balance proof.
    pub fn proof(&self) -> BalanceProof {
        BalanceProof {
            token_network: TokenNetwork {
                chain_id: self.chain_id,
                address: self.token_network,
            },
            channel_id: ChannelId(self.channel_id),
            nonce: Nonce(self.nonce),
            transferred_amount: self.transferred_amount,
            locked_amount: self.locked_amount,
            locks_root: self.locks_root,
        }
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        Signature(self.signature)
    }
}

/// Reads the vector file shipped with the crate.
pub fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test-vectors/balance-proofs.json"
    );
    let text = std::fs::read_to_string(path).expect("the vector file ships with hoplite-htlc");
    serde_json::from_str(&text).expect("the vector file parses")
}

/// A uint256 written as a decimal string (JSON numbers can't hold one).
fn decimal<'de, D: Deserializer<'de>, T: From<U256>>(deserializer: D) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    U256::from_str(&text)
        .map(T::from)
        .map_err(serde::de::Error::custom)
}

//! Balance proofs: the signed state of one direction of a channel, as EIP-712 typed data.

use crate::crypto::{self, PrivateKey, Signature, SignatureError};
use crate::eip712;
use crate::{Amount, ChannelId, Nonce};
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::LazyLock;

/// The EIP-712 domain name every Hoplite signature is made under.
pub const DOMAIN_NAME: &str = "Hoplite";
/// The EIP-712 domain version; bumped whenever a signed type changes.
pub const DOMAIN_VERSION: &str = "1";

/// The contract a channel lives in, on one chain: the EIP-712 domain of its balance proofs.
///
/// A proof signed for one chain or one TokenNetwork recovers a different signer anywhere else,
/// so it can't be replayed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenNetwork {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The TokenNetwork contract: EIP-712 `verifyingContract`.
    pub address: Address,
}

impl TokenNetwork {
    /// The EIP-712 domain: `{name: "Hoplite", version: "1", chainId, verifyingContract}`.
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(DOMAIN_NAME.into()),
            Some(DOMAIN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.address),
            None,
        )
    }

    /// The digest of any EIP-712 value under this domain (see [`crate::eip712`]).
    pub fn typed_digest<T: SolStruct>(&self, value: &T) -> B256 {
        signing_hash(&self.domain_separator(), &value.eip712_hash_struct())
    }

    /// The domain separator. Each thread keeps the last one it hashed: gossip, invoices and
    /// withdrawals ask for it at every message, and it takes four hashes.
    pub fn domain_separator(&self) -> B256 {
        thread_local! {
            static LAST: Cell<Option<(TokenNetwork, B256)>> = const { Cell::new(None) };
        }
        LAST.with(|last| match last.get() {
            Some((network, separator)) if network == *self => separator,
            _ => {
                let separator = self.domain().separator();
                last.set(Some((*self, separator)));
                separator
            }
        })
    }
}

/// `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct)`: what EIP-712 signs.
fn signing_hash(domain_separator: &B256, struct_hash: &B256) -> B256 {
    let mut buf = [0u8; 66];
    buf[..2].copy_from_slice(&[0x19, 0x01]);
    buf[2..34].copy_from_slice(domain_separator.as_slice());
    buf[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(buf)
}

/// The state of one direction of a channel, as its sender signs it.
///
/// The EIP-712 type is
/// `BalanceProof(uint256 channelId,uint64 nonce,uint256 transferredAmount,uint256 lockedAmount,bytes32 locksRoot)`
/// under the [`TokenNetwork`] domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BalanceProof {
    /// The chain and contract the proof is for (the signature's domain).
    pub token_network: TokenNetwork,
    /// The channel in that contract.
    pub channel_id: ChannelId,
    /// Strictly increasing per direction.
    pub nonce: Nonce,
    /// Everything the sender has paid the receiver so far; never decreases.
    pub transferred_amount: Amount,
    /// The sum of the pending locks.
    pub locked_amount: Amount,
    /// The Merkle root of the pending locks (see [`crate::locks`]).
    pub locks_root: B256,
}

impl BalanceProof {
    /// The EIP-712 type string of a balance proof.
    pub fn eip712_type() -> String {
        eip712::BalanceProof::eip712_encode_type().into_owned()
    }

    /// `hashStruct(BalanceProof) = keccak256(typeHash ‖ channelId ‖ nonce ‖ transferredAmount ‖
    /// lockedAmount ‖ locksRoot)`, each field one 32-byte word.
    pub fn struct_hash(&self) -> B256 {
        // Encoded by hand with the type hash cached: alloy rebuilds and hashes the type string on
        // every call, which is a tenth of a transfer's non-signature cost. The test
        // `signing_hash_matches_alloys_full_eip712_path` keeps the two equal.
        static TYPE_HASH: LazyLock<B256> =
            LazyLock::new(|| keccak256(BalanceProof::eip712_type().as_bytes()));
        let mut words = [0u8; 192];
        words[..32].copy_from_slice(TYPE_HASH.as_slice());
        words[32..64].copy_from_slice(&self.channel_id.0.to_be_bytes::<32>());
        words[88..96].copy_from_slice(&self.nonce.0.to_be_bytes());
        words[96..128].copy_from_slice(&self.transferred_amount.to_be_bytes());
        words[128..160].copy_from_slice(&self.locked_amount.to_be_bytes());
        words[160..].copy_from_slice(self.locks_root.as_slice());
        keccak256(words)
    }

    /// The digest that is signed: `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct)`.
    ///
    /// `domain_separator` must be `self.token_network.domain_separator()`; callers that hold a
    /// channel pass the one they cached.
    pub fn signing_hash_with(&self, domain_separator: &B256) -> B256 {
        signing_hash(domain_separator, &self.struct_hash())
    }

    /// The digest that is signed, with the token network's domain separator.
    pub fn signing_hash(&self) -> B256 {
        self.signing_hash_with(&self.token_network.domain_separator())
    }

    /// Signs the proof.
    pub fn sign(self, key: &PrivateKey, domain_separator: &B256) -> SignedBalanceProof {
        let signature = key.sign_digest(&self.signing_hash_with(domain_separator));
        SignedBalanceProof {
            proof: self,
            signature,
        }
    }
}

/// A balance proof with its sender's signature: what the receiver can take on-chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedBalanceProof {
    /// The signed state.
    pub proof: BalanceProof,
    /// The sender's signature over [`BalanceProof::signing_hash`].
    pub signature: Signature,
}

impl SignedBalanceProof {
    /// The address that signed this proof.
    pub fn signer(&self, domain_separator: &B256) -> Result<Address, SignatureError> {
        crypto::recover_address(
            &self.proof.signing_hash_with(domain_separator),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    fn proof() -> BalanceProof {
        BalanceProof {
            token_network: TokenNetwork {
                chain_id: 1337,
                address: address!("00000000000000000000000000000000000000aa"),
            },
            channel_id: ChannelId::from(3),
            nonce: Nonce(9),
            transferred_amount: Amount::from(100u64),
            locked_amount: Amount::from(20u64),
            locks_root: B256::repeat_byte(0x11),
        }
    }

    #[test]
    fn signing_hash_matches_alloys_full_eip712_path() {
        let p = proof();
        let via_alloy = eip712::BalanceProof {
            channelId: p.channel_id.0,
            nonce: p.nonce.0,
            transferredAmount: p.transferred_amount.to_u256(),
            lockedAmount: p.locked_amount.to_u256(),
            locksRoot: p.locks_root,
        }
        .eip712_signing_hash(&p.token_network.domain());
        assert_eq!(p.signing_hash(), via_alloy);
        assert_eq!(
            BalanceProof::eip712_type(),
            "BalanceProof(uint256 channelId,uint64 nonce,uint256 transferredAmount,\
             uint256 lockedAmount,bytes32 locksRoot)"
        );
    }

    #[test]
    fn the_kept_separator_is_the_token_networks_own() {
        let one = proof().token_network;
        let other = TokenNetwork { chain_id: 1, ..one };
        let value = eip712::Withdraw {
            channelId: U256::from(3),
            participant: Address::repeat_byte(7),
            totalWithdraw: U256::from(50),
            expiry: U256::from(900),
        };
        // Asked in turn, so each answer follows one kept for the other network.
        for network in [one, other, one, other] {
            assert_eq!(network.domain_separator(), network.domain().separator());
            assert_eq!(
                network.typed_digest(&value),
                value.eip712_signing_hash(&network.domain())
            );
        }
    }

    #[test]
    fn every_field_and_the_domain_change_the_digest() {
        let base = proof();
        let mut variants = vec![base];
        let mut p = base;
        p.token_network.chain_id += 1;
        variants.push(p);
        let mut p = base;
        p.token_network.address = Address::ZERO;
        variants.push(p);
        let mut p = base;
        p.channel_id = ChannelId::from(4);
        variants.push(p);
        let mut p = base;
        p.nonce = Nonce(10);
        variants.push(p);
        let mut p = base;
        p.transferred_amount = Amount::from(101u64);
        variants.push(p);
        let mut p = base;
        p.locked_amount = Amount::from(21u64);
        variants.push(p);
        let mut p = base;
        p.locks_root = B256::ZERO;
        variants.push(p);
        let digests: std::collections::BTreeSet<B256> =
            variants.iter().map(BalanceProof::signing_hash).collect();
        assert_eq!(digests.len(), variants.len());
    }

    #[test]
    fn signer_is_recovered() {
        let key = PrivateKey::from_bytes(&B256::repeat_byte(3)).unwrap();
        let p = proof();
        let separator = p.token_network.domain_separator();
        let signed = p.sign(&key, &separator);
        assert_eq!(signed.signer(&separator), Ok(key.address()));
    }
}

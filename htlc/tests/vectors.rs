//! Known-answer vectors from `test-vectors/balance-proofs.json`, made by an independent
//! implementation (`test-vectors/generate.py`, eth-account). The contract tests read the same file.

use alloy_primitives::{Address, B256, U256};
use hoplite_htlc::crypto::{self, Backend};
use hoplite_htlc::locks::{LockProof, PendingLocks, locks_root, verify_lock_proof};
use hoplite_htlc::*;
use serde::Deserialize;
use std::str::FromStr;

#[derive(Deserialize)]
struct Vectors {
    domain: Domain,
    eip712_type: String,
    lock_sets: Vec<LockSet>,
    balance_proofs: Vec<ProofVector>,
}

#[derive(Deserialize)]
struct Domain {
    name: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Operation {
    Add {
        amount: String,
        expiration: u64,
        secret_hash: B256,
    },
    Remove {
        secret_hash: B256,
    },
}

#[derive(Deserialize)]
struct LockVector {
    amount: String,
    expiration: u64,
    secret: B256,
    secret_hash: B256,
}

#[derive(Deserialize)]
struct LockSet {
    name: String,
    operations: Vec<Operation>,
    locks: Vec<LockVector>,
    leaf_hashes: Vec<B256>,
    locked_amount: String,
    locks_root: B256,
    proofs: Vec<LockProof>,
}

#[derive(Deserialize)]
struct ProofVector {
    private_key: B256,
    signer: Address,
    chain_id: u64,
    token_network: Address,
    channel_id: String,
    nonce: u64,
    transferred_amount: String,
    locked_amount: String,
    locks_root: B256,
    domain_separator: B256,
    struct_hash: B256,
    digest: B256,
    signature: alloy_primitives::FixedBytes<65>,
}

fn uint(decimal: &str) -> U256 {
    U256::from_str(decimal).expect("decimal uint256")
}

fn vectors() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test-vectors/balance-proofs.json"
    );
    let text = std::fs::read_to_string(path).expect("vector file is in the repo");
    serde_json::from_str(&text).expect("vector file parses")
}

#[test]
fn domain_and_type_match() {
    let v = vectors();
    assert_eq!(v.domain.name, DOMAIN_NAME);
    assert_eq!(v.domain.version, DOMAIN_VERSION);
    assert_eq!(v.eip712_type, BalanceProof::eip712_type());
}

#[test]
fn locks_roots_leaves_and_proofs_match() {
    let v = vectors();
    assert!(v.lock_sets.len() >= 5);
    for set in &v.lock_sets {
        let mut pending = PendingLocks::new();
        for op in &set.operations {
            match op {
                Operation::Add {
                    amount,
                    expiration,
                    secret_hash,
                } => {
                    let lock = Lock {
                        amount: Amount::from(uint(amount)),
                        expiration: BlockNumber(*expiration),
                        secret_hash: SecretHash(*secret_hash),
                    };
                    pending.insert(lock).unwrap();
                }
                Operation::Remove { secret_hash } => {
                    pending.remove(&SecretHash(*secret_hash)).unwrap();
                }
            }
        }
        let locks: Vec<Lock> = set
            .locks
            .iter()
            .map(|l| {
                assert_eq!(
                    Secret(l.secret).hash(),
                    SecretHash(l.secret_hash),
                    "{}",
                    set.name
                );
                Lock {
                    amount: Amount::from(uint(&l.amount)),
                    expiration: BlockNumber(l.expiration),
                    secret_hash: SecretHash(l.secret_hash),
                }
            })
            .collect();
        let name = &set.name;
        assert_eq!(
            pending.iter().copied().collect::<Vec<_>>(),
            locks,
            "{name}: slot order"
        );
        let leaves: Vec<B256> = locks.iter().map(Lock::leaf_hash).collect();
        assert_eq!(leaves, set.leaf_hashes, "{name}: leaves");
        assert_eq!(locks_root(&locks), set.locks_root, "{name}: reference root");
        assert_eq!(pending.root(), set.locks_root, "{name}: incremental root");
        assert_eq!(
            pending.total(),
            Amount::from(uint(&set.locked_amount)),
            "{name}"
        );
        for (lock, expected) in locks.iter().zip(&set.proofs) {
            assert_eq!(
                pending.proof(&lock.secret_hash).as_ref(),
                Some(expected),
                "{name}"
            );
            assert!(verify_lock_proof(&set.locks_root, lock, expected), "{name}");
        }
    }
}

#[test]
fn balance_proof_digests_signatures_and_signers_match() {
    let v = vectors();
    assert!(v.balance_proofs.len() >= 4);
    for (i, vector) in v.balance_proofs.iter().enumerate() {
        let token_network = TokenNetwork {
            chain_id: vector.chain_id,
            address: vector.token_network,
        };
        let proof = BalanceProof {
            token_network,
            channel_id: ChannelId(uint(&vector.channel_id)),
            nonce: Nonce(vector.nonce),
            transferred_amount: Amount::from(uint(&vector.transferred_amount)),
            locked_amount: Amount::from(uint(&vector.locked_amount)),
            locks_root: vector.locks_root,
        };
        assert_eq!(
            token_network.domain_separator(),
            vector.domain_separator,
            "vector {i}"
        );
        assert_eq!(proof.struct_hash(), vector.struct_hash, "vector {i}");
        assert_eq!(proof.signing_hash(), vector.digest, "vector {i}");

        let key = PrivateKey::from_bytes(&vector.private_key).unwrap();
        assert_eq!(key.address(), vector.signer, "vector {i}");
        let expected = Signature(vector.signature);
        for backend in [Backend::Secp256k1, Backend::K256] {
            assert_eq!(
                key.sign_digest_with(backend, &vector.digest),
                expected,
                "vector {i} {backend:?}"
            );
            assert_eq!(
                crypto::recover_address_with(backend, &vector.digest, &expected),
                Ok(vector.signer),
                "vector {i} {backend:?}"
            );
        }
        let signed = proof.sign(&key, &vector.domain_separator);
        assert_eq!(signed.signature, expected);
    }
}

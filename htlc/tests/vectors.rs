//! Known-answer vectors from `test-vectors/balance-proofs.json`, made by an independent
//! implementation (`test-vectors/generate.py`, eth-account). The contract tests read the same file.

use hoplite_htlc::crypto::{self, Backend};
use hoplite_htlc::locks::{PendingLocks, locks_root, verify_lock_proof};
use hoplite_htlc::testing::vectors::{self, LockOperation};
use hoplite_htlc::*;

#[test]
fn domain_and_type_match() {
    let v = vectors::load();
    assert_eq!(v.domain.name, DOMAIN_NAME);
    assert_eq!(v.domain.version, DOMAIN_VERSION);
    assert_eq!(v.eip712_type, BalanceProof::eip712_type());
}

#[test]
fn locks_roots_leaves_and_proofs_match() {
    let v = vectors::load();
    assert!(v.lock_sets.len() >= 5);
    for set in &v.lock_sets {
        let name = &set.name;
        let mut pending = PendingLocks::new();
        for op in &set.operations {
            match *op {
                LockOperation::Add {
                    amount,
                    expiration,
                    secret_hash,
                } => {
                    pending
                        .insert(Lock {
                            amount,
                            expiration,
                            secret_hash,
                        })
                        .unwrap();
                }
                LockOperation::Remove { secret_hash } => {
                    pending.remove(&secret_hash).unwrap();
                }
            }
        }
        for l in &set.locks {
            assert_eq!(l.secret.hash(), l.secret_hash, "{name}: sha256");
        }
        let locks: Vec<Lock> = set.locks.iter().map(|l| l.lock()).collect();
        assert_eq!(
            pending.iter().copied().collect::<Vec<_>>(),
            locks,
            "{name}: slot order"
        );
        let leaves: Vec<_> = locks.iter().map(Lock::leaf_hash).collect();
        assert_eq!(leaves, set.leaf_hashes, "{name}: leaves");
        assert_eq!(locks_root(&locks), set.locks_root, "{name}: reference root");
        assert_eq!(pending.root(), set.locks_root, "{name}: incremental root");
        assert_eq!(pending.total(), set.locked_amount, "{name}");
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
    let v = vectors::load();
    assert!(v.balance_proofs.len() >= 4);
    for (i, vector) in v.balance_proofs.iter().enumerate() {
        let proof = vector.proof();
        assert_eq!(
            proof.token_network.domain_separator(),
            vector.domain_separator,
            "vector {i}"
        );
        assert_eq!(proof.struct_hash(), vector.struct_hash, "vector {i}");
        assert_eq!(proof.signing_hash(), vector.digest, "vector {i}");

        let key = PrivateKey::from_bytes(&vector.private_key).unwrap();
        assert_eq!(key.address(), vector.signer, "vector {i}");
        let expected = vector.signature();
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
        assert_eq!(
            proof.sign(&key, &vector.domain_separator).signature,
            expected,
            "vector {i}"
        );
    }
}

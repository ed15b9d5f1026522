//! The contract computes exactly what hoplite-htlc computes: the known-answer vectors shipped
//! with htlc (made by an independent implementation), checked on the EVM running the committed
//! bytecode.

use alloy_primitives::{Address, U256, address};
use hoplite_chain::ChainError;
use hoplite_chain::contracts::TokenNetwork;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::evm::{EvmBackend, InProcessEvm, complete};
use hoplite_htlc::testing::vectors;
use std::sync::{Arc, Mutex};

/// anvil's first account: its first deployment lands at 0x5FbDB2315678afecb367f032d93F642f64180aa3.
const DEPLOYER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// A chain with this id holding token, registry and TokenNetwork; returns it and the
/// TokenNetwork's address.
fn deploy(chain_id: u64) -> (InProcessEvm, Address) {
    let shared = Arc::new(Mutex::new(InProcessEvm::new(chain_id)));
    let mut deployer = EvmBackend::new(shared.clone(), DEPLOYER);
    let deployment = complete(Deployment::with_test_token(&mut deployer)).unwrap();
    drop(deployer);
    let evm = Arc::into_inner(shared).unwrap().into_inner().unwrap();
    (evm, deployment.token_network)
}

#[test]
fn digests_and_signers_match_the_vectors() {
    let v = vectors::load();
    for (i, vector) in v.balance_proofs.iter().enumerate() {
        // The domain is (chain id, contract address): run the contract on the vector's chain,
        // at the vector's address.
        let (mut evm, deployed) = deploy(vector.chain_id);
        evm.copy_code(deployed, vector.token_network).unwrap();
        let at = vector.token_network;
        let p = vector.proof();

        let separator = evm
            .call_sol(at, &TokenNetwork::domainSeparatorCall {})
            .unwrap();
        assert_eq!(separator, vector.domain_separator, "vector {i}");
        let digest = evm
            .call_sol(
                at,
                &TokenNetwork::balanceProofDigestCall {
                    channelId: p.channel_id.0,
                    nonce: p.nonce.0,
                    transferredAmount: p.transferred_amount.to_u256(),
                    lockedAmount: p.locked_amount.to_u256(),
                    locksRoot: p.locks_root,
                },
            )
            .unwrap();
        assert_eq!(digest, vector.digest, "vector {i}");
        let signer = evm
            .call_sol(
                at,
                &TokenNetwork::recoverSignerCall {
                    digest,
                    signature: vector.signature.to_vec().into(),
                },
            )
            .unwrap();
        assert_eq!(signer, vector.signer, "vector {i}");
    }
}

#[test]
fn leaves_roots_and_membership_proofs_match_the_vectors() {
    let v = vectors::load();
    let (mut evm, network) = deploy(1337);
    for set in &v.lock_sets {
        let name = &set.name;
        let locks: Vec<TokenNetwork::Lock> = set
            .locks
            .iter()
            .map(|l| TokenNetwork::Lock::from(&l.lock()))
            .collect();
        let root = evm
            .call_sol(
                network,
                &TokenNetwork::computeLocksRootCall {
                    locks: locks.clone(),
                },
            )
            .unwrap();
        assert_eq!(root, set.locks_root, "{name}");
        for ((lock, leaf), proof) in locks.iter().zip(&set.leaf_hashes).zip(&set.proofs) {
            let computed = evm
                .call_sol(network, &TokenNetwork::lockLeafCall { lock: lock.clone() })
                .unwrap();
            assert_eq!(computed, *leaf, "{name}");
            let from_proof = evm
                .call_sol(
                    network,
                    &TokenNetwork::rootFromProofCall {
                        leaf: *leaf,
                        index: U256::from(proof.index),
                        siblings: proof.siblings.clone(),
                    },
                )
                .unwrap();
            assert_eq!(from_proof, set.locks_root, "{name} slot {}", proof.index);
        }
    }
}

#[test]
fn malformed_signatures_and_proofs_revert_with_their_reason() {
    use TokenNetwork::TokenNetworkErrors as E;
    let v = vectors::load();
    let vector = &v.balance_proofs[0];
    let (mut evm, network) = deploy(vector.chain_id);
    let recover = |evm: &mut InProcessEvm, signature: Vec<u8>| {
        evm.call_sol(
            network,
            &TokenNetwork::recoverSignerCall {
                digest: vector.digest,
                signature: signature.into(),
            },
        )
    };
    let good = vector.signature.to_vec();

    let error = recover(&mut evm, good[..64].to_vec()).unwrap_err();
    assert!(
        matches!(error.token_network(), Some(E::SignatureLength(e)) if e.length == U256::from(64)),
        "{error}"
    );

    let mut bad_v = good.clone();
    bad_v[64] = 1;
    let error = recover(&mut evm, bad_v).unwrap_err();
    assert!(
        matches!(error.token_network(), Some(E::SignatureRecoveryByte(e)) if e.v == 1),
        "{error}"
    );

    // (r, n - s, v flipped) recovers the same key with plain ecrecover: malleable, refused.
    let order = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&good[32..64]);
    let mut high = good.clone();
    high[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
    high[64] = 55 - high[64];
    let error = recover(&mut evm, high).unwrap_err();
    assert!(
        matches!(error.token_network(), Some(E::SignatureHighS(_))),
        "{error}"
    );

    let mut zero_r = good.clone();
    zero_r[..32].fill(0);
    let error = recover(&mut evm, zero_r).unwrap_err();
    assert!(
        matches!(error.token_network(), Some(E::SignatureUnrecoverable(_))),
        "{error}"
    );

    // A membership proof whose slot doesn't fit its depth.
    let set = v.lock_sets.iter().find(|s| s.locks.len() == 3).unwrap();
    let proof = &set.proofs[0];
    let call = TokenNetwork::rootFromProofCall {
        leaf: set.leaf_hashes[0],
        index: U256::from(4),
        siblings: proof.siblings.clone(),
    };
    let error: ChainError = evm.call_sol(network, &call).unwrap_err();
    assert!(
        matches!(error.token_network(), Some(E::LockIndexOutOfRange(_))),
        "{error}"
    );
}

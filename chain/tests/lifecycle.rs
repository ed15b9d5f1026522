//! The channel lifecycle on the in-process EVM running the committed TokenNetwork bytecode, with
//! balance proofs signed by hoplite-htlc. Every scenario checks token balances; once everything is
//! settled and unlocked, the contract holds nothing.

use TokenNetwork::TokenNetworkErrors as E;
use alloy_primitives::{B256, U256};
use hoplite_chain::contracts::{SecretRegistry, TokenNetwork};
use hoplite_chain::evm::EvmError;
use hoplite_chain::testing::*;
use hoplite_htlc::eip712::BalanceProofUpdate;
use hoplite_htlc::{Amount, Lock, Secret, TokenNetwork as Domain};

/// Alice opens a channel with Bob and both deposit.
fn open(net: &mut TestNet, deposits: [u64; 2]) -> U256 {
    let (id, _) = net.open().unwrap();
    for (who, amount) in [(ALICE, deposits[0]), (BOB, deposits[1])] {
        if amount > 0 {
            net.deposit(who, id, amount).unwrap();
        }
    }
    id
}

/// The TokenNetwork error a call reverted with.
fn revert<T>(result: Result<T, EvmError>) -> E {
    let Err(error) = result else {
        panic!("call should revert")
    };
    error
        .decode_revert::<E>()
        .unwrap_or_else(|| panic!("not a TokenNetwork error: {error}"))
}

#[test]
fn open_deposit_and_cooperative_settle() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 50]);
    assert_eq!(net.held_by_contract(), tokens(150));
    let (a, b) = (net.address(ALICE), net.address(BOB));
    // Balances that don't add up to the deposits, or a signature from someone else: refused.
    let bad_sum = net.cooperative_settle_call(id, [70, 81], [ALICE, BOB]);
    assert!(matches!(
        revert(net.send(CAROL, &bad_sum)),
        E::BalancesDontMatchDeposits(_)
    ));
    let wrong_signer = net.cooperative_settle_call(id, [70, 80], [ALICE, CAROL]);
    assert!(matches!(
        revert(net.send(CAROL, &wrong_signer)),
        E::WrongSigner(_)
    ));

    let good = net.cooperative_settle_call(id, [70, 80], [ALICE, BOB]);
    net.send(CAROL, &good).unwrap();
    assert_eq!(net.tokens_of(a), tokens(1000 - 100 + 70));
    assert_eq!(net.tokens_of(b), tokens(1000 - 50 + 80));
    assert_eq!(net.held_by_contract(), U256::ZERO);
    // Gone: settling again fails, and the pair may open a new channel.
    assert!(matches!(
        revert(net.send(CAROL, &good)),
        E::WrongChannelState(_)
    ));
    assert_eq!(
        net.evm
            .call_sol(
                net.contracts.token_network,
                &TokenNetwork::getChannelIdCall { a, b }
            )
            .unwrap(),
        U256::ZERO
    );
    assert_eq!(open(&mut net, [1, 0]), U256::from(2));
}

#[test]
fn close_update_settle_pays_both_sides() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 50]);
    // Alice paid Bob 30 (her nonce 3), Bob paid Alice 10 (his nonce 2).
    let alices = balance(30, 0, B256::ZERO);
    let bobs = balance(10, 0, B256::ZERO);
    net.close(BOB, id, 3, &alices).unwrap();
    net.update(ALICE, BOB, id, 2, &bobs).unwrap();
    assert!(matches!(
        revert(net.settle(id, &alices, &bobs)),
        E::ChallengeWindowOpen(_)
    ));
    net.mine_past_window();
    // The settler must present exactly what was submitted.
    assert!(matches!(
        revert(net.settle(id, &balance(29, 0, B256::ZERO), &bobs)),
        E::BalanceDataMismatch(_)
    ));
    net.settle(id, &alices, &bobs).unwrap();
    let (a, b) = (net.address(ALICE), net.address(BOB));
    assert_eq!(net.tokens_of(a), tokens(1000 - 100 + 100 - 30 + 10));
    assert_eq!(net.tokens_of(b), tokens(1000 - 50 + 50 + 30 - 10));
    assert_eq!(net.held_by_contract(), U256::ZERO);
    assert!(matches!(
        revert(net.settle(id, &alices, &bobs)),
        E::WrongChannelState(_)
    ));
}

#[test]
fn the_newer_proof_of_the_closer_wins() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 100]);
    // Alice paid Bob 60 over nonces 1..3 and closes hoping Bob only has an old proof.
    net.close(ALICE, id, 0, &nothing()).unwrap();
    net.update(BOB, ALICE, id, 1, &balance(20, 0, B256::ZERO))
        .unwrap();
    let newest = balance(60, 0, B256::ZERO);
    net.update(BOB, ALICE, id, 3, &newest).unwrap();
    let older = net.update(BOB, ALICE, id, 2, &balance(40, 0, B256::ZERO));
    assert!(matches!(revert(older), E::NonceNotNewer(e) if e.current == 3 && e.submitted == 2));
    net.mine_past_window();
    assert!(matches!(
        revert(net.update(BOB, ALICE, id, 4, &balance(61, 0, B256::ZERO))),
        E::ChallengeWindowOver(_)
    ));
    net.settle(id, &newest, &nothing()).unwrap();
    let (a, b) = (net.address(ALICE), net.address(BOB));
    assert_eq!(net.tokens_of(a), tokens(1000 - 60));
    assert_eq!(net.tokens_of(b), tokens(1000 + 60));
}

#[test]
fn a_watchtower_updates_with_the_non_closers_signature() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 0]);
    let alices = balance(70, 0, B256::ZERO);
    net.close(ALICE, id, 0, &nothing()).unwrap();
    // Carol holds Bob's authorisation and submits for him.
    net.update(CAROL, ALICE, id, 5, &alices).unwrap();
    // Without Bob's authorisation (signed by Carol herself): refused.
    let closer_signature = net.sign_proof(ALICE, id, 6, &balance(80, 0, B256::ZERO));
    let digest = net.view(&TokenNetwork::balanceProofDigestCall {
        channelId: id,
        nonce: 6,
        transferredAmount: tokens(80),
        lockedAmount: U256::ZERO,
        locksRoot: B256::ZERO,
    });
    let forged = net.sign_typed(
        CAROL,
        &BalanceProofUpdate {
            channelId: id,
            balanceProof: digest,
        },
    );
    let call = TokenNetwork::updateNonClosingBalanceProofCall {
        channelId: id,
        closer: net.address(ALICE),
        nonce: 6,
        balance: balance(80, 0, B256::ZERO),
        closerSignature: closer_signature,
        nonClosingSignature: forged,
    };
    assert!(matches!(revert(net.send(CAROL, &call)), E::WrongSigner(_)));
    net.mine_past_window();
    net.settle(id, &alices, &nothing()).unwrap();
    let b = net.address(BOB);
    assert_eq!(net.tokens_of(b), tokens(1000 + 70));
}

#[test]
fn bad_proofs_and_callers_are_refused() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 100]);
    let b = balance(10, 0, B256::ZERO);
    // Signed by the wrong key.
    let call = TokenNetwork::closeChannelCall {
        channelId: id,
        partner: net.address(BOB),
        nonce: 1,
        balance: b.clone(),
        partnerSignature: net.sign_proof(CAROL, id, 1, &b),
    };
    assert!(matches!(revert(net.send(ALICE, &call)), E::WrongSigner(_)));
    // Signed for another chain, or another contract: the domain differs, so the signer does.
    for domain in [
        Domain {
            chain_id: 1,
            ..net.domain()
        },
        Domain {
            address: net.contracts.secret_registry,
            ..net.domain()
        },
    ] {
        let call = TokenNetwork::closeChannelCall {
            partnerSignature: net.sign_proof_on(domain, BOB, id, 1, &b),
            ..call.clone()
        };
        assert!(matches!(revert(net.send(ALICE, &call)), E::WrongSigner(_)));
    }
    // Not a participant.
    let intruder = TokenNetwork::closeChannelCall {
        partnerSignature: net.sign_proof(BOB, id, 1, &b),
        ..call.clone()
    };
    assert!(matches!(
        revert(net.send(CAROL, &intruder)),
        E::NotParticipant(_)
    ));
    let deposit = TokenNetwork::setTotalDepositCall {
        channelId: id,
        participant: net.address(CAROL),
        totalDeposit: tokens(1),
    };
    assert!(matches!(
        revert(net.send(CAROL, &deposit)),
        E::NotParticipant(_)
    ));
    // Deposits: totals only grow, and both together must fit in uint256.
    let same = TokenNetwork::setTotalDepositCall {
        channelId: id,
        participant: net.address(ALICE),
        totalDeposit: tokens(100),
    };
    assert!(matches!(
        revert(net.send(ALICE, &same)),
        E::TotalNotIncreased(_)
    ));
    let huge = TokenNetwork::setTotalDepositCall {
        channelId: id,
        participant: net.address(ALICE),
        totalDeposit: U256::MAX,
    };
    let Err(error) = net.send(ALICE, &huge) else {
        panic!("an overflowing deposit was accepted")
    };
    assert!(
        matches!(error, EvmError::Reverted { .. }),
        "overflow must revert: {error}"
    );
    assert_eq!(net.held_by_contract(), tokens(200));
    // Opening twice, or with oneself.
    let again = TokenNetwork::openChannelCall {
        partner: net.address(BOB),
        settleTimeout: SETTLE_TIMEOUT,
    };
    assert!(matches!(
        revert(net.send(ALICE, &again)),
        E::ChannelExists(_)
    ));
    let alone = TokenNetwork::openChannelCall {
        partner: net.address(ALICE),
        settleTimeout: SETTLE_TIMEOUT,
    };
    assert!(matches!(
        revert(net.send(ALICE, &alone)),
        E::InvalidPartner(_)
    ));
}

#[test]
fn settlement_caps_absurd_proofs_and_conserves() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 50]);
    // Bob signed that he sent more than exists, Alice that she locked more than exists.
    let alices = balance(20, 500, B256::repeat_byte(7));
    let bobs = TokenNetwork::BalanceData {
        transferredAmount: U256::MAX,
        lockedAmount: U256::MAX,
        locksRoot: B256::ZERO,
    };
    net.close(ALICE, id, 9, &bobs).unwrap();
    net.update(BOB, ALICE, id, 4, &alices).unwrap();
    net.mine_past_window();
    net.settle(id, &alices, &bobs).unwrap();
    let (a, b) = (net.address(ALICE), net.address(BOB));
    // Alice is owed everything; her own 500 locked are capped by it and wait for unlock.
    let paid = net.tokens_of(a) + net.tokens_of(b) - tokens(2000 - 150);
    let pot = net
        .evm
        .call_sol(
            net.contracts.token_network,
            &TokenNetwork::getLockPotCall {
                channelId: id,
                sender: a,
                receiver: b,
            },
        )
        .unwrap();
    assert_eq!(
        pot.remaining,
        tokens(150),
        "Alice's locks hold all she is owed"
    );
    assert_eq!(
        paid + pot.remaining,
        tokens(150),
        "payouts and pots add up to the deposits"
    );
    assert_eq!(net.held_by_contract(), pot.remaining);
}

#[test]
fn withdraw_needs_both_signatures_before_expiry() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 50]);
    let a = net.address(ALICE);
    let expiry = net.evm.block_number() + 5;
    let only_alice = net.withdraw_call(id, ALICE, 30, expiry, [ALICE, ALICE]);
    assert!(matches!(
        revert(net.send(ALICE, &only_alice)),
        E::WrongSigner(_)
    ));
    let call = net.withdraw_call(id, ALICE, 30, expiry, [ALICE, BOB]);
    net.send(ALICE, &call).unwrap();
    assert_eq!(net.tokens_of(a), tokens(1000 - 100 + 30));
    assert!(matches!(
        revert(net.send(ALICE, &call)),
        E::TotalNotIncreased(_)
    ));

    let too_much = net.withdraw_call(id, ALICE, 151, expiry, [ALICE, BOB]);
    assert!(matches!(
        revert(net.send(ALICE, &too_much)),
        E::WithdrawExceedsChannel(_)
    ));
    net.evm.mine(6);
    let late = net.withdraw_call(id, ALICE, 40, expiry, [ALICE, BOB]);
    assert!(matches!(
        revert(net.send(ALICE, &late)),
        E::WithdrawExpired(_)
    ));
    assert_eq!(net.held_by_contract(), tokens(120));
}

#[test]
fn locks_pay_the_receiver_only_if_revealed_in_time() {
    let mut net = TestNet::new();
    let id = open(&mut net, [100, 0]);
    let now = net.evm.block_number();
    // Alice's three pending locks towards Bob.
    let secrets: Vec<Secret> = (1..=3u8).map(|n| Secret(B256::repeat_byte(n))).collect();
    let locks: Vec<Lock> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Lock {
            amount: Amount::from(10 * (i as u64 + 1)),
            expiration: hoplite_htlc::BlockNumber(now + 20),
            secret_hash: s.hash(),
        })
        .collect();
    let pending = hoplite_htlc::locks::PendingLocks::from_locks(locks.iter().copied()).unwrap();
    let alices = balance(5, 60, pending.root());
    net.close(BOB, id, 4, &alices).unwrap();
    // Bob registers secret 1 in time; secret 2 only after its lock expired; secret 3 never.
    let (alice, bob) = (net.address(ALICE), net.address(BOB));
    net.evm
        .transact_sol(
            bob,
            net.contracts.secret_registry,
            &SecretRegistry::registerSecretCall {
                secret: secrets[0].0,
            },
        )
        .unwrap();
    net.mine_past_window();
    net.evm
        .transact_sol(
            bob,
            net.contracts.secret_registry,
            &SecretRegistry::registerSecretCall {
                secret: secrets[1].0,
            },
        )
        .unwrap();
    net.settle(id, &alices, &nothing()).unwrap();
    assert_eq!(net.held_by_contract(), tokens(60));
    let before = [net.tokens_of(alice), net.tokens_of(bob)];

    // One lock with its Merkle proof: paid to Bob; twice: refused.
    let single = net.unlock_call(id, &pending, &locks[0]);
    net.send(CAROL, &single).unwrap();
    assert!(matches!(
        revert(net.send(CAROL, &single)),
        E::LockAlreadyClaimed(_)
    ));
    // A lock that isn't in the tree.
    let fake = TokenNetwork::unlockCall {
        lock: TokenNetwork::Lock::from(&Lock {
            amount: Amount::from(60u64),
            ..locks[0]
        }),
        ..single.clone()
    };
    assert!(matches!(
        revert(net.send(CAROL, &fake)),
        E::LocksRootMismatch(_)
    ));

    // The rest in one batch: lock 2 (revealed late) and 3 (never) return to Alice.
    let all: Vec<TokenNetwork::Lock> = locks.iter().map(TokenNetwork::Lock::from).collect();
    net.send(
        CAROL,
        &TokenNetwork::unlockBatchCall {
            channelId: id,
            sender: alice,
            receiver: bob,
            locks: all.clone(),
        },
    )
    .unwrap();
    assert_eq!(net.tokens_of(bob) - before[1], tokens(10));
    assert_eq!(net.tokens_of(alice) - before[0], tokens(50));
    assert_eq!(net.held_by_contract(), U256::ZERO);
    let again = TokenNetwork::unlockBatchCall {
        channelId: id,
        sender: alice,
        receiver: bob,
        locks: all,
    };
    assert!(matches!(
        revert(net.send(CAROL, &again)),
        E::NoPendingLocks(_)
    ));
}

//! The channel lifecycle through [`Chain`], on both backends with one test body each: the
//! in-process EVM and anvil over JSON-RPC, both running the committed TokenNetwork bytecode,
//! with balance proofs signed by hoplite-htlc. Every scenario checks token balances; once
//! everything is settled and unlocked, the contract holds nothing.

use TokenNetwork::TokenNetworkErrors as E;
use alloy_primitives::{B256, U256};
use hoplite_chain::contracts::TokenNetwork;
use hoplite_chain::events::Phase;
use hoplite_chain::testing::*;
use hoplite_chain::{ChainError, Mine};
use hoplite_htlc::eip712::{CooperativeSettle, Withdraw};
use hoplite_htlc::locks::PendingLocks;
use hoplite_htlc::{Amount, BlockNumber, ChannelId, Lock, Secret, TokenNetwork as Domain};
use std::fmt::Debug;

/// Runs `scenario` once on a fresh in-process network and once on a fresh anvil.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn in_process_evm() {
                super::$scenario(super::TestNet::in_process().await).await;
            }

            #[tokio::test]
            async fn anvil_json_rpc() {
                let anvil = super::Anvil::start();
                super::$scenario(super::TestNet::on_anvil(&anvil).await).await;
            }
        }
    )*};
}

on_both_backends!(
    open_deposit_and_cooperative_settle,
    close_update_settle_pays_both_sides,
    the_newer_proof_of_the_closer_wins,
    a_watchtower_updates_with_the_non_closers_signature,
    a_proof_signed_by_the_wrong_key_is_refused,
    a_proof_for_another_chain_or_contract_is_refused,
    an_unknown_channel_is_refused,
    non_participants_cannot_close_or_deposit,
    deposit_totals_only_grow_and_never_overflow,
    a_state_that_is_not_the_current_one_is_refused,
    opening_with_oneself_or_a_short_window_is_refused,
    settlement_caps_absurd_proofs_and_conserves,
    withdraw_needs_both_signatures_before_expiry,
    locks_pay_the_receiver_only_if_revealed_in_time,
    an_old_proof_cannot_pay_a_lock_twice,
    claims_bear_a_pots_shortfall_whatever_the_unlock_order,
);

/// The TokenNetwork error a call reverted with.
fn revert<T: Debug>(result: Result<T, ChainError>) -> E {
    match result {
        Err(error) => error
            .token_network()
            .cloned()
            .unwrap_or_else(|| panic!("not a TokenNetwork error: {error}")),
        Ok(value) => panic!("call should revert, got {value:?}"),
    }
}

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

/// Alice and Bob's signatures of a cooperative settle at `balances`, by `signers`.
fn cooperative<B: Mine>(
    net: &TestNet<B>,
    id: ChannelId,
    balances: [u64; 2],
    signers: [usize; 2],
) -> [hoplite_htlc::Signature; 2] {
    let agreed = CooperativeSettle {
        channelId: id.0,
        participant1: net.address(ALICE),
        balance1: tokens(balances[0]),
        participant2: net.address(BOB),
        balance2: tokens(balances[1]),
    };
    signers.map(|who| net.sign_typed(who, &agreed))
}

async fn open_deposit_and_cooperative_settle<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 50]).await;
    assert_eq!(net.held_by_contract().await, tokens(150));
    // Balances that don't add up to the deposits, or a signature from someone else: refused.
    let [a, b] = cooperative(&net, id, [70, 81], [ALICE, BOB]);
    let bad_sum = net
        .chain(CAROL)
        .cooperative_settle(id, [amount(70), amount(81)], [&a, &b])
        .await;
    assert!(matches!(revert(bad_sum), E::BalancesDontMatchDeposits(_)));
    let [a, c] = cooperative(&net, id, [70, 80], [ALICE, CAROL]);
    let wrong_signer = net
        .chain(CAROL)
        .cooperative_settle(id, [amount(70), amount(80)], [&a, &c])
        .await;
    assert!(matches!(revert(wrong_signer), E::WrongSigner(_)));

    let [a, b] = cooperative(&net, id, [70, 80], [ALICE, BOB]);
    net.chain(CAROL)
        .cooperative_settle(id, [amount(70), amount(80)], [&a, &b])
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000 - 100 + 70));
    assert_eq!(net.tokens_of(BOB).await, tokens(1000 - 50 + 80));
    assert_eq!(net.held_by_contract().await, U256::ZERO);
    // Gone for good: settling again fails, and a new channel of the pair (in a later block: the
    // id is made of the pair and the block) gets a new id.
    let again = net
        .chain(CAROL)
        .cooperative_settle(id, [amount(70), amount(80)], [&a, &b])
        .await;
    assert!(matches!(revert(again), E::ChannelAlreadySettled(_)));
    net.mine(1).await;
    assert_ne!(net.open([1, 0]).await, id);
}

async fn close_update_settle_pays_both_sides<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 50]).await;
    // Alice paid Bob 30 (her nonce 3), Bob paid Alice 10 (his nonce 2).
    let alices = balance(30, 0, B256::ZERO);
    let bobs = balance(10, 0, B256::ZERO);
    let alice_proof = net.proof(ALICE, id, 3, &alices);
    let bob_proof = net.proof(BOB, id, 2, &bobs);
    net.chain(BOB)
        .close_channel(id, Some(&alice_proof))
        .await
        .unwrap();
    net.chain(ALICE)
        .update_non_closing_balance_proof(&bob_proof, None)
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    let channel = net.chain(CAROL).channel(id).await.unwrap().unwrap();
    assert_eq!(channel.phase, Phase::Closed);
    // The log alone tells a third party what to settle with.
    assert_eq!(channel.submitted, [alices.clone(), bobs.clone()]);
    let early = net
        .chain(CAROL)
        .settle_channel(id, [alices.clone(), bobs.clone()])
        .await;
    assert!(matches!(revert(early), E::ChallengeWindowOpen(_)));
    net.mine_past_window().await;
    // The settler must present exactly what was submitted.
    let wrong = net
        .chain(CAROL)
        .settle_channel(id, [balance(29, 0, B256::ZERO), bobs.clone()])
        .await;
    assert!(matches!(revert(wrong), E::BalanceDataMismatch(_)));
    net.chain(CAROL)
        .settle_channel(id, channel.submitted.clone())
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000 - 30 + 10));
    assert_eq!(net.tokens_of(BOB).await, tokens(1000 + 30 - 10));
    assert_eq!(net.held_by_contract().await, U256::ZERO);
    // Nothing was locked, so the channel's word is cleared: it is gone.
    let twice = net.chain(CAROL).settle_channel(id, [alices, bobs]).await;
    assert!(matches!(revert(twice), E::NoSuchChannel(_)));
}

async fn the_newer_proof_of_the_closer_wins<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 100]).await;
    // Alice paid Bob 60 over nonces 1..3 and closes hoping Bob only has an old proof.
    net.chain(ALICE).close_channel(id, None).await.unwrap();
    let first = net.proof(ALICE, id, 1, &balance(20, 0, B256::ZERO));
    net.chain(BOB)
        .update_non_closing_balance_proof(&first, None)
        .await
        .unwrap();
    let newest = balance(60, 0, B256::ZERO);
    let third = net.proof(ALICE, id, 3, &newest);
    net.chain(BOB)
        .update_non_closing_balance_proof(&third, None)
        .await
        .unwrap();
    let second = net.proof(ALICE, id, 2, &balance(40, 0, B256::ZERO));
    let older = net
        .chain(BOB)
        .update_non_closing_balance_proof(&second, None)
        .await;
    assert!(matches!(revert(older), E::NonceNotNewer(e) if e.current == 3 && e.submitted == 2));
    net.mine_past_window().await;
    let fourth = net.proof(ALICE, id, 4, &balance(61, 0, B256::ZERO));
    let late = net
        .chain(BOB)
        .update_non_closing_balance_proof(&fourth, None)
        .await;
    assert!(matches!(revert(late), E::ChallengeWindowOver(_)));
    // The refused updates left no trace in the log's balance data.
    let channel = net.chain(CAROL).channel(id).await.unwrap().unwrap();
    assert_eq!(channel.submitted, [newest.clone(), nothing()]);
    net.chain(CAROL)
        .settle_channel(id, [newest, nothing()])
        .await
        .unwrap();
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000 - 60));
    assert_eq!(net.tokens_of(BOB).await, tokens(1000 + 60));
}

async fn a_watchtower_updates_with_the_non_closers_signature<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 0]).await;
    let alices = balance(70, 0, B256::ZERO);
    net.chain(ALICE).close_channel(id, None).await.unwrap();
    // Carol holds Bob's consent and submits for him.
    let proof = net.proof(ALICE, id, 5, &alices);
    let consent = net.consent(BOB, &proof);
    net.chain(CAROL)
        .update_non_closing_balance_proof(&proof, Some(&consent))
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    // Without Bob's consent (signed by Carol herself, or none at all): refused.
    let newer = net.proof(ALICE, id, 6, &balance(80, 0, B256::ZERO));
    let forged = net.consent(CAROL, &newer);
    let result = net
        .chain(CAROL)
        .update_non_closing_balance_proof(&newer, Some(&forged))
        .await;
    assert!(matches!(revert(result), E::WrongSigner(_)));
    let result = net
        .chain(CAROL)
        .update_non_closing_balance_proof(&newer, None)
        .await;
    assert!(matches!(revert(result), E::SignatureLength(_)));
    net.mine_past_window().await;
    net.chain(CAROL)
        .settle_channel(id, [alices, nothing()])
        .await
        .unwrap();
    assert_eq!(net.tokens_of(BOB).await, tokens(1000 + 70));
}

/// The open channel every bad-input test starts from, and the balance data Bob signs in them.
async fn funded<B: Mine>(net: &mut TestNet<B>) -> (ChannelId, TokenNetwork::BalanceData) {
    (net.open([100, 100]).await, balance(10, 0, B256::ZERO))
}

async fn a_proof_signed_by_the_wrong_key_is_refused<B: Mine>(mut net: TestNet<B>) {
    let (id, b) = funded(&mut net).await;
    let by_carol = net.proof(CAROL, id, 1, &b);
    let result = net.chain(ALICE).close_channel(id, Some(&by_carol)).await;
    assert!(matches!(revert(result), E::WrongSigner(_)));
    net.assert_state_rebuilt(id).await;
}

async fn a_proof_for_another_chain_or_contract_is_refused<B: Mine>(mut net: TestNet<B>) {
    let (id, b) = funded(&mut net).await;
    // The domain differs, so the recovered signer does.
    let secret_registry = net.chain(ALICE).contracts().secret_registry;
    for domain in [
        Domain {
            chain_id: 1,
            ..net.domain()
        },
        Domain {
            address: secret_registry,
            ..net.domain()
        },
    ] {
        let replayed = net.proof_on(domain, BOB, id, 1, &b);
        let result = net.chain(ALICE).close_channel(id, Some(&replayed)).await;
        assert!(matches!(revert(result), E::WrongSigner(_)));
    }
}

async fn an_unknown_channel_is_refused<B: Mine>(mut net: TestNet<B>) {
    let unknown = ChannelId(U256::from(12345));
    let result = net.chain(ALICE).close_channel(unknown, None).await;
    assert!(matches!(revert(result), E::NoSuchChannel(_)));
}

async fn non_participants_cannot_close_or_deposit<B: Mine>(mut net: TestNet<B>) {
    let (id, b) = funded(&mut net).await;
    let bobs = net.proof(BOB, id, 1, &b);
    let result = net.chain(CAROL).close_channel(id, Some(&bobs)).await;
    assert!(matches!(revert(result), E::NotParticipant(_)));
    let carol = net.address(CAROL);
    let result = net
        .chain(CAROL)
        .set_total_deposit(id, carol, amount(1))
        .await;
    assert!(matches!(revert(result), E::NotParticipant(_)));
    assert_eq!(net.held_by_contract().await, tokens(200));
}

async fn deposit_totals_only_grow_and_never_overflow<B: Mine>(mut net: TestNet<B>) {
    let (id, _) = funded(&mut net).await;
    let alice = net.address(ALICE);
    let same = net
        .chain(ALICE)
        .set_total_deposit(id, alice, amount(100))
        .await;
    assert!(matches!(revert(same), E::TotalNotIncreased(_)));
    // Both deposits together must fit in uint256.
    let huge = net
        .chain(ALICE)
        .set_total_deposit(id, alice, Amount::from(U256::MAX))
        .await;
    assert!(
        matches!(&huge, Err(ChainError::Reverted(_))),
        "an overflowing deposit must revert: {huge:?}"
    );
    assert_eq!(net.held_by_contract().await, tokens(200));
}

async fn a_state_that_is_not_the_current_one_is_refused<B: Mine>(mut net: TestNet<B>) {
    let (id, _) = funded(&mut net).await;
    let mut stale = net.chain(ALICE).channel(id).await.unwrap().unwrap();
    stale.state.side1.deposit = tokens(1000);
    let call = TokenNetwork::closeChannelCall {
        channelId: id.0,
        channel: stale.state,
        nonce: 0,
        balance: nothing(),
        partnerSignature: Default::default(),
    };
    let result = net.chain(ALICE).send(&call).await;
    assert!(matches!(revert(result), E::StaleChannelState(_)));
    net.assert_state_rebuilt(id).await;
}

async fn opening_with_oneself_or_a_short_window_is_refused<B: Mine>(mut net: TestNet<B>) {
    let (alice, carol) = (net.address(ALICE), net.address(CAROL));
    let result = net.chain(ALICE).open_channel(alice, SETTLE_TIMEOUT).await;
    assert!(matches!(revert(result), E::InvalidPartner(_)));
    let result = net.chain(ALICE).open_channel(carol, 1).await;
    assert!(matches!(revert(result), E::SettleTimeoutOutOfRange(_)));
}

/// Only the in-process chain puts several transactions in one block (anvil mines each alone):
/// an id is the pair and the block, so a second open in the block is refused, even after the
/// first channel was settled cooperatively in that block (its tombstone stays).
#[tokio::test]
async fn an_id_is_never_reused_within_a_block() {
    let mut net = TestNet::in_process().await;
    let id = net.open([10, 0]).await;
    let bob = net.address(BOB);
    let again = net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT).await;
    assert!(matches!(revert(again), E::ChannelExists(e) if e.channelId == id.0));
    let [a, b] = cooperative(&net, id, [10, 0], [ALICE, BOB]);
    net.chain(ALICE)
        .cooperative_settle(id, [amount(10), amount(0)], [&a, &b])
        .await
        .unwrap();
    let after_settle = net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT).await;
    assert!(matches!(revert(after_settle), E::ChannelExists(_)));
    net.mine(1).await;
    let (next, _) = net
        .chain(ALICE)
        .open_channel(bob, SETTLE_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(next, id);
}

async fn settlement_caps_absurd_proofs_and_conserves<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 50]).await;
    // Bob signed that he sent more than exists, Alice that she locked more than exists.
    let alices = balance(20, 500, B256::repeat_byte(7));
    let bobs = TokenNetwork::BalanceData {
        transferredAmount: U256::MAX,
        lockedAmount: U256::MAX,
        locksRoot: B256::ZERO,
    };
    let bob_proof = net.proof(BOB, id, 9, &bobs);
    net.chain(ALICE)
        .close_channel(id, Some(&bob_proof))
        .await
        .unwrap();
    let alice_proof = net.proof(ALICE, id, 4, &alices);
    net.chain(BOB)
        .update_non_closing_balance_proof(&alice_proof, None)
        .await
        .unwrap();
    net.mine_past_window().await;
    net.chain(CAROL)
        .settle_channel(id, [alices, bobs])
        .await
        .unwrap();
    let paid = net.tokens_of(ALICE).await + net.tokens_of(BOB).await - tokens(2000 - 150);
    // Counting Bob's locks as Alice's before capping, Alice's share is everything and Bob's
    // locks are held back from it for unlock (what they claim goes to Alice, the rest back to
    // Bob); Alice's own locks find nothing left on Bob's side.
    let channel = net.chain(CAROL).channel(id).await.unwrap().unwrap();
    let pot = channel.pot(net.address(BOB)).expect("Bob's pot").clone();
    assert_eq!(
        pot.remaining,
        tokens(150),
        "Bob's locks hold all of Alice's share"
    );
    assert!(channel.pot(net.address(ALICE)).is_none());
    assert_eq!(paid, U256::ZERO);
    assert_eq!(
        paid + pot.remaining,
        tokens(150),
        "payouts and pots add up to the deposits"
    );
    assert_eq!(net.held_by_contract().await, pot.remaining);
    net.assert_state_rebuilt(id).await;
}

async fn withdraw_needs_both_signatures_before_expiry<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 50]).await;
    let alice = net.address(ALICE);
    let expiry = net.chain(ALICE).block_number().await.unwrap() + 5;
    let request = |total: u64| Withdraw {
        channelId: id.0,
        participant: alice,
        totalWithdraw: tokens(total),
        expiry: U256::from(expiry),
    };
    let withdraw = |net: &TestNet<B>, total: u64, signers: [usize; 2]| {
        signers.map(|who| net.sign_typed(who, &request(total)))
    };
    let [a, a2] = withdraw(&net, 30, [ALICE, ALICE]);
    let only_alice = net
        .chain(ALICE)
        .set_total_withdraw(id, alice, amount(30), expiry, [&a, &a2])
        .await;
    assert!(matches!(revert(only_alice), E::WrongSigner(_)));
    let [a, b] = withdraw(&net, 30, [ALICE, BOB]);
    net.chain(ALICE)
        .set_total_withdraw(id, alice, amount(30), expiry, [&a, &b])
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000 - 100 + 30));
    let again = net
        .chain(ALICE)
        .set_total_withdraw(id, alice, amount(30), expiry, [&a, &b])
        .await;
    assert!(matches!(revert(again), E::TotalNotIncreased(_)));
    let [a, b] = withdraw(&net, 151, [ALICE, BOB]);
    let too_much = net
        .chain(ALICE)
        .set_total_withdraw(id, alice, amount(151), expiry, [&a, &b])
        .await;
    assert!(matches!(revert(too_much), E::WithdrawExceedsChannel(_)));
    net.mine(6).await;
    let [a, b] = withdraw(&net, 40, [ALICE, BOB]);
    let late = net
        .chain(ALICE)
        .set_total_withdraw(id, alice, amount(40), expiry, [&a, &b])
        .await;
    assert!(matches!(revert(late), E::WithdrawExpired(_)));
    assert_eq!(net.held_by_contract().await, tokens(120));
}

async fn locks_pay_the_receiver_only_if_revealed_in_time<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 0]).await;
    let now = net.chain(ALICE).block_number().await.unwrap();
    // Alice's three pending locks towards Bob.
    let secrets: Vec<Secret> = (1..=3u8).map(|n| Secret(B256::repeat_byte(n))).collect();
    let locks: Vec<Lock> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Lock {
            amount: amount(10 * (i as u64 + 1)),
            expiration: BlockNumber(now + 20),
            secret_hash: s.hash(),
        })
        .collect();
    let pending = PendingLocks::from_locks(locks.iter().copied()).unwrap();
    let alices = balance(5, 60, pending.root());
    let proof = net.proof(ALICE, id, 4, &alices);
    net.chain(BOB)
        .close_channel(id, Some(&proof))
        .await
        .unwrap();
    // Bob registers secret 1 in time; secret 2 only after its lock expired; secret 3 never.
    net.chain(BOB).register_secret(&secrets[0]).await.unwrap();
    net.mine_past_window().await;
    net.chain(BOB).register_secret(&secrets[1]).await.unwrap();
    let revealed = net.chain(BOB).secret_reveal_block(&secrets[1].hash()).await;
    assert!(revealed.unwrap().unwrap() > now + 20);
    assert_eq!(
        net.chain(BOB).secret_reveal_block(&secrets[2].hash()).await,
        Ok(None)
    );
    net.chain(CAROL)
        .settle_channel(id, [alices, nothing()])
        .await
        .unwrap();
    assert_eq!(net.held_by_contract().await, tokens(60));
    let before = [net.tokens_of(ALICE).await, net.tokens_of(BOB).await];
    let alice = net.address(ALICE);

    // One lock with its Merkle proof: paid to Bob; twice: refused.
    let single = pending.proof(&locks[0].secret_hash).unwrap();
    net.chain(CAROL)
        .unlock(id, alice, &locks[0], &single)
        .await
        .unwrap();
    let twice = net.chain(CAROL).unlock(id, alice, &locks[0], &single).await;
    assert!(matches!(revert(twice), E::LockAlreadyClaimed(_)));
    // A lock that isn't in the tree.
    let fake = Lock {
        amount: amount(60),
        ..locks[0]
    };
    let result = net.chain(CAROL).unlock(id, alice, &fake, &single).await;
    assert!(matches!(revert(result), E::LocksRootMismatch(_)));
    let channel = net.chain(CAROL).channel(id).await.unwrap().unwrap();
    assert_eq!(channel.pot(alice).unwrap().remaining, tokens(50));
    net.assert_state_rebuilt(id).await;
    // Bob has no pending locks towards Alice.
    let bob = net.address(BOB);
    let result = net.chain(CAROL).unlock_batch(id, bob, &[]).await;
    assert!(matches!(revert(result), E::NoPendingLocks(_)));

    // The rest in one batch: lock 2 (revealed late) and 3 (never) return to Alice.
    net.chain(CAROL)
        .unlock_batch(id, alice, &locks)
        .await
        .unwrap();
    assert_eq!(net.tokens_of(BOB).await - before[1], tokens(10));
    assert_eq!(net.tokens_of(ALICE).await - before[0], tokens(50));
    assert_eq!(net.held_by_contract().await, U256::ZERO);
    net.assert_state_rebuilt(id).await;
    let again = net.chain(CAROL).unlock_batch(id, alice, &locks).await;
    assert!(matches!(revert(again), E::NothingToUnlock(_)));
}

async fn an_old_proof_cannot_pay_a_lock_twice<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 0]).await;
    let now = net.chain(ALICE).block_number().await.unwrap();
    // Alice locked her 100 to Bob (nonce 1), then unlocked it (nonce 2); Bob spent it, paying
    // Alice 100 back. Bob closes with Alice's old proof, the lock still pending, and registers
    // its secret; Alice answers with Bob's latest proof.
    let secret = Secret(B256::repeat_byte(9));
    let lock = Lock {
        amount: amount(100),
        expiration: BlockNumber(now + 20),
        secret_hash: secret.hash(),
    };
    let pending = PendingLocks::from_locks([lock]).unwrap();
    let alices_old = balance(0, 100, pending.root());
    let bobs = balance(100, 0, B256::ZERO);
    stale_close_and_settle(&mut net, id, (1, alices_old), bobs, &secret).await;
    // The lock counts as Bob's before anything is capped: Bob already spent it, so nothing is
    // left to hold back for it, and Alice, who is owed her 100 back, is paid in full.
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000));
    assert_eq!(net.tokens_of(BOB).await, tokens(1000));
    assert_eq!(net.held_by_contract().await, U256::ZERO);
    net.assert_state_rebuilt(id).await;
}

async fn claims_bear_a_pots_shortfall_whatever_the_unlock_order<B: Mine>(mut net: TestNet<B>) {
    let id = net.open([100, 0]).await;
    let now = net.chain(ALICE).block_number().await.unwrap();
    // Alice's old proof (nonce 2) holds two locks of 50 to Bob: U, which she unlocked since
    // and whose secret Bob registers, and K, which never pays. Bob paid the 50 of U back.
    let [u, k] = [8u8, 9].map(|n| Secret(B256::repeat_byte(n)));
    let locks = [u, k].map(|secret| Lock {
        amount: amount(50),
        expiration: BlockNumber(now + 20),
        secret_hash: secret.hash(),
    });
    let pending = PendingLocks::from_locks(locks).unwrap();
    let alices_old = balance(0, 100, pending.root());
    let bobs = balance(50, 0, B256::ZERO);
    stale_close_and_settle(&mut net, id, (2, alices_old), bobs, &u).await;
    // Bob's share covers only 50 of the 100 locked: a shortfall of 50, which his claim bears.
    let alice = net.address(ALICE);
    let channel = net.chain(CAROL).channel(id).await.unwrap().unwrap();
    let pot = channel.pot(alice).unwrap().clone();
    assert_eq!((pot.remaining, pot.shortfall), (tokens(50), tokens(50)));
    // Bob unlocks U first: it pays him nothing more; K still returns whole to Alice.
    let single = pending.proof(&locks[0].secret_hash).unwrap();
    net.chain(BOB)
        .unlock(id, alice, &locks[0], &single)
        .await
        .unwrap();
    net.assert_state_rebuilt(id).await;
    net.chain(CAROL)
        .unlock_batch(id, alice, &locks)
        .await
        .unwrap();
    // Alice is owed 100 − 50 + 50: all of it; Bob, who spent what U gave him, nothing.
    assert_eq!(net.tokens_of(ALICE).await, tokens(1000));
    assert_eq!(net.tokens_of(BOB).await, tokens(1000));
    assert_eq!(net.held_by_contract().await, U256::ZERO);
    net.assert_state_rebuilt(id).await;
}

/// Bob closes with Alice's old proof (its nonce and data), Alice answers with Bob's latest
/// (nonce 1), Bob registers `secret`, and the channel settles after the window.
async fn stale_close_and_settle<B: Mine>(
    net: &mut TestNet<B>,
    id: ChannelId,
    (nonce, alices_old): (u64, TokenNetwork::BalanceData),
    bobs: TokenNetwork::BalanceData,
    secret: &Secret,
) {
    let old = net.proof(ALICE, id, nonce, &alices_old);
    net.chain(BOB).close_channel(id, Some(&old)).await.unwrap();
    let bobs_proof = net.proof(BOB, id, 1, &bobs);
    net.chain(ALICE)
        .update_non_closing_balance_proof(&bobs_proof, None)
        .await
        .unwrap();
    net.chain(BOB).register_secret(secret).await.unwrap();
    net.mine_past_window().await;
    net.chain(CAROL)
        .settle_channel(id, [alices_old, bobs])
        .await
        .unwrap();
}

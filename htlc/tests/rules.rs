//! One test per channel rule: the valid case, and each way to break it. Every rejection must leave
//! the receiving end exactly as it was.

use alloy_primitives::{Address, B256};
use hoplite_htlc::crypto::SignatureError;
use hoplite_htlc::locks::MAX_PENDING_LOCKS;
use hoplite_htlc::testing::{CONFIG, ChannelPair, TOKEN_NETWORK, key};
use hoplite_htlc::*;

const B0: BlockNumber = BlockNumber(1000);

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

fn pair() -> ChannelPair {
    ChannelPair::new(7, [amount(1000), amount(500)])
}

fn secret(n: u8) -> Secret {
    Secret(B256::repeat_byte(n))
}

fn lock(n: u8, value: u64, expiration: u64) -> Lock {
    Lock {
        amount: amount(value),
        expiration: BlockNumber(expiration),
        secret_hash: secret(n).hash(),
    }
}

fn direct(n: u64) -> BalanceChange {
    BalanceChange::DirectTransfer { amount: amount(n) }
}

fn locked(lock: Lock) -> BalanceChange {
    BalanceChange::LockedTransfer { lock }
}

/// What Alice would send next, without changing her end.
fn draft(p: &ChannelPair, change: BalanceChange, block: BlockNumber) -> BalanceUpdate {
    p.clone()
        .send(0, change, block)
        .expect("draft is valid for Alice")
}

/// `update` with its proof edited and validly re-signed by Alice: a well-signed lie.
fn forge(
    p: &ChannelPair,
    update: &BalanceUpdate,
    edit: impl FnOnce(&mut BalanceProof),
) -> BalanceUpdate {
    let mut proof = update.proof.proof;
    edit(&mut proof);
    let signed = proof.sign(&p.keys[0], &proof.token_network.domain_separator());
    BalanceUpdate {
        change: update.change,
        proof: signed,
    }
}

/// Delivers to Bob, expects `expected`, and checks Bob's end did not change.
fn assert_refused(
    p: &mut ChannelPair,
    update: &BalanceUpdate,
    block: BlockNumber,
    expected: ReceiveError,
    action: ErrorAction,
) {
    let before = p.ends[1].clone();
    let error = p.deliver(1, update, block).unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.action(), action, "{error}");
    assert_eq!(p.ends[1], before, "a refused update changed Bob's end");
}

#[test]
fn direct_transfers_both_ways_move_balances_on_both_ends() {
    let mut p = pair();
    p.transfer(0, direct(100), B0);
    p.transfer(1, direct(30), B0);
    p.transfer(0, direct(1), B0);
    for end in &p.ends {
        let alice = if end.participant(Side::Ours).address() == p.keys[0].address() {
            Side::Ours
        } else {
            Side::Partner
        };
        let bob = if alice == Side::Ours {
            Side::Partner
        } else {
            Side::Ours
        };
        assert_eq!(end.spendable(alice), amount(1000 - 101 + 30));
        assert_eq!(end.spendable(bob), amount(500 + 101 - 30));
        assert_eq!(end.participant(alice).transferred_amount(), amount(101));
        assert_eq!(end.participant(alice).nonce(), Nonce(2));
        assert_eq!(end.participant(bob).nonce(), Nonce(1));
    }
    let held_by_bob = p.ends[1].participant(Side::Partner).latest_proof().unwrap();
    assert_eq!(
        Some(held_by_bob),
        p.ends[0].participant(Side::Ours).latest_proof()
    );
}

#[test]
fn locked_transfer_then_unlock_pays_the_receiver() {
    let mut p = pair();
    let l = lock(1, 50, B0.0 + 20);
    p.transfer(0, locked(l), B0);
    assert_eq!(p.spendable(0), amount(950));
    assert_eq!(
        p.spendable(1),
        amount(500),
        "a lock is not the receiver's until unlocked"
    );
    let alice_seen_by_bob = p.ends[1].participant(Side::Partner);
    assert_eq!(alice_seen_by_bob.locks().total(), amount(50));
    assert_eq!(alice_seen_by_bob.locks().get(&l.secret_hash), Some(&l));

    p.transfer(0, BalanceChange::Unlock { secret: secret(1) }, B0);
    assert_eq!(p.spendable(0), amount(950));
    assert_eq!(p.spendable(1), amount(550));
    let alice_seen_by_bob = p.ends[1].participant(Side::Partner);
    assert!(alice_seen_by_bob.locks().is_empty());
    assert_eq!(
        alice_seen_by_bob.latest_proof().unwrap().proof.locks_root,
        B256::ZERO
    );
}

#[test]
fn lock_expired_returns_the_lock_only_after_its_expiration() {
    let mut p = pair();
    let l = lock(1, 50, B0.0 + 20);
    p.transfer(0, locked(l), B0);
    let expire = BalanceChange::LockExpired {
        secret_hash: l.secret_hash,
    };
    // At the expiration block a registered secret still claims the lock.
    assert_eq!(
        p.send(0, expire, l.expiration),
        Err(SendError::Rule(Violation::LockNotExpired {
            expiration: l.expiration,
            current_block: l.expiration
        }))
    );
    let after = BlockNumber(l.expiration.0 + 1);
    let early = draft(&p, expire, after);
    assert_refused(
        &mut p,
        &early,
        l.expiration,
        ReceiveError::Rule(Violation::LockNotExpired {
            expiration: l.expiration,
            current_block: l.expiration,
        }),
        ErrorAction::Reject,
    );
    p.transfer(0, expire, after);
    assert_eq!(p.spendable(0), amount(1000));
    assert_eq!(p.ends[1].spendable(Side::Partner), amount(1000));
}

#[test]
fn update_signed_by_someone_else_is_rejected() {
    let mut p = pair();
    let update = draft(&p, direct(10), B0);
    let mallory = key(99, 0);
    let separator = TOKEN_NETWORK.domain_separator();
    let forged = BalanceUpdate {
        proof: update.proof.proof.sign(&mallory, &separator),
        ..update
    };
    let alice = p.keys[0].address();
    assert_refused(
        &mut p,
        &forged,
        B0,
        ReceiveError::WrongSigner {
            expected: alice,
            got: mallory.address(),
        },
        ErrorAction::Reject,
    );
}

#[test]
fn malformed_signatures_are_rejected() {
    let mut p = pair();
    let update = draft(&p, direct(10), B0);
    let mut bad_v = update;
    bad_v.proof.signature.0[64] = 0;
    assert_refused(
        &mut p,
        &bad_v,
        B0,
        ReceiveError::BadSignature(SignatureError::BadRecoveryByte(0)),
        ErrorAction::Reject,
    );
    let mut flipped = update;
    flipped.proof.signature.0[5] ^= 1;
    let before = p.ends[1].clone();
    let error = p.deliver(1, &flipped, B0).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiveError::WrongSigner { .. } | ReceiveError::BadSignature(_)
        ),
        "{error:?}"
    );
    assert_eq!(p.ends[1], before);
}

#[test]
fn replayed_and_reordered_updates_are_refused() {
    let mut p = pair();
    let first = p.send(0, direct(10), B0).unwrap();
    let second = p.send(0, direct(20), B0).unwrap();
    assert_refused(
        &mut p,
        &second,
        B0,
        ReceiveError::NonceGap {
            latest: Nonce(0),
            got: Nonce(2),
        },
        ErrorAction::Reject,
    );
    p.deliver(1, &first, B0).unwrap();
    assert_refused(
        &mut p,
        &first,
        B0,
        ReceiveError::Duplicate,
        ErrorAction::Ignore,
    );
    p.deliver(1, &second, B0).unwrap();
    assert_refused(
        &mut p,
        &first,
        B0,
        ReceiveError::StaleNonce {
            latest: Nonce(2),
            got: Nonce(1),
        },
        ErrorAction::Reject,
    );
    assert_eq!(p.spendable(1), amount(530));
}

#[test]
fn proofs_for_another_chain_contract_or_channel_are_rejected() {
    let mut p = pair();
    let update = draft(&p, direct(10), B0);
    let other_chain = forge(&p, &update, |proof| proof.token_network.chain_id = 1);
    assert_refused(
        &mut p,
        &other_chain,
        B0,
        ReceiveError::WrongTokenNetwork {
            expected: TOKEN_NETWORK,
            got: other_chain.proof.proof.token_network,
        },
        ErrorAction::Reject,
    );
    let other_contract = forge(&p, &update, |proof| {
        proof.token_network.address = Address::repeat_byte(1)
    });
    assert_refused(
        &mut p,
        &other_contract,
        B0,
        ReceiveError::WrongTokenNetwork {
            expected: TOKEN_NETWORK,
            got: other_contract.proof.proof.token_network,
        },
        ErrorAction::Reject,
    );
    let other_channel = forge(&p, &update, |proof| proof.channel_id = ChannelId::from(2));
    assert_refused(
        &mut p,
        &other_channel,
        B0,
        ReceiveError::WrongChannel {
            expected: ChannelId::from(1),
            got: ChannelId::from(2),
        },
        ErrorAction::Reject,
    );
    // A signature made for chain 1, presented as if for ours: the domain is in the digest, so it
    // recovers someone else.
    let replayed = BalanceUpdate {
        proof: SignedBalanceProof {
            signature: other_chain.proof.signature,
            ..update.proof
        },
        ..update
    };
    let error = p.deliver(1, &replayed, B0).unwrap_err();
    assert!(
        matches!(error, ReceiveError::WrongSigner { .. }),
        "{error:?}"
    );
}

#[test]
fn decreasing_transferred_amount_closes() {
    let mut p = pair();
    p.transfer(0, direct(100), B0);
    let update = draft(&p, direct(10), B0);
    let decreased = forge(&p, &update, |proof| proof.transferred_amount = amount(50));
    assert_refused(
        &mut p,
        &decreased,
        B0,
        ReceiveError::TransferredMismatch {
            expected: amount(110),
            got: amount(50),
        },
        ErrorAction::CloseChannel,
    );
}

#[test]
fn locked_amount_and_locks_root_must_match_the_locks() {
    let mut p = pair();
    p.transfer(0, locked(lock(1, 10, B0.0 + 20)), B0);
    p.transfer(0, locked(lock(2, 20, B0.0 + 20)), B0);

    let add = draft(&p, locked(lock(3, 30, B0.0 + 20)), B0);
    let wrong_total = forge(&p, &add, |proof| proof.locked_amount = amount(30));
    assert_refused(
        &mut p,
        &wrong_total,
        B0,
        ReceiveError::LockedMismatch {
            expected: amount(60),
            got: amount(30),
        },
        ErrorAction::CloseChannel,
    );
    let wrong_root = forge(&p, &add, |proof| proof.locks_root = B256::repeat_byte(9));
    assert_refused(
        &mut p,
        &wrong_root,
        B0,
        ReceiveError::LocksRootMismatch {
            expected: add.proof.proof.locks_root,
            got: B256::repeat_byte(9),
        },
        ErrorAction::CloseChannel,
    );

    // The same for a removal: the lock must come back to its slot.
    let unlock = draft(&p, BalanceChange::Unlock { secret: secret(1) }, B0);
    let stale_root = forge(&p, &unlock, |proof| proof.locks_root = B256::repeat_byte(8));
    assert_refused(
        &mut p,
        &stale_root,
        B0,
        ReceiveError::LocksRootMismatch {
            expected: unlock.proof.proof.locks_root,
            got: B256::repeat_byte(8),
        },
        ErrorAction::CloseChannel,
    );
    p.deliver(1, &unlock, B0).unwrap();
    assert_eq!(p.spendable(1), amount(510));
}

#[test]
fn unlock_needs_the_right_secret() {
    let mut p = pair();
    p.transfer(0, locked(lock(1, 10, B0.0 + 20)), B0);
    let wrong = BalanceChange::Unlock { secret: secret(2) };
    assert_eq!(
        p.send(0, wrong, B0),
        Err(SendError::Rule(Violation::UnknownLock(secret(2).hash())))
    );
    let unlock = draft(&p, BalanceChange::Unlock { secret: secret(1) }, B0);
    let lying = BalanceUpdate {
        change: wrong,
        ..unlock
    };
    assert_refused(
        &mut p,
        &lying,
        B0,
        ReceiveError::Rule(Violation::UnknownLock(secret(2).hash())),
        ErrorAction::CloseChannel,
    );
}

#[test]
fn overspending_is_refused_on_both_ends() {
    let mut p = pair();
    assert_eq!(
        p.send(0, direct(1001), B0),
        Err(SendError::Rule(Violation::InsufficientBalance {
            spendable: amount(1000),
            needed: amount(1001)
        }))
    );
    assert_eq!(
        p.send(0, locked(lock(1, 1001, B0.0 + 20)), B0),
        Err(SendError::Rule(Violation::InsufficientBalance {
            spendable: amount(1000),
            needed: amount(1001)
        }))
    );
    // Alice believes she deposited more than Bob saw on-chain: Bob refuses what she can't pay.
    p.ends[0]
        .set_total_deposit(Side::Ours, amount(5000))
        .unwrap();
    let update = draft(&p, direct(1500), B0);
    assert_refused(
        &mut p,
        &update,
        B0,
        ReceiveError::Rule(Violation::InsufficientBalance {
            spendable: amount(1000),
            needed: amount(1500),
        }),
        ErrorAction::CloseChannel,
    );
}

#[test]
fn amounts_never_wrap() {
    let mut p = ChannelPair::new(
        7,
        [Amount::MAX.checked_sub(amount(10)).unwrap(), Amount::ZERO],
    );
    assert_eq!(
        p.ends[0].set_total_deposit(Side::Partner, amount(20)),
        Err(BalanceError::AmountOverflow),
        "both deposits together must fit in uint256"
    );

    // Traffic back and forth grows both transferred amounts; `deposit + received` then passes
    // 2^256 although the real balance fits. Refused, never wrapped.
    let half = Amount::from(alloy_primitives::U256::from(1) << 255);
    let mut p = ChannelPair::new(7, [half, half.checked_sub(amount(1)).unwrap()]);
    p.transfer(0, BalanceChange::DirectTransfer { amount: half }, B0);
    let back = BalanceChange::DirectTransfer { amount: half };
    assert_eq!(
        p.send(1, back, B0),
        Err(SendError::Rule(Violation::AmountOverflow))
    );
    // Bob signs it anyway; Alice refuses.
    let proof = BalanceProof {
        token_network: TOKEN_NETWORK,
        channel_id: ChannelId::from(1),
        nonce: Nonce(1),
        transferred_amount: half,
        locked_amount: Amount::ZERO,
        locks_root: B256::ZERO,
    };
    let update = BalanceUpdate {
        change: back,
        proof: proof.sign(&p.keys[1], &TOKEN_NETWORK.domain_separator()),
    };
    let before = p.ends[0].clone();
    assert_eq!(
        p.deliver(0, &update, B0),
        Err(ReceiveError::Rule(Violation::AmountOverflow))
    );
    assert_eq!(p.ends[0], before);
}

#[test]
fn lock_expiration_leaves_reveal_timeout_and_fits_settle_timeout() {
    let mut p = pair();
    let earliest = B0.0 + CONFIG.reveal_timeout + 1;
    let latest = B0.0 + CONFIG.settle_timeout;
    let range = |expiration| Violation::LockExpirationOutOfRange {
        expiration: BlockNumber(expiration),
        earliest: BlockNumber(earliest),
        latest: BlockNumber(latest),
    };
    for too in [B0.0, earliest - 1, latest + 1, u64::MAX] {
        assert_eq!(
            p.send(0, locked(lock(1, 5, too)), B0),
            Err(SendError::Rule(range(too)))
        );
    }
    // Near the end of u64 the window saturates instead of wrapping.
    let end = BlockNumber(u64::MAX - 5);
    assert_eq!(
        p.send(0, locked(lock(1, 5, u64::MAX)), end),
        Err(SendError::Rule(Violation::LockExpirationOutOfRange {
            expiration: BlockNumber(u64::MAX),
            earliest: BlockNumber(u64::MAX),
            latest: BlockNumber(u64::MAX),
        }))
    );
    p.transfer(0, locked(lock(1, 5, earliest)), B0);
    p.transfer(0, locked(lock(2, 5, latest)), B0);
    // Sent at B0, received five blocks later: too close to expiry for Bob to claim on-chain,
    // but Alice signed it already; refusing it would block her direction for good. Bob holds
    // it (his node won't forward or claim it) until Alice removes it once expired.
    let late = p.send(0, locked(lock(3, 5, earliest)), B0).unwrap();
    let at = BlockNumber(B0.0 + 5);
    p.deliver(1, &late, at).expect("a late lock is accepted");
    assert!(
        p.ends[1]
            .participant(Side::Partner)
            .locks()
            .get(&lock(3, 5, earliest).secret_hash)
            .is_some()
    );
    // The upper bound binds the receiver too: a receiver behind the sender refuses a lock
    // beyond its own window, until its view catches up.
    let far = draft(&p, locked(lock(4, 5, latest + 3)), BlockNumber(B0.0 + 3));
    assert_refused(
        &mut p,
        &far,
        B0,
        ReceiveError::Rule(range(latest + 3)),
        ErrorAction::Reject,
    );
}

#[test]
fn pending_locks_are_bounded() {
    let mut p = ChannelPair::new(7, [amount(1_000_000), Amount::ZERO]);
    for n in 0..MAX_PENDING_LOCKS as u64 {
        let l = Lock {
            amount: amount(1),
            expiration: BlockNumber(B0.0 + 50),
            secret_hash: SecretHash(B256::from(alloy_primitives::U256::from(n))),
        };
        p.transfer(0, locked(l), B0);
    }
    let one_more = lock(1, 1, B0.0 + 50);
    assert_eq!(
        p.send(0, locked(one_more), B0),
        Err(SendError::Rule(Violation::TooManyLocks))
    );
    let shape = draft(&p, direct(1), B0);
    let mut overflowing = forge(&p, &shape, |_| {});
    overflowing.change = locked(one_more);
    assert_refused(
        &mut p,
        &overflowing,
        B0,
        ReceiveError::Rule(Violation::TooManyLocks),
        ErrorAction::CloseChannel,
    );
}

#[test]
fn duplicate_secret_hashes_and_zero_amounts_are_refused() {
    let mut p = pair();
    p.transfer(0, locked(lock(1, 10, B0.0 + 20)), B0);
    let hash = secret(1).hash();
    assert_eq!(
        p.send(0, locked(lock(1, 11, B0.0 + 21)), B0),
        Err(SendError::Rule(Violation::DuplicateSecretHash(hash)))
    );
    assert_eq!(
        p.send(0, direct(0), B0),
        Err(SendError::Rule(Violation::ZeroAmount))
    );
    assert_eq!(
        p.send(0, locked(lock(2, 0, B0.0 + 20)), B0),
        Err(SendError::Rule(Violation::ZeroAmount))
    );

    let shape = draft(&p, direct(1), B0);
    let mut duplicate = forge(&p, &shape, |_| {});
    duplicate.change = locked(lock(1, 11, B0.0 + 21));
    assert_refused(
        &mut p,
        &duplicate,
        B0,
        ReceiveError::Rule(Violation::DuplicateSecretHash(hash)),
        ErrorAction::CloseChannel,
    );
    let zero = forge(
        &p,
        &BalanceUpdate {
            change: direct(0),
            ..shape
        },
        |proof| {
            proof.transferred_amount = Amount::ZERO;
        },
    );
    assert_refused(
        &mut p,
        &zero,
        B0,
        ReceiveError::Rule(Violation::ZeroAmount),
        ErrorAction::CloseChannel,
    );
}

#[test]
fn deposits_and_withdrawals_are_monotonic_and_covered() {
    let mut p = pair();
    let end = &mut p.ends[0];
    end.set_total_deposit(Side::Ours, amount(1200)).unwrap();
    assert_eq!(end.spendable(Side::Ours), amount(1200));
    assert_eq!(
        end.set_total_deposit(Side::Ours, amount(1100)),
        Err(BalanceError::TotalDecreased {
            current: amount(1200),
            new: amount(1100)
        })
    );
    end.set_total_withdraw(Side::Ours, amount(200)).unwrap();
    assert_eq!(end.spendable(Side::Ours), amount(1000));
    assert_eq!(
        end.set_total_withdraw(Side::Ours, amount(1201)),
        Err(BalanceError::WithdrawExceedsBalance {
            spendable: amount(1000),
            requested: amount(1001)
        })
    );
    assert_eq!(
        end.set_total_withdraw(Side::Ours, amount(100)),
        Err(BalanceError::TotalDecreased {
            current: amount(200),
            new: amount(100)
        })
    );
    end.set_total_withdraw(Side::Partner, amount(500)).unwrap();
    assert_eq!(end.spendable(Side::Partner), Amount::ZERO);
}

#[test]
fn signing_with_another_key_is_misuse() {
    let mut p = pair();
    let bob = p.keys[1].clone();
    let before = p.ends[0].clone();
    assert_eq!(
        p.ends[0].send(&bob, direct(1), B0),
        Err(SendError::WrongKey {
            expected: p.keys[0].address(),
            got: bob.address()
        })
    );
    assert_eq!(p.ends[0], before);
}

#[test]
fn channel_parameters_are_checked() {
    let a = Address::repeat_byte(1);
    let b = Address::repeat_byte(2);
    let id = ChannelId::from(1);
    assert_eq!(
        Channel::new(TOKEN_NETWORK, id, CONFIG, a, a).err(),
        Some(ConfigError::SameParticipant)
    );
    for (reveal_timeout, settle_timeout) in [(0, 10), (10, 10), (11, 10)] {
        let config = ChannelConfig {
            reveal_timeout,
            settle_timeout,
        };
        assert_eq!(
            Channel::new(TOKEN_NETWORK, id, config, a, b).err(),
            Some(ConfigError::Timeouts {
                reveal_timeout,
                settle_timeout
            })
        );
    }
}

#[test]
fn hostile_bytes_never_panic_the_decoder() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let p = pair();
    let valid = draft(&p, locked(lock(1, 10, B0.0 + 20)), B0).encode();
    assert!(valid.len() <= MAX_UPDATE_SIZE);
    for cut in 0..valid.len() {
        assert!(
            BalanceUpdate::decode(&valid[..cut]).is_err(),
            "truncated at {cut} decoded"
        );
    }
    let mut trailing = valid.clone();
    trailing.push(0);
    assert_eq!(
        BalanceUpdate::decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(
        BalanceUpdate::decode(&[0u8; MAX_UPDATE_SIZE + 1]),
        Err(DecodeError::TooLong(MAX_UPDATE_SIZE + 1))
    );
    let seed = 0xdec0de;
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..20_000 {
        let mut bytes = valid.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        // A mutated update either fails to decode or decodes to an update that round-trips.
        if let Ok(update) = BalanceUpdate::decode(&bytes) {
            assert_eq!(
                BalanceUpdate::decode(&update.encode()),
                Ok(update),
                "seed {seed:#x} case {case}"
            );
        }
    }
}

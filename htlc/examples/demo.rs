//! The in-process demo: three parties, two channels, every update signed, encoded, decoded and
//! checked as between real nodes.
//!
//! `cargo run --release -p hoplite-htlc --example demo`
//!
//! 1. Alice and Bob pay each other directly (metering-style small payments).
//! 2. Alice pays Carol through Bob: hash-time-locks with a fee for Bob and decreasing expirations;
//!    Carol's secret travels back and each hop unlocks.
//! 3. A payment whose secret never comes: the locks expire hop by hop and everyone is refunded.
//! 4. An update the sender can't afford is refused.

use alloy_primitives::keccak256;
use hoplite_htlc::testing::{CONFIG, ChannelPair, key};
use hoplite_htlc::{Amount, BalanceChange, BlockNumber, ChannelId, Lock, Secret, SecretHash, Side};

fn tokens(n: u64) -> Amount {
    Amount::from(n)
}

fn show(title: &str, ab: &ChannelPair, bc: &ChannelPair) {
    println!("\n{title}");
    println!(
        "  {:<14} {:>10} {:>10} {:>8}",
        "channel", "party", "spendable", "locked"
    );
    for (name, pair, parties) in [
        ("Alice-Bob", ab, ["Alice", "Bob"]),
        ("Bob-Carol", bc, ["Bob", "Carol"]),
    ] {
        for (who, party) in parties.iter().enumerate() {
            let locked = pair.ends[who].participant(Side::Ours).locks().total();
            println!(
                "  {name:<14} {party:>10} {:>10} {locked:>8}",
                pair.spendable(who)
            );
        }
    }
}

fn lock(amount: u64, expiration: BlockNumber, secret_hash: SecretHash) -> BalanceChange {
    BalanceChange::LockedTransfer {
        lock: Lock {
            amount: tokens(amount),
            expiration,
            secret_hash,
        },
    }
}

fn main() {
    let [alice, bob, carol] = [key(2026, 0), key(2026, 1), key(2026, 2)];
    println!(
        "Alice {}\nBob   {}\nCarol {}",
        alice.address(),
        bob.address(),
        carol.address()
    );
    println!(
        "timeouts: reveal {} blocks, settle {} blocks",
        CONFIG.reveal_timeout, CONFIG.settle_timeout
    );
    let mut ab = ChannelPair::open(
        [alice, bob.clone()],
        ChannelId::from(1),
        [tokens(1000), tokens(200)],
    );
    let mut bc = ChannelPair::open(
        [bob, carol],
        ChannelId::from(2),
        [tokens(500), Amount::ZERO],
    );
    let mut block = BlockNumber(100);
    show("opened: deposits on-chain", &ab, &bc);

    // 1. Direct payments both ways.
    for _ in 0..5 {
        ab.transfer(
            0,
            BalanceChange::DirectTransfer { amount: tokens(10) },
            block,
        );
    }
    ab.transfer(
        1,
        BalanceChange::DirectTransfer { amount: tokens(7) },
        block,
    );
    show("1. Alice paid Bob 5 x 10, Bob paid Alice 7", &ab, &bc);

    // 2. Alice pays Carol 100 through Bob, who keeps a fee of 1.
    let secret = Secret(keccak256(b"Carol's invoice secret"));
    let hash = secret.hash();
    let outer = BlockNumber(block.0 + 60);
    let inner = BlockNumber(outer.0 - CONFIG.reveal_timeout);
    ab.transfer(0, lock(101, outer, hash), block);
    bc.transfer(0, lock(100, inner, hash), block);
    show(
        &format!("2a. locks: Alice->Bob 101 until block {outer}, Bob->Carol 100 until {inner}"),
        &ab,
        &bc,
    );
    // Carol reveals the secret to Bob; Bob unlocks to her, then learns his own incoming lock.
    bc.transfer(0, BalanceChange::Unlock { secret }, block);
    ab.transfer(0, BalanceChange::Unlock { secret }, block);
    show(
        "2b. secret revealed backwards: Bob unlocked Carol, Alice unlocked Bob (fee 1)",
        &ab,
        &bc,
    );

    // 3. A payment whose payee never reveals: locks expire from the payee back to the payer.
    let lost = Secret(keccak256(b"never revealed")).hash();
    let outer = BlockNumber(block.0 + 40);
    let inner = BlockNumber(outer.0 - CONFIG.reveal_timeout);
    ab.transfer(0, lock(51, outer, lost), block);
    bc.transfer(0, lock(50, inner, lost), block);
    show("3a. locks for a payment Carol never claims", &ab, &bc);
    block = BlockNumber(inner.0 + 1);
    bc.transfer(0, BalanceChange::LockExpired { secret_hash: lost }, block);
    block = BlockNumber(outer.0 + 1);
    ab.transfer(0, BalanceChange::LockExpired { secret_hash: lost }, block);
    show(
        &format!("3b. block {block}: both locks expired, balances back"),
        &ab,
        &bc,
    );

    // 4. More than Alice has.
    let error = ab
        .send(
            0,
            BalanceChange::DirectTransfer {
                amount: tokens(10_000),
            },
            block,
        )
        .unwrap_err();
    println!("\n4. Alice tries to pay 10000: refused: {error}");

    // Spendable plus locked, both parties: what each channel holds of its deposits.
    let held = |pair: &ChannelPair| {
        [0, 1].iter().try_fold(Amount::ZERO, |sum, &who| {
            let locked = pair.ends[who].participant(Side::Ours).locks().total();
            sum.checked_add(pair.spendable(who))?.checked_add(locked)
        })
    };
    let held = [&ab, &bc].map(|pair| held(pair).map_or("overflow".to_string(), |a| a.to_string()));
    println!(
        "\nconservation: Alice-Bob holds {} of 1200 deposited, Bob-Carol {} of 500",
        held[0], held[1]
    );
}

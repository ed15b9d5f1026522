//! Gas of every TokenNetwork call on the in-process EVM (Cancun rules), next to Raiden's
//! TokenNetwork, and the dispute lifecycle total: open + 2 deposits + close + update + settle.
//!
//! `cargo run --release -p hoplite-chain --example gas`
//!
//! Gas is per transaction, including the 21,000 base and calldata, as a wallet pays it. The
//! parties approved the TokenNetwork for an unlimited amount, so the token skips the allowance
//! write on deposits (as OpenZeppelin's ERC-20 does).

use alloy_primitives::{B256, U256};
use hoplite_chain::evm::complete;
use hoplite_chain::testing::*;
use hoplite_chain::{ChainError, Receipt};
use hoplite_htlc::eip712::{CooperativeSettle, Withdraw};
use hoplite_htlc::locks::PendingLocks;
use hoplite_htlc::{Amount, BlockNumber, Lock, Secret};

/// Raiden's TokenNetwork, per call (the anchor to beat).
const RAIDEN: &[(&str, u64)] = &[
    ("openChannel", 104_256),
    ("setTotalDeposit", 57_368),
    ("closeChannel", 122_682),
    ("updateNonClosingBalanceProof", 91_696),
    ("settleChannel", 116_222),
    ("unlockBatch (1 lock)", 38_589),
    ("registerSecret", 45_597),
];

fn main() -> Result<(), ChainError> {
    let mut rows: Vec<(String, u64)> = Vec::new();
    let mut record = |name: &str, receipt: Receipt| rows.push((name.to_string(), receipt.gas_used));
    let mut net = complete(TestNet::in_process());
    let (alice, bob) = (net.address(ALICE), net.address(BOB));

    // A dispute with pending locks: Bob closes with Alice's proof, Alice updates with Bob's.
    let (id, receipt) = complete(net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT))?;
    record("openChannel", receipt);
    record(
        "setTotalDeposit",
        complete(
            net.chain(ALICE)
                .set_total_deposit(id, alice, Amount::from(100u64)),
        )?,
    );
    record(
        "setTotalDeposit (second side)",
        complete(
            net.chain(BOB)
                .set_total_deposit(id, bob, Amount::from(100u64)),
        )?,
    );
    let expiration = BlockNumber(net.evm().block_number() + 20);
    let secrets: Vec<Secret> = (1..=4u8).map(|n| Secret(B256::repeat_byte(n))).collect();
    let locks: Vec<Lock> = secrets
        .iter()
        .map(|s| Lock {
            amount: Amount::from(5u64),
            expiration,
            secret_hash: s.hash(),
        })
        .collect();
    let pending = PendingLocks::from_locks(locks.iter().copied()).expect("4 locks fit");
    let alices = balance(30, 20, pending.root());
    let bobs = balance(10, 0, B256::ZERO);
    let alice_proof = net.proof(ALICE, id, 7, &alices);
    let bob_proof = net.proof(BOB, id, 3, &bobs);
    record(
        "closeChannel",
        complete(net.chain(BOB).close_channel(id, Some(&alice_proof)))?,
    );
    record(
        "updateNonClosingBalanceProof",
        complete(
            net.chain(ALICE)
                .update_non_closing_balance_proof(&bob_proof, None),
        )?,
    );
    record(
        "registerSecret",
        complete(net.chain(BOB).register_secret(&secrets[0]))?,
    );
    complete(net.mine_past_window());
    record(
        "settleChannel",
        complete(net.chain(CAROL).settle_channel(id, [alices, bobs]))?,
    );
    let proof = pending.proof(&locks[0].secret_hash).expect("pending");
    record(
        "unlock (1 lock, Merkle proof)",
        complete(net.chain(BOB).unlock(id, alice, &locks[0], &proof))?,
    );
    record(
        "unlockBatch (4 locks, 1 already paid)",
        complete(net.chain(BOB).unlock_batch(id, alice, &locks))?,
    );

    // Raiden's unlock anchor: all of one direction's locks at once, here a single lock.
    let (id, _) = complete(net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT))?;
    complete(
        net.chain(ALICE)
            .set_total_deposit(id, alice, Amount::from(100u64)),
    )?;
    let one = [locks[0]];
    let single = PendingLocks::from_locks(one).expect("1 lock fits");
    let alices = balance(0, 5, single.root());
    let proof = net.proof(ALICE, id, 1, &alices);
    complete(net.chain(BOB).close_channel(id, Some(&proof)))?;
    complete(net.mine_past_window());
    complete(net.chain(CAROL).settle_channel(id, [alices, nothing()]))?;
    record(
        "unlockBatch (1 lock)",
        complete(net.chain(BOB).unlock_batch(id, alice, &one))?,
    );

    // A watchtower's update, with the non-closer's consent.
    complete(net.mine(1));
    let (id, _) = complete(net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT))?;
    complete(
        net.chain(ALICE)
            .set_total_deposit(id, alice, Amount::from(100u64)),
    )?;
    complete(net.chain(ALICE).close_channel(id, None))?;
    let paid = balance(40, 0, B256::ZERO);
    let proof = net.proof(ALICE, id, 2, &paid);
    let consent = net.consent(BOB, &proof);
    record(
        "updateNonClosingBalanceProof (watchtower)",
        complete(
            net.chain(CAROL)
                .update_non_closing_balance_proof(&proof, Some(&consent)),
        )?,
    );
    complete(net.mine_past_window());
    complete(net.chain(CAROL).settle_channel(id, [paid, nothing()]))?;

    // Withdraw and cooperative settle.
    let (id, _) = complete(net.chain(ALICE).open_channel(bob, SETTLE_TIMEOUT))?;
    complete(
        net.chain(ALICE)
            .set_total_deposit(id, alice, Amount::from(100u64)),
    )?;
    complete(
        net.chain(BOB)
            .set_total_deposit(id, bob, Amount::from(100u64)),
    )?;
    let expiry = net.evm().block_number() + 10;
    let request = Withdraw {
        channelId: id.0,
        participant: alice,
        totalWithdraw: tokens(30),
        expiry: U256::from(expiry),
    };
    let [a, b] = [ALICE, BOB].map(|who| net.sign_typed(who, &request));
    record(
        "setTotalWithdraw",
        complete(net.chain(ALICE).set_total_withdraw(
            id,
            alice,
            Amount::from(30u64),
            expiry,
            [&a, &b],
        ))?,
    );
    let agreed = CooperativeSettle {
        channelId: id.0,
        participant1: alice,
        balance1: tokens(70),
        participant2: bob,
        balance2: tokens(100),
    };
    let [a, b] = [ALICE, BOB].map(|who| net.sign_typed(who, &agreed));
    let balances = [Amount::from(70u64), Amount::from(100u64)];
    record(
        "cooperativeSettle",
        complete(net.chain(ALICE).cooperative_settle(id, balances, [&a, &b]))?,
    );
    assert_eq!(
        complete(net.held_by_contract()),
        U256::ZERO,
        "every token paid out"
    );

    println!("{:<44} {:>9} {:>9} {:>7}", "call", "gas", "Raiden", "ratio");
    for (name, gas) in &rows {
        let raiden = RAIDEN.iter().find(|(r, _)| r == name).map(|&(_, g)| g);
        match raiden {
            Some(r) => println!(
                "{name:<44} {gas:>9} {r:>9} {:>6.2}x",
                *gas as f64 / r as f64
            ),
            None => println!("{name:<44} {gas:>9} {:>9} {:>7}", "-", "-"),
        }
    }
    let gas_of = |name: &str| rows.iter().find(|(n, _)| n == name).map_or(0, |&(_, g)| g);
    let lifecycle = gas_of("openChannel")
        + gas_of("setTotalDeposit")
        + gas_of("setTotalDeposit (second side)")
        + gas_of("closeChannel")
        + gas_of("updateNonClosingBalanceProof")
        + gas_of("settleChannel");
    let raiden = 104_256 + 2 * 57_368 + 122_682 + 91_696 + 116_222;
    println!(
        "\ndispute lifecycle (open + 2 deposits + close + update + settle): {lifecycle} gas, Raiden {raiden}: {:.2}x (goal 0.60x)",
        lifecycle as f64 / raiden as f64
    );
    Ok(())
}

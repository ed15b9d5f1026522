//! Gas of every TokenNetwork call on the in-process EVM (Cancun rules), next to Raiden's
//! TokenNetwork, and the dispute lifecycle total: open + 2 deposits + close + update + settle.
//!
//! `cargo run --release -p hoplite-chain --example gas`
//!
//! Gas is per transaction, including the 21,000 base and calldata, as a wallet pays it.

use alloy_primitives::{B256, U256};
use hoplite_chain::contracts::{SecretRegistry, TokenNetwork};
use hoplite_chain::evm::Receipt;
use hoplite_chain::testing::*;
use hoplite_htlc::locks::PendingLocks;
use hoplite_htlc::{Amount, BlockNumber, Lock, Secret};

/// Raiden's TokenNetwork, per call (the anchor to beat).
const RAIDEN: &[(&str, u64)] = &[
    ("openChannel", 104_256),
    ("setTotalDeposit", 57_368),
    ("closeChannel", 122_682),
    ("updateNonClosingBalanceProof", 91_696),
    ("settleChannel", 116_222),
    ("unlock (1 lock)", 38_589),
    ("registerSecret", 45_597),
];

fn main() {
    let mut rows: Vec<(String, u64)> = Vec::new();
    let mut record = |name: &str, receipt: Receipt| rows.push((name.to_string(), receipt.gas_used));
    let mut net = TestNet::new();
    let (alice, bob) = (net.address(ALICE), net.address(BOB));

    // A dispute with pending locks: Bob closes with Alice's proof, Alice updates with Bob's.
    let (id, receipt) = net.open().unwrap();
    record("openChannel", receipt);
    record("setTotalDeposit", net.deposit(ALICE, id, 100).unwrap());
    record(
        "setTotalDeposit (second side)",
        net.deposit(BOB, id, 100).unwrap(),
    );
    let expiration = BlockNumber(net.evm.block_number() + 20);
    let secrets: Vec<Secret> = (1..=4u8).map(|n| Secret(B256::repeat_byte(n))).collect();
    let locks: Vec<Lock> = secrets
        .iter()
        .map(|s| Lock {
            amount: Amount::from(5u64),
            expiration,
            secret_hash: s.hash(),
        })
        .collect();
    let pending = PendingLocks::from_locks(locks.iter().copied()).unwrap();
    let alices = balance(30, 20, pending.root());
    let bobs = balance(10, 0, B256::ZERO);
    record("closeChannel", net.close(BOB, id, 7, &alices).unwrap());
    record(
        "updateNonClosingBalanceProof",
        net.update(ALICE, BOB, id, 3, &bobs).unwrap(),
    );
    let register = SecretRegistry::registerSecretCall {
        secret: secrets[0].0,
    };
    let (_, receipt) = net
        .evm
        .transact_sol(bob, net.contracts.secret_registry, &register)
        .unwrap();
    record("registerSecret", receipt);
    net.mine_past_window();
    record("settleChannel", net.settle(id, &alices, &bobs).unwrap());
    let unlock = net.unlock_call(id, &pending, &locks[0]);
    record("unlock (1 lock)", net.send(BOB, &unlock).unwrap().1);
    let batch = TokenNetwork::unlockBatchCall {
        channelId: id,
        sender: alice,
        receiver: bob,
        locks: locks.iter().map(TokenNetwork::Lock::from).collect(),
    };
    record(
        "unlockBatch (4 locks, 1 already paid)",
        net.send(BOB, &batch).unwrap().1,
    );

    // A watchtower's update, with the non-closer's consent.
    let (id, _) = net.open().unwrap();
    net.deposit(ALICE, id, 100).unwrap();
    net.close(ALICE, id, 0, &nothing()).unwrap();
    record(
        "updateNonClosingBalanceProof (watchtower)",
        net.update(CAROL, ALICE, id, 2, &balance(40, 0, B256::ZERO))
            .unwrap(),
    );
    net.mine_past_window();
    net.settle(id, &balance(40, 0, B256::ZERO), &nothing())
        .unwrap();

    // Withdraw and cooperative settle.
    let (id, _) = net.open().unwrap();
    net.deposit(ALICE, id, 100).unwrap();
    net.deposit(BOB, id, 100).unwrap();
    let withdraw = net.withdraw_call(id, ALICE, 30, net.evm.block_number() + 10, [ALICE, BOB]);
    record("setTotalWithdraw", net.send(ALICE, &withdraw).unwrap().1);
    let settle = net.cooperative_settle_call(id, [70, 100], [ALICE, BOB]);
    record("cooperativeSettle", net.send(ALICE, &settle).unwrap().1);
    assert_eq!(net.held_by_contract(), U256::ZERO, "every token paid out");

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
}

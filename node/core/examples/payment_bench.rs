//! Payments per second of a 3-hop payment (payer, two mediators, payee) through the in-process
//! network, with real signatures, on one core; and, in the same run, the raw limit: how many
//! times a second this machine can sign a digest and recover its signer.
//!
//! A payment of 3 hops signs and recovers 7 times: the payee's invoice, then each hop's
//! `LockedTransfer` and `Unlock`. So the signature limit is `1 / (7 × (sign + recover))`
//! payments a second, and the ratio says how close the node comes to it.
//!
//! ```text
//! cargo run --release -p hoplite-node --example payment_bench -- [--payments N] [--rounds R]
//! ```
//! Prints the median over `R` rounds of `N` payments each. The testkit's invariant checks (a
//! chain call after every message) are off here; the tests keep them on.

use alloy_primitives::B256;
use hoplite_htlc::PrivateKey;
use hoplite_htlc::crypto::recover_address;
use hoplite_node::Event;
use hoplite_node::testkit::Network;
use std::time::Instant;

fn main() {
    let mut payments = 1_000usize;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--payments", Some(n)) => payments = n,
            ("--rounds", Some(n)) => rounds = n,
            _ => {
                eprintln!("usage: payment_bench [--payments N] [--rounds R]");
                std::process::exit(2);
            }
        }
    }

    let mut per_payment = Vec::new();
    let mut per_pair = Vec::new();
    for round in 0..rounds {
        per_payment.push(payment_round(payments, round as u64 + 1));
        per_pair.push(signature_round(payments * 7));
        eprint!("\rround {}/{rounds}", round + 1);
    }
    eprintln!();
    let payment = median(&mut per_payment);
    let pair = median(&mut per_pair);
    let achieved = 1.0 / payment;
    let limit = 1.0 / (7.0 * pair);
    println!(
        "3-hop payment, in-process, real signatures, one core ({rounds} rounds of {payments}):"
    );
    println!(
        "  per payment       {:>9.1} µs   {:>8.0} payments/s",
        payment * 1e6,
        achieved
    );
    println!(
        "  sign + recover    {:>9.1} µs   (7 per payment)",
        pair * 1e6
    );
    println!(
        "  signature limit                 {:>8.0} payments/s",
        limit
    );
    println!(
        "  ratio to the limit              {:>8.2}",
        achieved / limit
    );
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
/// Seconds per payment over `count` payments from node 0 to node 3 through 1 and 2.
fn payment_round(count: usize, seed: u64) -> f64 {
    let mut net = Network::new(4, seed, |_, _| {});
    net.set_invariant_checks(false);
    for i in 0..3 {
        net.open_channel(i, i + 1, [1_000_000_000, 0]);
    }
    let start = Instant::now();
    for _ in 0..count {
        let payment = net.send_payment(0, 3, 1_000);
        net.deliver_all();
        let done = net.take_events(0).iter().any(|e| {
            matches!(e, Event::PaymentSent { payment: p, route, .. } if *p == payment && route.len() == 3)
        });
        assert!(done, "every payment goes through three hops");
    }
    start.elapsed().as_secs_f64() / count as f64
}

#[allow(clippy::disallowed_methods)] // A benchmark measures wall time.
/// Seconds per signature and recovery of a 32-byte digest.
fn signature_round(count: usize) -> f64 {
    let key = PrivateKey::from_bytes(&B256::repeat_byte(7)).expect("a valid key");
    let start = Instant::now();
    for i in 0..count {
        let digest = alloy_primitives::keccak256((i as u64).to_le_bytes());
        let signature = key.sign_digest(&digest);
        let signer = recover_address(&digest, &signature).expect("recovers");
        assert_eq!(signer, key.address());
    }
    start.elapsed().as_secs_f64() / count as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

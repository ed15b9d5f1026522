//! `cargo bench -p hoplite-htlc`: the cost of a channel update against the raw signature limit.
//!
//! - `signature/*`: each backend's sign and recover, to choose the default.
//! - `raw_limit`: one sign + one recover with the default backend: no channel can beat this.
//! - `direct_transfer`: Alice builds and signs, the update is encoded and decoded, Bob validates
//!   (recovering the signer) and applies it.
//! - `locked_transfer_and_unlock`: a lock and its unlock, each delivered the same way.
//!
//! `python3 scripts/bench-medians.py raw_limit` prints each median and its ratio to `raw_limit`.
//!
//! Criterion measures each benchmark minutes apart, and on a shared VM the speed drifts by 10–15%
//! between them, so before criterion runs, `paired` alternates short rounds of the raw limit and
//! of each channel operation and prints the median of the per-round ratios: drift cancels out.

use alloy_primitives::{B256, U256, keccak256};
use criterion::{Criterion, criterion_group};
use hoplite_htlc::crypto::{self, Backend};
use hoplite_htlc::testing::{ChannelPair, key};
use hoplite_htlc::{Amount, BalanceChange, BalanceUpdate, BlockNumber, Lock, Secret};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BLOCK: BlockNumber = BlockNumber(1_000);

fn signatures(c: &mut Criterion) {
    let signer = key(1, 0);
    let digest = keccak256(b"hoplite bench");
    let mut group = c.benchmark_group("signature");
    for (name, backend) in [("secp256k1", Backend::Secp256k1), ("k256", Backend::K256)] {
        let signature = signer.sign_digest_with(backend, &digest);
        group.bench_function(format!("{name}/sign"), |b| {
            b.iter(|| signer.sign_digest_with(backend, black_box(&digest)))
        });
        group.bench_function(format!("{name}/recover"), |b| {
            b.iter(|| crypto::recover_address_with(backend, black_box(&digest), &signature))
        });
    }
    group.finish();

    c.bench_function("raw_limit", |b| {
        b.iter(|| {
            let signature = signer.sign_digest(black_box(&digest));
            crypto::recover_address(&digest, &signature).unwrap()
        })
    });
}

fn rich_pair() -> ChannelPair {
    let plenty = Amount::from(U256::from(1u128 << 120));
    ChannelPair::new(2, [plenty, plenty])
}

/// Alice's update reaches Bob through the wire encoding, as between two nodes.
fn send_and_deliver(pair: &mut ChannelPair, change: BalanceChange) {
    let update = pair.send(0, change, BLOCK).unwrap();
    let bytes = update.encode();
    let decoded = BalanceUpdate::decode(black_box(&bytes)).unwrap();
    pair.ends[1].handle_update(&decoded, BLOCK).unwrap();
}

fn direct_transfer(pair: &mut ChannelPair) {
    send_and_deliver(
        pair,
        BalanceChange::DirectTransfer {
            amount: Amount::from(1u64),
        },
    );
}

/// A lock and its unlock; `n` makes the secret unique.
fn locked_transfer_and_unlock(pair: &mut ChannelPair, n: u64) {
    let secret = Secret(B256::from(U256::from(n)));
    let lock = Lock {
        amount: Amount::from(1u64),
        expiration: BlockNumber(BLOCK.0 + 50),
        secret_hash: secret.hash(),
    };
    send_and_deliver(pair, BalanceChange::LockedTransfer { lock });
    send_and_deliver(pair, BalanceChange::Unlock { secret });
}

fn transfers(c: &mut Criterion) {
    let mut pair = rich_pair();
    c.bench_function("direct_transfer", |b| b.iter(|| direct_transfer(&mut pair)));
    let mut pair = rich_pair();
    let mut n = 0u64;
    c.bench_function("locked_transfer_and_unlock", |b| {
        b.iter(|| {
            n += 1;
            locked_transfer_and_unlock(&mut pair, n);
        })
    });
}

/// Runs `op` `n` times and returns the elapsed wall time.
// A benchmark is the one place that reads the clock.
#[allow(clippy::disallowed_methods)]
fn time(n: u32, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

/// Median over rounds of (channel operation time / raw limit time), measured back to back.
fn paired() {
    const ROUNDS: usize = 31;
    const PER_ROUND: u32 = 400;
    let signer = key(1, 0);
    let digest = keccak256(b"hoplite bench");
    let mut raw = || {
        let signature = signer.sign_digest(black_box(&digest));
        black_box(crypto::recover_address(&digest, &signature).unwrap());
    };
    let mut direct_pair = rich_pair();
    let mut direct = || direct_transfer(&mut direct_pair);
    let mut lock_pair = rich_pair();
    let mut n = 0u64;
    let mut lock_unlock = || {
        n += 1;
        locked_transfer_and_unlock(&mut lock_pair, n);
    };
    let (mut raw_us, mut direct_ratio, mut lock_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let r = time(PER_ROUND, &mut raw);
        let d = time(PER_ROUND, &mut direct);
        let l = time(PER_ROUND, &mut lock_unlock);
        raw_us.push(r.as_secs_f64() * 1e6 / f64::from(PER_ROUND));
        direct_ratio.push(d.as_secs_f64() / r.as_secs_f64());
        lock_ratio.push(l.as_secs_f64() / r.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("paired rounds ({ROUNDS} x {PER_ROUND} iterations each, medians):");
    println!(
        "  raw_limit (1 sign + 1 recover)          {:8.2} µs",
        median(&mut raw_us)
    );
    println!(
        "  direct_transfer / raw_limit             {:8.2}x",
        median(&mut direct_ratio)
    );
    println!(
        "  locked_transfer_and_unlock / raw_limit  {:8.2}x  (two updates)",
        median(&mut lock_ratio)
    );
}

criterion_group!(benches, signatures, transfers);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once instead,
    // and `--profile-time` is for a profiler, which wants only the benchmark it names.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--bench") && !args.iter().any(|arg| arg == "--profile-time") {
        paired();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! `cargo bench -p hoplite-htlc`: the cost of a channel update against the raw signature limit.
//!
//! - `signature/*`: each backend's sign and recover, to choose the default.
//! - `raw_limit`: one sign + one recover with the default backend: no channel can beat this.
//! - `direct_transfer`: Alice builds and signs, the update is encoded and decoded, Bob validates
//!   (recovering the signer) and applies it.
//! - `locked_transfer_and_unlock`: a lock and its unlock, each delivered the same way.
//!
//! `python3 scripts/bench-medians.py raw_limit` prints each median and its ratio to `raw_limit`.

use alloy_primitives::{B256, U256, keccak256};
use criterion::{Criterion, criterion_group, criterion_main};
use hoplite_htlc::crypto::{self, Backend};
use hoplite_htlc::testing::{ChannelPair, key};
use hoplite_htlc::{Amount, BalanceChange, BalanceUpdate, BlockNumber, Lock, Secret};
use std::hint::black_box;

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

fn deliver_encoded(pair: &mut ChannelPair, update: &BalanceUpdate) {
    let bytes = update.encode();
    let decoded = BalanceUpdate::decode(black_box(&bytes)).unwrap();
    pair.ends[1].handle_update(&decoded, BLOCK).unwrap();
}

fn transfers(c: &mut Criterion) {
    let mut pair = rich_pair();
    let one = BalanceChange::DirectTransfer {
        amount: Amount::from(1u64),
    };
    c.bench_function("direct_transfer", |b| {
        b.iter(|| {
            let update = pair.send(0, one, BLOCK).unwrap();
            deliver_encoded(&mut pair, &update);
        })
    });

    let mut pair = rich_pair();
    let mut counter = 0u64;
    c.bench_function("locked_transfer_and_unlock", |b| {
        b.iter(|| {
            counter += 1;
            let secret = Secret(B256::from(U256::from(counter)));
            let lock = Lock {
                amount: Amount::from(1u64),
                expiration: BlockNumber(BLOCK.0 + 50),
                secret_hash: secret.hash(),
            };
            let update = pair
                .send(0, BalanceChange::LockedTransfer { lock }, BLOCK)
                .unwrap();
            deliver_encoded(&mut pair, &update);
            let update = pair
                .send(0, BalanceChange::Unlock { secret }, BLOCK)
                .unwrap();
            deliver_encoded(&mut pair, &update);
        })
    });
}

criterion_group!(benches, signatures, transfers);
criterion_main!(benches);

//! Random interleavings of both sides' operations on one channel.
//!
//! After every step, on both ends: no amount is created or destroyed (deposits − withdrawals =
//! both spendables + both locked amounts), and each end's view of the partner's direction is
//! exactly the last proof the partner signed that has been delivered. When nothing is in flight
//! the two ends agree on everything.
//!
//! A failure prints the minimal failing operation list; proptest also records its seed in
//! `proptest-regressions/`, and `PROPTEST_RNG_SEED=<n>` replays a run.

use alloy_primitives::keccak256;
use hoplite_htlc::testing::{CONFIG, ChannelPair};
use hoplite_htlc::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug)]
enum Op {
    Direct {
        from: usize,
        amount: u64,
    },
    Lock {
        from: usize,
        amount: u64,
        lifetime: u64,
    },
    Unlock {
        from: usize,
        pick: usize,
    },
    Expire {
        from: usize,
        pick: usize,
    },
    Deliver {
        to: usize,
    },
    Advance {
        blocks: u64,
    },
    Deposit {
        who: usize,
        amount: u64,
    },
    Withdraw {
        who: usize,
        amount: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    prop_oneof![
        4 => (side.clone(), 1u64..400).prop_map(|(from, amount)| Op::Direct { from, amount }),
        4 => (side.clone(), 1u64..300, CONFIG.reveal_timeout + 1..=CONFIG.settle_timeout)
            .prop_map(|(from, amount, lifetime)| Op::Lock { from, amount, lifetime }),
        3 => (side.clone(), any::<usize>()).prop_map(|(from, pick)| Op::Unlock { from, pick }),
        2 => (side.clone(), any::<usize>()).prop_map(|(from, pick)| Op::Expire { from, pick }),
        8 => side.clone().prop_map(|to| Op::Deliver { to }),
        2 => (1u64..40).prop_map(|blocks| Op::Advance { blocks }),
        1 => (side.clone(), 1u64..300).prop_map(|(who, amount)| Op::Deposit { who, amount }),
        1 => (side, 1u64..300).prop_map(|(who, amount)| Op::Withdraw { who, amount }),
    ]
}

struct Model {
    pair: ChannelPair,
    block: BlockNumber,
    /// `in_flight[to]`: updates sent to `to`, in order.
    in_flight: [VecDeque<BalanceUpdate>; 2],
    /// `signed[from]`: every proof `from` signed, in order.
    signed: [Vec<SignedBalanceProof>; 2],
    secrets: BTreeMap<SecretHash, Secret>,
    next_secret: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            pair: ChannelPair::new(42, [Amount::from(1000u64), Amount::from(500u64)]),
            block: BlockNumber(100),
            in_flight: [VecDeque::new(), VecDeque::new()],
            signed: [Vec::new(), Vec::new()],
            secrets: BTreeMap::new(),
            next_secret: 0,
        }
    }

    fn quiet(&self) -> bool {
        self.in_flight.iter().all(VecDeque::is_empty)
    }

    /// `from` signs `change`; it must succeed exactly when `allowed`.
    fn send(
        &mut self,
        from: usize,
        change: BalanceChange,
        allowed: bool,
    ) -> Result<(), TestCaseError> {
        let before = self.pair.ends[from].clone();
        match self.pair.send(from, change, self.block) {
            Ok(update) => {
                prop_assert!(
                    allowed,
                    "{change:?} was signed but should have been refused"
                );
                self.signed[from].push(update.proof);
                self.in_flight[1 - from].push_back(update);
            }
            Err(error) => {
                prop_assert!(!allowed, "{change:?} refused: {error}");
                prop_assert_eq!(
                    &self.pair.ends[from],
                    &before,
                    "a refused send changed the end"
                );
            }
        }
        Ok(())
    }

    fn pending(&self, from: usize) -> Vec<Lock> {
        self.pair.ends[from]
            .participant(Side::Ours)
            .locks()
            .iter()
            .copied()
            .collect()
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Direct { from, amount } => {
                let amount = Amount::from(amount);
                let allowed = amount <= self.pair.spendable(from);
                self.send(from, BalanceChange::DirectTransfer { amount }, allowed)?;
            }
            Op::Lock {
                from,
                amount,
                lifetime,
            } => {
                self.next_secret += 1;
                let secret = Secret(keccak256(self.next_secret.to_be_bytes()));
                self.secrets.insert(secret.hash(), secret);
                let lock = Lock {
                    amount: Amount::from(amount),
                    expiration: BlockNumber(self.block.0 + lifetime),
                    secret_hash: secret.hash(),
                };
                let allowed = lock.amount <= self.pair.spendable(from);
                self.send(from, BalanceChange::LockedTransfer { lock }, allowed)?;
            }
            Op::Unlock { from, pick } => {
                let locks = self.pending(from);
                if let Some(lock) = locks.get(pick % locks.len().max(1)) {
                    let secret = self.secrets[&lock.secret_hash];
                    self.send(from, BalanceChange::Unlock { secret }, true)?;
                }
            }
            Op::Expire { from, pick } => {
                let locks = self.pending(from);
                if let Some(lock) = locks.get(pick % locks.len().max(1)) {
                    let allowed = self.block > lock.expiration;
                    let change = BalanceChange::LockExpired {
                        secret_hash: lock.secret_hash,
                    };
                    self.send(from, change, allowed)?;
                }
            }
            Op::Deliver { to } => {
                if let Some(update) = self.in_flight[to].pop_front() {
                    let result = self.pair.deliver(to, &update, self.block);
                    prop_assert_eq!(result, Ok(()), "honest in-order update refused");
                }
            }
            Op::Advance { blocks } => {
                // Both ends see the same block; in-flight locks were checked against the block
                // they were sent at, so time moves only when nothing is in flight.
                if self.quiet() {
                    self.block = BlockNumber(self.block.0 + blocks);
                }
            }
            Op::Deposit { who, amount } => {
                let total = self.pair.ends[who]
                    .participant(Side::Ours)
                    .total_deposit()
                    .checked_add(Amount::from(amount))
                    .unwrap();
                self.pair.ends[who]
                    .set_total_deposit(Side::Ours, total)
                    .unwrap();
                self.pair.ends[1 - who]
                    .set_total_deposit(Side::Partner, total)
                    .unwrap();
            }
            Op::Withdraw { who, amount } => {
                if self.quiet() {
                    let spendable = self.pair.spendable(who);
                    let total = self.pair.ends[who]
                        .participant(Side::Ours)
                        .total_withdraw()
                        .checked_add(Amount::from(amount))
                        .unwrap();
                    let own = self.pair.ends[who].set_total_withdraw(Side::Ours, total);
                    let seen = self.pair.ends[1 - who].set_total_withdraw(Side::Partner, total);
                    prop_assert_eq!(own, seen, "the ends disagree on a withdrawal");
                    prop_assert_eq!(own.is_ok(), Amount::from(amount) <= spendable);
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (index, end) in self.pair.ends.iter().enumerate() {
            let ours = end.participant(Side::Ours);
            let partner = end.participant(Side::Partner);
            // Deposits first, then withdrawals: one side may withdraw more than it deposited
            // (what it was paid), so subtracting side by side could dip below zero.
            let available = ours
                .total_deposit()
                .checked_add(partner.total_deposit())
                .and_then(|sum| sum.checked_sub(ours.total_withdraw()))
                .and_then(|sum| sum.checked_sub(partner.total_withdraw()));
            let held = [Side::Ours, Side::Partner]
                .iter()
                .try_fold(Amount::ZERO, |sum, &side| {
                    sum.checked_add(end.spendable(side))?
                        .checked_add(end.participant(side).locks().total())
                });
            prop_assert!(
                available.is_some() && available == held,
                "end {index}: {available:?} deposited, {held:?} held"
            );

            // The partner's direction, as this end sees it, is what the partner last signed and
            // we received.
            let from = 1 - index;
            let delivered = self.signed[from].len() - self.in_flight[index].len();
            let expected = delivered.checked_sub(1).map(|i| &self.signed[from][i]);
            prop_assert_eq!(partner.latest_proof(), expected);
            if let Some(signed) = expected {
                let proof = &signed.proof;
                prop_assert_eq!(partner.nonce(), proof.nonce);
                prop_assert_eq!(partner.transferred_amount(), proof.transferred_amount);
                prop_assert_eq!(partner.locks().total(), proof.locked_amount);
                prop_assert_eq!(partner.locks().root(), proof.locks_root);
            }
        }
        if self.quiet() {
            let [alice, bob] = &self.pair.ends;
            prop_assert_eq!(
                alice.participant(Side::Ours),
                bob.participant(Side::Partner)
            );
            prop_assert_eq!(
                alice.participant(Side::Partner),
                bob.participant(Side::Ours)
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_operations_conserve_and_agree(ops in prop::collection::vec(op(), 1..150)) {
        let mut model = Model::new();
        for op in &ops {
            model.step(op)?;
        }
        // Drain: everything in flight arrives and the ends agree.
        while !model.quiet() {
            for to in 0..2 {
                model.step(&Op::Deliver { to })?;
            }
        }
    }
}

//! Random interleavings across a 3-node line 0 - 1 - 2: invoice and spontaneous payments both
//! ways and across, direct transfers, messages delivered out of order, lost, resent, blocks
//! mined, nodes restarted, channels closed cooperatively or unilaterally.
//! After every delivery the testkit checks conservation; at the end, with everything delivered,
//! expired, settled and unlocked, every payment is all-or-nothing and every node holds exactly
//! what the completed payments say it should (so no honest node lost anything).
//!
//! A failure prints the operations that reproduce it (proptest shrinks them) and every node's
//! events, and records the seed in `interleavings.regressions` beside this file.

use hoplite_htlc::{Amount, ChannelId, Side};
use hoplite_node::testkit::create_network;
use hoplite_node::{Close, Event};
use proptest::prelude::*;
use std::time::Duration;

const DEPOSIT: u64 = 50_000;

#[derive(Clone, Debug)]
enum Op {
    /// An invoice payment from one node to another (through 1 between 0 and 2).
    Pay { from: usize, to: usize, amount: u64 },
    /// A spontaneous payment (the payer's secret, encrypted to the payee).
    Keysend { from: usize, to: usize, amount: u64 },
    /// A direct transfer to a neighbour.
    Direct {
        from: usize,
        right: bool,
        amount: u64,
    },
    /// Deliver the message at this position in flight (out of order).
    Deliver(usize),
    /// Lose the message at this position.
    Drop(usize),
    /// Time passes (resends, payment deadlines).
    Advance(u64),
    /// Blocks pass (lock expirations, on-chain deadlines).
    Mine(u64),
    /// A node crashes and restarts from what it persisted.
    Restart(usize),
    /// A node closes its channel with a neighbour, cooperatively or not.
    Close {
        from: usize,
        right: bool,
        cooperative: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, 1..20_000u64)
            .prop_filter("payee differs", |(f, t, _)| f != t)
            .prop_map(|(from, to, amount)| Op::Pay { from, to, amount }),
        2 => (0..3usize, 0..3usize, 1..20_000u64)
            .prop_filter("payee differs", |(f, t, _)| f != t)
            .prop_map(|(from, to, amount)| Op::Keysend { from, to, amount }),
        2 => (0..3usize, any::<bool>(), 1..5_000u64).prop_map(|(from, right, amount)| Op::Direct {
            from,
            right,
            amount
        }),
        12 => any::<prop::sample::Index>().prop_map(|i| Op::Deliver(i.index(1 << 16))),
        1 => any::<prop::sample::Index>().prop_map(|i| Op::Drop(i.index(1 << 16))),
        1 => (1..20u64).prop_map(Op::Advance),
        1 => (1..8u64).prop_map(Op::Mine),
        1 => (0..3usize).prop_map(Op::Restart),
        1 => (0..3usize, any::<bool>(), prop::bool::weighted(0.8)).prop_map(
            |(from, right, cooperative)| Op::Close { from, right, cooperative }
        ),
    ]
}

/// The channel of node `from` to its right (or left) neighbour on the line, if it has one.
fn neighbour_channel(channels: &[ChannelId; 2], from: usize, right: bool) -> Option<ChannelId> {
    let to = if right {
        from + 1
    } else {
        from.checked_sub(1)?
    };
    (to <= 2).then(|| channels[from.min(to)])
}

fn run(ops: &[Op]) {
    let mut net = create_network(3);
    let channels = [
        net.open_channel(0, 1, [DEPOSIT, DEPOSIT]),
        net.open_channel(1, 2, [DEPOSIT, DEPOSIT]),
    ];
    let start: Vec<Amount> = (0..3).map(|i| net.tokens(i)).collect();
    let mut payments = Vec::new();
    for op in ops {
        match *op {
            Op::Pay { from, to, amount } => {
                let invoice = net.invoice(to, amount);
                let now = net.now();
                if let Ok(id) = net.nodes[from].pay(now, &invoice) {
                    payments.push((id, from, to, amount));
                }
                net.settle();
            }
            Op::Keysend { from, to, amount } => {
                let now = net.now();
                let payee = net.address(to);
                if let Ok(id) = net.nodes[from].send_spontaneous(now, payee, Amount::from(amount)) {
                    payments.push((id, from, to, amount));
                }
                net.settle();
            }
            Op::Direct {
                from,
                right,
                amount,
            } => {
                let Some(channel) = neighbour_channel(&channels, from, right) else {
                    continue;
                };
                let now = net.now();
                // Refused when it can't pay: that changes nothing.
                let _ = net.nodes[from].send_direct(now, channel, Amount::from(amount));
                net.settle();
            }
            Op::Deliver(i) => {
                if !net.in_flight.is_empty() {
                    let message = net.in_flight.remove(i % net.in_flight.len()).unwrap();
                    net.in_flight.push_front(message);
                    net.deliver_next();
                }
            }
            Op::Drop(i) => {
                if !net.in_flight.is_empty() {
                    let len = net.in_flight.len();
                    net.in_flight.remove(i % len);
                }
            }
            Op::Advance(secs) => net.advance(Duration::from_secs(secs)),
            Op::Mine(blocks) => net.mine(blocks),
            Op::Restart(i) => net.restart(i),
            Op::Close {
                from,
                right,
                cooperative,
            } => {
                let Some(channel) = neighbour_channel(&channels, from, right) else {
                    continue;
                };
                let now = net.now();
                let how = if cooperative {
                    Close::Cooperative
                } else {
                    Close::Unilateral
                };
                // Refused when closed already, or with locks pending: that changes nothing.
                let _ = net.nodes[from].close_channel(now, channel, how);
                net.settle();
            }
        }
    }
    // Finish: resend and deliver everything, let payments time out, locks expire, windows
    // pass, channels settle and pots unlock.
    for _ in 0..4 {
        net.deliver_all();
        net.advance(Duration::from_secs(30));
    }
    net.mine_and_deliver(700);
    net.deliver_all();

    // Every payment all-or-nothing; what each node should hold follows from the completed ones.
    // Each node starts with its deposits; node 1 has two channels.
    let deposit = i128::from(DEPOSIT);
    let mut expected: Vec<i128> = vec![deposit, 2 * deposit, deposit];
    for &(id, from, to, amount) in &payments {
        let sent = net
            .events(from)
            .iter()
            .any(|e| matches!(e, Event::PaymentSent { payment, .. } if *payment == id));
        let failed = net
            .events(from)
            .iter()
            .any(|e| matches!(e, Event::PaymentFailed { payment, .. } if *payment == id));
        let received = net
            .events(to)
            .iter()
            .any(|e| matches!(e, Event::PaymentReceived { payment, .. } if *payment == id));
        if sent != received || sent == failed {
            for i in 0..3 {
                eprintln!("node {i}'s events: {:?}", net.events(i));
            }
        }
        assert_eq!(
            sent, received,
            "payment {id:?} {from}->{to} sent iff received"
        );
        assert_ne!(
            sent, failed,
            "payment {id:?} {from}->{to} ends exactly one way"
        );
        if sent {
            let amount = i128::from(amount);
            let fee = if from.abs_diff(to) == 2 {
                1 + amount / 1000
            } else {
                0
            };
            expected[from] -= amount + fee;
            expected[to] += amount;
            expected[1] += fee;
        }
    }
    // A direct transfer counts once its receiver applied it (one the channel closed on
    // before it arrived never happened: the sender's state on-chain is the one before it).
    for to in 0..3 {
        for event in net.events(to) {
            if let Event::DirectTransferReceived { channel, amount } = event {
                let from = if *channel == channels[0] {
                    1 - to
                } else {
                    3 - to
                };
                let amount = i128::try_from(amount.to_u256()).expect("small amounts");
                expected[to] += amount;
                expected[from] -= amount;
            }
        }
    }
    for i in 0..3 {
        let mut held = net.tokens(i).to_u256() - start[i].to_u256();
        for node in [&net.nodes[i]] {
            for channel in node.channels() {
                let open = node
                    .onchain_channel(channel.id())
                    .is_some_and(|c| c.phase == hoplite_chain::events::Phase::Opened);
                if open {
                    assert!(
                        channel.participant(Side::Ours).locks().is_empty(),
                        "node {i}: a lock left pending"
                    );
                    assert!(
                        channel.participant(Side::Partner).locks().is_empty(),
                        "node {i}: a lock left pending"
                    );
                    held += channel.spendable(Side::Ours).to_u256();
                }
            }
        }
        let held = i128::try_from(held).expect("small amounts");
        if held != expected[i] {
            for j in 0..3 {
                eprintln!("node {j}'s events: {:?}", net.events(j));
            }
        }
        assert_eq!(
            held, expected[i],
            "node {i} holds what the completed payments say"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_payment_is_all_or_nothing(ops in prop::collection::vec(op(), 1..150)) {
        run(&ops);
    }
}

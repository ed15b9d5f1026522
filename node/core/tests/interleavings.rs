//! Random interleavings across a 3-node line 0 - 1 - 2 on a chain with a mempool (whose view
//! may lag a block behind, and whose requests may fail at random): invoice and
//! spontaneous payments both ways and across, direct transfers, messages delivered out of
//! order, lost, resent, blocks mined, nodes restarted, channels closed cooperatively or
//! unilaterally, chain requests that fail; and hostile moves: a node closing behind its own
//! node's back with a stale proof of its partner's (it is dishonest from then on), secrets
//! leaked on-chain (so locks expire after an on-chain reveal; whoever leaked is dishonest),
//! floods of close and secret requests, a partner whose acknowledgements are lost.
//! After every delivery the testkit checks conservation, and after every operation the test
//! checks every outbox a peer can grow is under its bound. At the end, with everything
//! delivered, expired, settled and unlocked, every honest node holds at least what the
//! completed payments give it; with no dishonest node, every payment is all-or-nothing and
//! every node holds exactly that.
//!
//! A failure prints the operations that reproduce it (proptest shrinks them) and every node's
//! events, and records the seed in `interleavings.regressions` beside this file.

use hoplite_chain::evm::complete;
use hoplite_htlc::{Amount, ChannelId, Secret, Side, SignedBalanceProof};
use hoplite_node::testkit::{Network, START_TOKENS};
use hoplite_node::wire::Message;
use hoplite_node::{Close, Event};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const DEPOSIT: u64 = 50_000;
/// Updates that may wait for a partner's acknowledgement (small, so the bound is reached).
const MAX_UNACKED: usize = 24;

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
    /// A node's next chain requests fail.
    ChainFails { node: usize, times: usize },
    /// A node closes behind its own node's back with a proof of its partner's seen earlier
    /// (perhaps stale): it is dishonest from now on.
    StaleClose { from: usize, right: bool, pick: u64 },
    /// A secret seen travelling is registered on-chain by the node that sent it (a payee that
    /// registers its secret after its own lock expired lets the hops before it claim from the
    /// payer), which counts as dishonest from then on.
    Register(u64),
    /// A node sends its neighbour a burst of close requests with made-up rounds.
    FloodCloseRequests {
        from: usize,
        right: bool,
        round: u64,
    },
    /// A secret request seen travelling is sent again and again.
    FloodSecretRequests(u64),
    /// The acknowledgements a node has in flight are lost.
    DropAcks(usize),
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
        1 => (0..3usize, 1..3usize).prop_map(|(node, times)| Op::ChainFails { node, times }),
        1 => (0..3usize, any::<bool>(), any::<u64>())
            .prop_map(|(from, right, pick)| Op::StaleClose { from, right, pick }),
        1 => any::<u64>().prop_map(Op::Register),
        1 => (0..3usize, any::<bool>(), any::<u64>())
            .prop_map(|(from, right, round)| Op::FloodCloseRequests { from, right, round }),
        1 => any::<u64>().prop_map(Op::FloodSecretRequests),
        1 => (0..3usize).prop_map(Op::DropAcks),
    ]
}

/// The element of `items` that `pick` picks (proptest's `Index` rule, as a plain number so a
/// failing case prints as code).
fn pick<T>(items: &[T], pick: u64) -> &T {
    &items[((items.len() as u128 * u128::from(pick)) >> 64) as usize]
}

/// What the test saw travel, for the hostile moves.
#[derive(Default)]
struct Seen {
    /// Every proof by channel and signer.
    proofs: BTreeMap<(ChannelId, usize), Vec<SignedBalanceProof>>,
    /// Secrets with the node that sent them.
    secrets: Vec<(usize, Secret)>,
    /// Secret requests with their sender and receiver.
    requests: Vec<(usize, usize, Message)>,
}

impl Seen {
    fn note(&mut self, from: usize, to: usize, message: Message) {
        match message {
            Message::Update { update, .. } => self
                .proofs
                .entry((update.proof.proof.channel_id, from))
                .or_default()
                .push(update.proof),
            Message::RevealSecret { secret } => self.secrets.push((from, secret)),
            request @ Message::SecretRequest { .. } => self.requests.push((from, to, request)),
            _ => {}
        }
    }
}

/// Every outbox a peer can grow stays under its bound: `MAX_UNACKED` updates, and otherwise
/// answers for a channel and requests, reveals and failures for pending locks.
fn check_outboxes(net: &Network) {
    for (i, node) in net.nodes.iter().enumerate() {
        let locks: usize = node
            .channels()
            .map(|c| {
                c.participant(Side::Ours).locks().len() + c.participant(Side::Partner).locks().len()
            })
            .sum();
        let bound = MAX_UNACKED + 8 + 4 * locks;
        for j in 0..net.nodes.len() {
            let unacked = node.unacknowledged(net.address(j));
            assert!(
                unacked <= bound,
                "node {i} has {unacked} messages waiting for node {j} (bound {bound})"
            );
        }
    }
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

/// How hard the chain is: how many blocks the nodes' view lags, and how many requests per
/// thousand fail as not sent (seeded).
#[derive(Clone, Copy, Debug)]
struct Chain {
    lag: u64,
    flaky: u64,
    seed: u64,
}

fn chain() -> impl Strategy<Value = Chain> {
    (0..=1u64, prop_oneof![Just(0u64), 1..60u64], any::<u64>())
        .prop_map(|(lag, flaky, seed)| Chain { lag, flaky, seed })
}

fn run(chain: Chain, ops: &[Op]) {
    let mut net = Network::new(3, 1, |_, config| config.max_unacked = MAX_UNACKED);
    let channels = [
        net.open_channel(0, 1, [DEPOSIT, DEPOSIT]),
        net.open_channel(1, 2, [DEPOSIT, DEPOSIT]),
    ];
    net.use_mempool();
    net.lag_chain(chain.lag);
    if chain.flaky > 0 {
        net.fail_chain_requests_at_random(chain.flaky, chain.seed);
    }
    let start: Vec<Amount> = (0..3).map(|i| net.tokens(i)).collect();
    let mut payments = Vec::new();
    let mut seen = Seen::default();
    let mut dishonest = BTreeSet::new();
    let mut directs = Vec::new();
    for op in ops {
        match op.clone() {
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
                if net.nodes[from]
                    .send_direct(now, channel, Amount::from(amount))
                    .is_ok()
                {
                    let to = if right { from + 1 } else { from - 1 };
                    directs.push((from, to, i128::from(amount)));
                }
                net.settle();
            }
            Op::Deliver(i) => {
                if !net.in_flight.is_empty() {
                    let message = net.in_flight.remove(i % net.in_flight.len()).unwrap();
                    if let Some(m) = message.message() {
                        seen.note(message.from, message.to, m);
                    }
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
            Op::ChainFails { node, times } => net.fail_chain_requests(node, times, |_| true),
            Op::StaleClose { from, right, pick } => {
                let Some(channel) = neighbour_channel(&channels, from, right) else {
                    continue;
                };
                let partner = if right { from + 1 } else { from - 1 };
                let Some(proofs) = seen.proofs.get(&(channel, partner)) else {
                    continue;
                };
                let proof = *self::pick(proofs, pick);
                if complete(net.chain(from).close_channel(channel, Some(&proof))).is_ok() {
                    dishonest.insert(from);
                    net.sync_chain();
                }
            }
            Op::Register(pick) => {
                if !seen.secrets.is_empty() {
                    let (from, secret) = *self::pick(&seen.secrets, pick);
                    // A failure (registered already) changes nothing.
                    if complete(net.chain(from).register_secret(&secret)).is_ok() {
                        dishonest.insert(from);
                    }
                    net.sync_chain();
                }
            }
            Op::FloodCloseRequests { from, right, round } => {
                let Some(channel) = neighbour_channel(&channels, from, right) else {
                    continue;
                };
                let to = if right { from + 1 } else { from - 1 };
                for k in 0..20 {
                    let message = Message::CloseRequest {
                        channel,
                        round: round.wrapping_add(k),
                        balances: [Amount::from(1u64), Amount::from(1u64)],
                    };
                    net.inject_message(from, to, message);
                }
            }
            Op::FloodSecretRequests(pick) => {
                if !seen.requests.is_empty() {
                    let (from, to, request) = self::pick(&seen.requests, pick).clone();
                    for _ in 0..20 {
                        net.inject_message(from, to, request.clone());
                    }
                }
            }
            Op::DropAcks(node) => net.in_flight.retain(|m| {
                m.from != node || !matches!(m.envelope(), hoplite_node::wire::Envelope::Ack(_))
            }),
        }
        check_outboxes(&net);
    }
    // Finish: resend and deliver everything, let payments time out, locks expire, windows
    // pass, channels settle and pots unlock; then resend what a partner refused while it was
    // closing (a cooperative proposal that went unanswered is dropped after `close_timeout`).
    let resend = |net: &mut Network| {
        for _ in 0..4 {
            net.deliver_all();
            net.advance(Duration::from_secs(30));
        }
        net.deliver_all();
    };
    resend(&mut net);
    net.mine_and_deliver(700);
    resend(&mut net);

    // What each node should hold follows from the completed payments: the payer pays when it
    // learns the payment went through, the payee gains when it is paid, and a mediator keeps
    // the difference. Each node starts with its deposits; node 1 has two channels. With no
    // dishonest node, every payment is all-or-nothing.
    let deposit = i128::from(DEPOSIT);
    let mut expected: Vec<i128> = vec![deposit, 2 * deposit, deposit];
    let dump = |net: &Network| {
        for i in 0..3 {
            eprintln!("node {i}'s events: {:?}", net.events(i));
        }
    };
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
        if dishonest.is_empty() && (sent != received || sent == failed) {
            dump(&net);
            panic!(
                "payment {id:?} {from}->{to}: sent {sent}, received {received}, failed {failed}"
            );
        }
        let amount = i128::from(amount);
        let fee = if from.abs_diff(to) == 2 {
            1 + amount / 1000
        } else {
            0
        };
        if sent {
            expected[from] -= amount + fee;
        }
        if received {
            expected[to] += amount;
        }
        if from.abs_diff(to) == 2 && !dishonest.contains(&from) && !dishonest.contains(&to) {
            // The mediator: paid upstream what the payer paid, paid downstream what the payee
            // got. With a dishonest end, whose events need not tell what the chain paid, the
            // mediator is only held to losing nothing (its fee may come or not).
            expected[1] += i128::from(sent) * (amount + fee) - i128::from(received) * amount;
        }
    }
    // A direct transfer counts once its honest receiver applied it (one the channel closed on
    // before it arrived never happened: the sender's state on-chain is the one before it). A
    // dishonest receiver may close with a proof it never applied: its sender counts every
    // transfer it signed as paid.
    for &(from, to, amount) in &directs {
        if dishonest.contains(&to) {
            expected[from] -= amount;
        }
    }
    for to in (0..3).filter(|to| !dishonest.contains(to)) {
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
        let mut held = i128::try_from(net.tokens(i).to_u256()).expect("small amounts")
            - i128::try_from(start[i].to_u256()).expect("small amounts");
        let node = &net.nodes[i];
        for channel in node.channels() {
            let open = node
                .onchain_channel(channel.id())
                .is_some_and(|c| c.phase == hoplite_chain::events::Phase::Opened);
            if open {
                assert!(
                    channel.participant(Side::Ours).locks().is_empty()
                        && channel.participant(Side::Partner).locks().is_empty(),
                    "node {i}: a lock left pending"
                );
                held +=
                    i128::try_from(channel.spendable(Side::Ours).to_u256()).expect("small amounts");
            }
        }
        let honest = !dishonest.contains(&i);
        let wrong = if dishonest.is_empty() {
            held != expected[i]
        } else {
            honest && held < expected[i]
        };
        if wrong {
            dump(&net);
            panic!(
                "node {i} (dishonest: {dishonest:?}) holds {held}, the completed payments give it {}",
                expected[i]
            );
        }
    }
    // Nothing is left in the contract but what no one can claim any more.
    let _ = START_TOKENS;
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=2000 for a long local run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_payment_is_all_or_nothing(
        chain in chain(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(chain, &ops);
    }
}

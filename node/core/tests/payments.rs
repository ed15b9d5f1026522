//! Payments end to end on an in-process network with the real contract and real signatures.
//! Every delivery is followed by the testkit's conservation check; each test also asserts the
//! balances at both ends of every channel it uses.

use hoplite_htlc::{Amount, ChannelId};
use hoplite_node::testkit::{Network, create_network};
use hoplite_node::wire::{FailureReason, Message};
use hoplite_node::{Close, Event, PaymentFailure};
use hoplite_routing::Router;

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

/// Both ends' spendable balances of `channel` between nodes `a` and `b`.
fn balances(net: &Network, channel: ChannelId, a: usize, b: usize) -> [Amount; 2] {
    [net.spendable(a, channel), net.spendable(b, channel)]
}

/// A line 0 - 1 - ... - (n-1) with `deposit` on both sides of every channel.
fn line(n: usize, deposit: u64) -> (Network, Vec<ChannelId>) {
    let mut net = create_network(n);
    let channels = (0..n - 1)
        .map(|i| net.open_channel(i, i + 1, [deposit, deposit]))
        .collect();
    (net, channels)
}

/// The default policy's fee to forward `amount`: base 1 + 1000 millionths.
fn fee(amount: u64) -> u64 {
    1 + amount / 1000
}

#[test]
fn direct_payments_both_ways_at_once() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 500]);
    assert_eq!(balances(&net, channel, 0, 1), [amount(1_000), amount(500)]);

    // Both sides send before either message arrives: full duplex, no conflict.
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(300)).unwrap();
    net.nodes[1].send_direct(now, channel, amount(200)).unwrap();
    net.settle();
    assert_eq!(net.in_flight.len(), 2);
    net.deliver_all();
    assert_eq!(balances(&net, channel, 0, 1), [amount(900), amount(600)]);

    // And invoice payments both ways through the same channel, interleaved.
    let p0 = net.send_payment(0, 1, 100);
    let p1 = net.send_payment(1, 0, 250);
    net.deliver_all();
    assert_eq!(net.claim_payment(&[0, 1], p0), Amount::ZERO);
    assert_eq!(net.claim_payment(&[1, 0], p1), Amount::ZERO);
    assert_eq!(balances(&net, channel, 0, 1), [amount(1_050), amount(450)]);
}

#[test]
fn two_hop_payment_pays_the_mediator_its_fee() {
    let (mut net, ch) = line(3, 10_000);
    let paid = net.route_payment(&[0, 1, 2], 1_000);
    assert_eq!(paid, amount(fee(1_000)));
    let sent = 1_000 + fee(1_000);
    assert_eq!(
        balances(&net, ch[0], 0, 1),
        [amount(10_000 - sent), amount(10_000 + sent)]
    );
    assert_eq!(balances(&net, ch[1], 1, 2), [amount(9_000), amount(11_000)]);
    assert!(net.events(1).iter().any(|e| matches!(
        e,
        Event::Forwarded { fee: f, .. } if *f == amount(fee(1_000))
    )));
    // Nothing stays locked anywhere.
    for node in &net.nodes {
        for channel in node.channels() {
            assert!(
                channel
                    .participant(hoplite_htlc::Side::Ours)
                    .locks()
                    .is_empty()
            );
        }
    }
}

#[test]
fn five_hop_payment() {
    let (mut net, ch) = line(6, 100_000);
    let paid = net.route_payment(&[0, 1, 2, 3, 4, 5], 10_000);
    // Each of the four mediators charges on what it forwards, from the payee back.
    let mut forwarded = 10_000;
    let mut amounts = vec![forwarded];
    for _ in 0..4 {
        forwarded += fee(forwarded);
        amounts.push(forwarded);
    }
    amounts.reverse();
    assert_eq!(paid, amount(forwarded - 10_000));
    for (hop, lock) in amounts.iter().enumerate() {
        assert_eq!(
            balances(&net, ch[hop], hop, hop + 1),
            [amount(100_000 - lock), amount(100_000 + lock)],
            "channel {hop}"
        );
    }
}

#[test]
fn many_concurrent_payments_through_one_mediator_both_ways() {
    // 0 and 2 pay each other through 1, twenty payments each way, all in flight at once.
    let (mut net, ch) = line(3, 1_000_000);
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for k in 0..20u64 {
        forward.push(net.send_payment(0, 2, 1_000 + k));
        backward.push(net.send_payment(2, 0, 2_000 + k));
    }
    net.deliver_all();
    for id in forward {
        net.claim_payment(&[0, 1, 2], id);
    }
    for id in backward {
        net.claim_payment(&[2, 1, 0], id);
    }
    let there: u64 = (0..20).map(|k| 1_000 + k).sum();
    let back: u64 = (0..20).map(|k| 2_000 + k).sum();
    let there_fees: u64 = (0..20).map(|k| fee(1_000 + k)).sum();
    let back_fees: u64 = (0..20).map(|k| fee(2_000 + k)).sum();
    // Channel 0-1: 0 sent there + fees, received back.
    assert_eq!(
        balances(&net, ch[0], 0, 1),
        [
            amount(1_000_000 - there - there_fees + back),
            amount(1_000_000 + there + there_fees - back)
        ]
    );
    assert_eq!(
        balances(&net, ch[1], 1, 2),
        [
            amount(1_000_000 - there + back + back_fees),
            amount(1_000_000 + there - back - back_fees)
        ]
    );
}

#[test]
fn failure_travels_back_and_the_payer_retries_another_route() {
    // 0 reaches 3 through 1 (cheaper: 1 charges less) or through 2. Channel 1-3 is funded only
    // on 3's side, so 1 can't forward: the failure comes back and 0 pays through 2.
    // Node 2 charges more, so the router tries 1 first.
    let mut net = Network::new(4, 1, |i, config| {
        if i == 2 {
            config.policy.base_fee = 10;
        }
    });
    let c01 = net.open_channel(0, 1, [100_000, 0]);
    let c13 = net.open_channel(1, 3, [1, 100_000]);
    let c02 = net.open_channel(0, 2, [100_000, 0]);
    let c23 = net.open_channel(2, 3, [100_000, 0]);
    let payment = net.send_payment(0, 3, 5_000);
    net.deliver_all();
    let fee_paid = net.claim_payment(&[0, 2, 3], payment);
    assert_eq!(fee_paid, amount(fee(5_000) + 9));
    let failures: Vec<_> = net
        .events(0)
        .iter()
        .filter(|e| matches!(e, Event::PaymentFailed { .. }))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    // The failed attempt's lock on 0-1 waits for its expiration, then returns.
    assert!(
        net.nodes[0]
            .channel(c01)
            .unwrap()
            .participant(hoplite_htlc::Side::Ours)
            .locks()
            .len()
            == 1
    );
    net.mine(600);
    net.deliver_all();
    assert_eq!(balances(&net, c01, 0, 1), [amount(100_000), amount(0)]);
    assert_eq!(balances(&net, c13, 1, 3), [amount(1), amount(100_000)]);
    let sent = 5_000 + fee(5_000) + 9;
    assert_eq!(
        balances(&net, c02, 0, 2),
        [amount(100_000 - sent), amount(sent)]
    );
    assert_eq!(balances(&net, c23, 2, 3), [amount(95_000), amount(5_000)]);
}

/// 0 reaches 3 through 1 (cheaper) or through 2, with both routes funded; `block` makes the
/// cheaper first hop unusable. The route 0 would search now starts through 2 (the exclusion
/// itself: a payment would also get there by trying 1 and being refused), and the payment goes
/// through 2. (In a test build the payer also checks its lists of closing channels and
/// backlogged partners, made once per search, against asking channel by channel.)
fn pays_around(block: impl FnOnce(&mut Network, ChannelId)) {
    let mut net = Network::new(4, 1, |i, config| {
        config.max_unacked = 2;
        if i == 2 {
            config.policy.base_fee = 10;
        }
    });
    let c01 = net.open_channel(0, 1, [100_000, 0]);
    net.open_channel(1, 3, [100_000, 0]);
    let c02 = net.open_channel(0, 2, [100_000, 0]);
    net.open_channel(2, 3, [100_000, 0]);
    let first_hop = |net: &mut Network| {
        let (now, payee) = (net.now(), net.address(3));
        let found = net.nodes[0]
            .route_query(now, payee, amount(5_000))
            .expect("the amount fits")
            .search(&mut Router::default());
        found.route().expect("a route").hops[0].direction.channel
    };
    assert_eq!(first_hop(&mut net), c01, "the cheaper route first");
    block(&mut net, c01);
    assert_eq!(first_hop(&mut net), c02);
    let payment = net.send_payment(0, 3, 5_000);
    net.deliver_all();
    assert_eq!(
        net.claim_payment(&[0, 2, 3], payment),
        amount(fee(5_000) + 9)
    );
}

#[test]
fn a_payment_does_not_start_on_a_channel_whose_partner_is_backlogged() {
    pays_around(|net, c01| {
        let now = net.now();
        for _ in 0..2 {
            net.nodes[0].send_direct(now, c01, amount(1)).unwrap();
            net.settle();
        }
        // Neither is acknowledged (they are lost): 1 holds the most updates 0 may owe it.
        net.in_flight.clear();
    });
}

/// (A closing channel's policy is also announced disabled, which keeps the router off it by
/// itself: here the exclusion is checked through the lists' test-build check alone.)
#[test]
fn a_payment_does_not_start_on_a_closing_channel() {
    for close in [Close::Cooperative, Close::Unilateral] {
        pays_around(|net, c01| {
            let now = net.now();
            net.nodes[0].close_channel(now, c01, close).unwrap();
            net.settle();
            // The proposal is lost, the close not mined yet: the channel is closing on 0's
            // side alone.
            net.in_flight.clear();
        });
    }
}

#[test]
fn payee_that_never_reveals_leaves_every_balance_where_it_was() {
    let (mut net, ch) = line(4, 10_000);
    let payment = net.send_payment(0, 3, 1_000);
    // Deliver everything except the payee's secret request: nobody ever learns the secret.
    let dropped =
        net.deliver_all_dropping(|m| matches!(m.message(), Some(Message::SecretRequest { .. })));
    assert_eq!(dropped, 1);
    for (hop, channel) in ch.iter().enumerate() {
        let locked = net.nodes[hop].channel(*channel).unwrap();
        assert_eq!(
            locked.participant(hoplite_htlc::Side::Ours).locks().len(),
            1
        );
    }
    // Past the payment's deadline the payer gives up (it never revealed, so it can).
    net.advance(std::time::Duration::from_secs(120));
    net.deliver_all();
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::PaymentFailed { payment: p, reason: PaymentFailure::Timeout, .. } if *p == payment
    )));
    // Locks expire hop by hop, payee side first (the lowest expiration).
    net.mine(600);
    net.deliver_all();
    for (hop, channel) in ch.iter().enumerate() {
        assert_eq!(
            balances(&net, *channel, hop, hop + 1),
            [amount(10_000), amount(10_000)],
            "channel {hop}"
        );
    }
}

#[test]
fn mediator_refuses_a_fee_below_its_policy() {
    // Node 1 raises its fee; the announcement is rate-limited away (it announced less than a
    // minute ago), so 0 pays by the old policy, 1 refuses, and 0 has no other route.
    let (mut net, ch) = line(3, 10_000);
    let mut policy = net.nodes[1].config().policy;
    policy.base_fee = 1_000;
    let now = net.now();
    net.nodes[1].set_policy(now, policy).unwrap();
    net.settle();
    let payment = net.send_payment(0, 2, 500);
    net.deliver_all();
    let failed: Vec<_> = net
        .events(0)
        .iter()
        .filter_map(|e| match e {
            Event::PaymentFailed {
                payment: p,
                reason,
                last_failure,
                ..
            } if *p == payment => Some((reason.clone(), *last_failure)),
            _ => None,
        })
        .collect();
    let [(PaymentFailure::NoRoute(_), Some((at, FailureReason::FeeInsufficient)))] = failed[..]
    else {
        panic!("{failed:?}");
    };
    assert_eq!(at.node, net.address(1));
    assert_eq!(at.channel, Some(ch[1]));
    // Once the lock expires, nothing moved.
    net.mine(600);
    net.deliver_all();
    assert_eq!(
        balances(&net, ch[0], 0, 1),
        [amount(10_000), amount(10_000)]
    );
    assert_eq!(
        balances(&net, ch[1], 1, 2),
        [amount(10_000), amount(10_000)]
    );
}

#[test]
fn spontaneous_payment_carries_its_secret_to_the_payee_only() {
    let (mut net, ch) = line(3, 10_000);
    let now = net.now();
    let payee = net.address(2);
    let payment = net.nodes[0]
        .send_spontaneous(now, payee, amount(1_000))
        .unwrap();
    net.settle();
    // The mediator sees the encrypted secret and can't open it; the payee can.
    let Some(Message::Update {
        onward: Some(onward),
        ..
    }) = net.in_flight[0].message()
    else {
        panic!("a lock with routing data");
    };
    let keysend = onward.keysend.expect("a spontaneous payment's secret");
    let (mediator, payee_key) = (
        hoplite_htlc::testing::key(1, 1),
        hoplite_htlc::testing::key(1, 2),
    );
    let secret = keysend.open(&payee_key).unwrap();
    assert_ne!(keysend.open(&mediator), Some(secret));

    let paid = net.claim_payment(&[0, 1, 2], payment);
    assert_eq!(paid, amount(fee(1_000)));
    assert!(
        net.events(2)
            .iter()
            .all(|e| !matches!(e, Event::PeerMessageRejected { .. }))
    );
    let sent = 1_000 + fee(1_000);
    assert_eq!(
        balances(&net, ch[0], 0, 1),
        [amount(10_000 - sent), amount(10_000 + sent)]
    );
    assert_eq!(balances(&net, ch[1], 1, 2), [amount(9_000), amount(11_000)]);

    // Nobody announced this node: there is no key to encrypt to.
    let stranger = alloy_primitives::Address::repeat_byte(9);
    assert_eq!(
        net.nodes[0].send_spontaneous(now, stranger, amount(1)),
        Err(hoplite_node::CommandError::UnknownPayee(stranger))
    );
}

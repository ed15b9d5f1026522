//! Crashes mid-payment: a node restored from what it persisted finishes the payment, or the
//! payment fails cleanly and every lock returns. Storage may lag (records pending when the
//! node crashes are lost), which is what persist-before-send is for.

use hoplite_htlc::{Amount, ChannelId, Side};
use hoplite_node::Event;
use hoplite_node::testkit::{Network, create_network};
use std::time::Duration;

fn line() -> (Network, [ChannelId; 2]) {
    let mut net = create_network(3);
    let a = net.open_channel(0, 1, [10_000, 10_000]);
    let b = net.open_channel(1, 2, [10_000, 10_000]);
    (net, [a, b])
}

/// Pays 1,000 from 0 to 2 through 1, crashing `victim` after `steps` deliveries (its storage
/// stalled first when `lagging`), and drives everything to the end. Returns whether the payment
/// went through.
fn crash_and_finish(victim: usize, steps: usize, lagging: bool) -> bool {
    let (mut net, [a, b]) = line();
    let payment = net.send_payment(0, 2, 1_000);
    for _ in 0..steps {
        if !net.deliver_next() {
            break;
        }
    }
    if lagging {
        net.stall_storage(victim);
        net.deliver_next();
    }
    net.restart(victim);
    // Resends, retries and expirations until nothing is left to do.
    for _ in 0..3 {
        net.deliver_all();
        net.advance(Duration::from_secs(10));
    }
    net.mine_and_deliver(700);
    let sent = net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::PaymentSent { payment: p, .. } if *p == payment));
    let received = net
        .events(2)
        .iter()
        .any(|e| matches!(e, Event::PaymentReceived { payment: p, .. } if *p == payment));
    let failed = net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::PaymentFailed { payment: p, .. } if *p == payment));
    let context = format!("victim {victim}, {steps} steps, lagging {lagging}");
    // All or nothing, and nothing left locked.
    assert_eq!(sent, received, "{context}");
    assert_ne!(sent, failed, "{context}");
    for node in &net.nodes {
        for channel in node.channels() {
            assert!(
                channel.participant(Side::Ours).locks().is_empty(),
                "{context}"
            );
            assert!(
                channel.participant(Side::Partner).locks().is_empty(),
                "{context}"
            );
        }
    }
    let moved: u64 = if sent { 1_000 } else { 0 };
    let fee: u64 = if sent { 2 } else { 0 };
    assert_eq!(
        [net.spendable(0, a), net.spendable(1, a)],
        [
            Amount::from(10_000 - moved - fee),
            Amount::from(10_000 + moved + fee)
        ],
        "{context}"
    );
    assert_eq!(
        [net.spendable(1, b), net.spendable(2, b)],
        [Amount::from(10_000 - moved), Amount::from(10_000 + moved)],
        "{context}"
    );
    sent
}

#[test]
fn a_restored_node_completes_the_payment_or_fails_it_cleanly() {
    // A 2-hop payment takes 16 deliveries (8 messages, 8 acknowledgements); crash each node
    // after each of them, with storage in step and lagging.
    let mut completed = 0;
    let mut runs = 0;
    for victim in 0..3 {
        for steps in 0..=16 {
            for lagging in [false, true] {
                runs += 1;
                completed += usize::from(crash_and_finish(victim, steps, lagging));
            }
        }
    }
    // Within the payment timeout, resends finish every one of them.
    assert_eq!(completed, runs);
}

#[test]
fn a_restored_payee_takes_no_second_payment_for_an_invoice_being_claimed() {
    // Payers 0 and 2, payee 1.
    let mut net = create_network(3);
    net.open_channel(0, 1, [10_000, 0]);
    net.open_channel(2, 1, [10_000, 0]);
    let invoice = net.invoice(1, 1_000);
    let now = net.now();
    let first = net.nodes[0].pay(now, &invoice).unwrap();
    net.settle();
    // Deliver until the payee holds the payer's secret; its claim is not delivered yet.
    loop {
        let next = net.in_flight.front().expect("under way").clone();
        let reveal = next.to == 1
            && matches!(
                next.message(),
                Some(hoplite_node::wire::Message::RevealSecret { .. })
            );
        net.deliver_next();
        if reveal {
            break;
        }
    }
    net.restart(1);
    // Someone else pays the same invoice: the restored payee refuses it.
    let second = net.nodes[2].pay(now, &invoice).unwrap();
    net.settle();
    // Its lock arrives before the first payer unlocks.
    let first_payment: Vec<_> = net
        .in_flight
        .iter()
        .filter(|m| m.from != 2 && m.to != 2)
        .cloned()
        .collect();
    net.in_flight.retain(|m| m.from == 2 || m.to == 2);
    net.deliver_all();
    net.in_flight.extend(first_payment);
    net.deliver_all();
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::PaymentSent { payment, .. } if *payment == first
    )));
    assert!(
        net.events(2).iter().any(|e| matches!(
            e,
            Event::PaymentFailed { payment, .. } if *payment == second
        )),
        "{:?}",
        net.events(2)
    );
    net.mine_and_deliver(60);
}

/// Whether `records` only take acknowledged messages out of the outbox.
fn only_removes_messages(records: &[hoplite_node::Record]) -> bool {
    records.iter().all(|record| {
        matches!(
            record,
            hoplite_node::Record::Entry {
                key: hoplite_node::EntryKey::Message(..),
                value: None,
            }
        )
    })
}

/// Node 0 pays node 1 `amount` over `channel`, and everything is delivered.
fn transfer(net: &mut Network, channel: ChannelId, amount: u64) {
    let now = net.now();
    net.nodes[0]
        .send_direct(now, channel, Amount::from(amount))
        .unwrap();
    net.settle();
    net.deliver_all();
}

/// Balance updates node 0 has on their way.
fn updates_from_node_0(net: &Network) -> usize {
    net.in_flight
        .iter()
        .filter(|m| {
            m.from == 0
                && matches!(
                    m.message(),
                    Some(hoplite_node::wire::Message::Update { .. })
                )
        })
        .count()
}

#[test]
fn an_acknowledgement_is_written_with_the_next_batch_and_a_restart_that_lost_it_resends_once() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [10_000, 10_000]);
    let spendable = |net: &Network| [net.spendable(0, channel), net.spendable(1, channel)];
    net.record_batches(0);
    transfer(&mut net, channel, 300);
    let batches = net.recorded_batches(0);
    assert_eq!(
        batches.len(),
        1,
        "the transfer makes a batch, its acknowledgement none: {batches:?}"
    );
    assert!(!only_removes_messages(&batches[0].1));
    assert_eq!(
        spendable(&net),
        [Amount::from(9_700u64), Amount::from(10_300u64)]
    );

    // The store still holds the acknowledged transfer: a restart sends it again, and the
    // partner, which applied it once, acknowledges it without applying it twice.
    net.restart(0);
    assert_eq!(
        updates_from_node_0(&net),
        1,
        "the restored node sends the transfer again"
    );
    net.deliver_all();
    assert_eq!(
        spendable(&net),
        [Amount::from(9_700u64), Amount::from(10_300u64)]
    );

    // The next change carries the removal along.
    transfer(&mut net, channel, 200);
    let batches = net.recorded_batches(0);
    assert!(
        batches
            .iter()
            .all(|(_, records)| !only_removes_messages(records)),
        "no batch of removals alone: {batches:?}"
    );
    let removals = batches
        .iter()
        .flat_map(|(_, records)| records)
        .filter(|record| only_removes_messages(std::slice::from_ref(record)))
        .count();
    assert!(
        removals >= 1,
        "the earlier acknowledgement went with a later batch"
    );
    assert_eq!(
        spendable(&net),
        [Amount::from(9_500u64), Amount::from(10_500u64)]
    );
    assert_eq!(net.nodes[0].unacknowledged(net.address(1)), 0);
    let refused = |net: &Network| {
        net.events(1)
            .iter()
            .filter(|e| matches!(e, Event::PeerMessageRejected { .. }))
            .count()
    };
    assert_eq!(refused(&net), 0, "a resent transfer is no offence");

    // This transfer's acknowledgement waits for a batch too; a clean stop writes it
    // (`flush`), and a restart then sends nothing again.
    net.nodes[0].flush();
    net.settle();
    let batches = net.recorded_batches(0);
    assert!(
        batches.len() == 1 && only_removes_messages(&batches[0].1),
        "flush writes the held removal: {batches:?}"
    );
    net.restart(0);
    // (A restored node signs its channel announcement anew at its next block: a new message,
    // not a resend.)
    assert_eq!(
        updates_from_node_0(&net),
        0,
        "no transfer to send again after a flush"
    );
    net.deliver_all();
}

/// A payment over two hops, then every node crashes before the acknowledgements of the last
/// messages were written: the resent reveals and unlocks change nothing.
#[test]
fn resends_after_a_crash_that_lost_acknowledgements_change_nothing() {
    let (mut net, [a, b]) = line();
    let payment = net.send_payment(0, 2, 1_000);
    net.claim_payment(&[0, 1, 2], payment);
    let balances = |net: &Network| {
        [
            net.spendable(0, a),
            net.spendable(1, a),
            net.spendable(1, b),
            net.spendable(2, b),
        ]
    };
    let before = balances(&net);
    for i in 0..3 {
        net.restart(i);
    }
    // (A restored node signs its channel announcements anew at its next block: new messages,
    // not resends.)
    let resends = net
        .in_flight
        .iter()
        .filter(|m| {
            m.message().is_some_and(|message| {
                !matches!(
                    message,
                    hoplite_node::wire::Message::AnnouncementSignature { .. }
                )
            })
        })
        .count();
    assert!(
        resends > 0,
        "the restored nodes send acknowledged messages again"
    );
    for _ in 0..3 {
        net.deliver_all();
        net.advance(Duration::from_secs(10));
    }
    assert_eq!(balances(&net), before);
    for (i, kind) in [(0, "sent"), (2, "received")] {
        let count = net
            .events(i)
            .iter()
            .filter(|e| match e {
                Event::PaymentSent { payment: p, .. } => kind == "sent" && *p == payment,
                Event::PaymentReceived { payment: p, .. } => kind == "received" && *p == payment,
                _ => false,
            })
            .count();
        assert_eq!(count, 1, "node {i}: the payment {kind} once");
    }
    for i in 0..3 {
        for j in (0..3).filter(|&j| j != i) {
            assert_eq!(net.nodes[i].unacknowledged(net.address(j)), 0);
        }
    }
}

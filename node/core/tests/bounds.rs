//! What a peer can make us hold, and commands that change nothing when refused: floods of
//! requests leave one answer each, a request expires with its lock, a partner that never
//! acknowledges can't grow our outbox, nothing is resent to a peer that is offline, and
//! spontaneous payments' ids can't touch our invoices.

use hoplite_htlc::{Amount, ChannelId};
use hoplite_node::testkit::Network;
use hoplite_node::wire::{Envelope, Message};
use hoplite_node::{CommandError, Event, Output};
use hoplite_routing::Policy;
use std::time::Duration;

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

fn pair(max_unacked: usize) -> (Network, ChannelId) {
    let mut net = Network::new(2, 1, |_, config| config.max_unacked = max_unacked);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    (net, channel)
}

#[test]
fn a_flood_of_close_requests_leaves_one_answer() {
    let (mut net, channel) = pair(1_024);
    for round in 1..=300 {
        // Balances node 1 does not hold: each new round is refused.
        let balances = [amount(round), amount(0)];
        net.inject_message(
            0,
            1,
            Message::CloseRequest {
                channel,
                round,
                balances,
            },
        );
    }
    assert_eq!(net.nodes[1].unacknowledged(net.address(0)), 1);
    net.in_flight.clear();
}

#[test]
fn a_flood_of_secret_requests_leaves_one_reveal() {
    let (mut net, _) = pair(1_024);
    net.send_payment(0, 1, 100);
    // Deliver until the payer answers the payee's request; keep the request.
    let request = loop {
        let next = net.in_flight.front().unwrap().clone();
        net.deliver_next();
        if let Some(request @ Message::SecretRequest { .. }) = next.message() {
            break request;
        }
    };
    net.in_flight.clear();
    let payee = net.address(1);
    // The lock and the reveal wait for acknowledgements.
    let before = net.nodes[0].unacknowledged(payee);
    assert_eq!(before, 2);
    for _ in 0..300 {
        net.inject_message(1, 0, request.clone());
    }
    assert_eq!(net.nodes[0].unacknowledged(payee), before);
    net.in_flight.clear();
}

#[test]
fn a_secret_request_expires_with_its_lock() {
    let (mut net, _) = pair(1_024);
    net.send_payment(0, 1, 100);
    // The payer goes away before it answers: the payee's request waits for it.
    net.deliver_all_dropping(|m| matches!(m.message(), Some(Message::SecretRequest { .. })));
    let payer = net.address(0);
    assert!(net.nodes[1].unacknowledged(payer) > 0);
    net.mine_and_deliver(40);
    assert_eq!(
        net.nodes[1].unacknowledged(payer),
        0,
        "the lock expired, and its request with it"
    );
}

#[test]
fn a_partner_that_never_acknowledges_gets_no_more_updates_than_the_bound() {
    let (mut net, channel) = pair(8);
    let now = net.now();
    for _ in 0..8 {
        net.nodes[0].send_direct(now, channel, amount(1)).unwrap();
        net.settle();
    }
    // None of them is acknowledged (they are lost).
    net.in_flight.clear();
    let partner = net.address(1);
    assert_eq!(
        net.nodes[0].send_direct(now, channel, amount(1)),
        Err(CommandError::PeerBacklogged(partner))
    );
    assert_eq!(net.nodes[0].unacknowledged(partner), 8);
    // Once it acknowledges, payments go on.
    net.advance(Duration::from_secs(10));
    net.deliver_all();
    net.nodes[0].send_direct(now, channel, amount(1)).unwrap();
    net.settle();
    net.deliver_all();
}

#[test]
fn nothing_is_resent_to_an_offline_peer_until_it_is_back() {
    let (mut net, channel) = pair(1_024);
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(5)).unwrap();
    net.settle();
    net.in_flight.clear();
    net.disconnect(1);
    let resend = now + net.nodes[0].config().resend_after;
    assert!(
        net.nodes[0].poll_timeout().is_none_or(|at| at > resend),
        "no resend timer for it"
    );
    net.advance(Duration::from_secs(60));
    assert!(net.in_flight.is_empty());
    net.reconnect(1);
    assert_eq!(net.in_flight.len(), 1, "resent once it is back");
    net.deliver_all();
    assert_eq!(net.nodes[0].unacknowledged(net.address(1)), 0);
}

#[test]
fn a_node_that_could_leave_no_update_unacknowledged_does_not_start() {
    let key = hoplite_htlc::PrivateKey::from_bytes(&alloy_primitives::B256::repeat_byte(7))
        .expect("a valid key");
    let token_network = hoplite_htlc::TokenNetwork {
        chain_id: 1,
        address: alloy_primitives::Address::repeat_byte(0xee),
    };
    let config = hoplite_node::Config {
        max_unacked: 0,
        ..hoplite_node::Config::new(token_network, 1)
    };
    let refused = hoplite_node::Node::new(config, key, Duration::ZERO, Default::default());
    assert_eq!(refused.err(), Some(CommandError::NoUnackedUpdates));
}

#[test]
fn a_refused_command_outputs_nothing() {
    let (mut net, channel) = pair(1_024);
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(5)).unwrap();
    net.settle();
    // The transfer is lost; its resend is due when node 0 refuses to pay its own invoice.
    net.in_flight.clear();
    let own = net.invoice(0, 10);
    let later = now + Duration::from_secs(60);
    assert_eq!(net.nodes[0].pay(later, &own), Err(CommandError::OwnInvoice));
    let outputs: Vec<Output> = std::iter::from_fn(|| net.nodes[0].poll_output()).collect();
    assert!(outputs.is_empty(), "{outputs:?}");
    net.advance(Duration::from_secs(60));
    net.deliver_all();
}

#[test]
fn a_policy_set_survives_a_restart() {
    let (mut net, _) = pair(1_024);
    let policy = Policy {
        base_fee: 7,
        fee_millionths: 70,
        ..net.nodes[1].config().policy
    };
    let now = net.now();
    net.nodes[1].set_policy(now, policy).unwrap();
    net.settle();
    net.restart(1);
    assert_eq!(net.nodes[1].config().policy, policy);
    net.deliver_all();
}

#[test]
fn a_spontaneous_payment_naming_an_invoice_id_leaves_the_invoice_open() {
    let (mut net, _) = pair(1_024);
    let invoice = net.invoice(1, 100);
    let (now, payee) = (net.now(), net.address(1));
    net.nodes[0]
        .send_spontaneous(now, payee, amount(50))
        .unwrap();
    net.settle();
    // The payer (or a hop) names the invoice's id in the routing data, which no one signs.
    let sent = net.in_flight.pop_front().unwrap();
    let Envelope::Message {
        id,
        message: Message::Update { update, onward },
    } = sent.envelope()
    else {
        panic!("the lock");
    };
    let mut onward = onward.unwrap();
    onward.payment = invoice.payment;
    let message = Message::Update {
        update,
        onward: Some(onward),
    };
    net.inject(0, 1, Envelope::Message { id, message }.encode());
    net.deliver_all();
    assert!(net.events(1).iter().any(|e| matches!(
        e,
        Event::PaymentReceived { payment, amount: a, invoice: false } if *payment == invoice.payment && *a == amount(50)
    )));
    // The invoice itself is still payable, also after a restart.
    net.restart(1);
    net.deliver_all();
    let paid = net.nodes[0].pay(now, &invoice).unwrap();
    net.settle();
    net.deliver_all();
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::PaymentSent { payment, .. } if *payment == paid
    )));
}

#[test]
fn a_batch_holds_what_the_call_changed_not_the_whole_node() {
    let (mut net, channel) = pair(1_024);
    // Bookkeeping bytes of the batch a direct transfer makes.
    let transfer = |net: &mut Network| {
        let now = net.now();
        net.nodes[0].send_direct(now, channel, amount(1)).unwrap();
        net.settle();
        net.in_flight.clear();
        net.last_batch(0)
            .iter()
            // Outbox removals ride along with the next batch, whichever call makes it (how
            // many follows the outbox, bounded on its own, not the node's size).
            .filter(|r| {
                matches!(r, hoplite_node::Record::Entry { key, value }
                    if value.is_some() || !matches!(key, hoplite_node::EntryKey::Message(..)))
            })
            .map(|r| postcard::to_allocvec(r).unwrap().len())
            .sum::<usize>()
    };
    // Payments that stay in flight: the payee's requests for the secret are lost.
    let stall = |net: &mut Network, payments: usize| {
        for _ in 0..payments {
            net.send_payment(0, 1, 1);
            net.deliver_all_dropping(|m| {
                matches!(m.message(), Some(Message::SecretRequest { .. }))
            });
        }
    };
    stall(&mut net, 5);
    let few = transfer(&mut net);
    stall(&mut net, 40);
    let many = transfer(&mut net);
    assert!(few > 0);
    assert_eq!(
        many, few,
        "40 more payments in flight leave a transfer's entries as they were"
    );
}

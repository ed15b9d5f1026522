//! Closing channels cooperatively: both sign the final balances, the contract pays them out at
//! once, and each end gets on-chain exactly what it held off-chain. Every delivery is followed
//! by the testkit's conservation check.

use hoplite_htlc::{Amount, ChannelId};
use hoplite_node::testkit::{Network, START_TOKENS, create_network, paid_channel};
use hoplite_node::wire::Message;
use hoplite_node::{ChainRequest, Close, CommandError, Event, PeerError};
use std::time::Duration;

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

fn settled(net: &Network, i: usize, channel: ChannelId) -> bool {
    net.events(i)
        .iter()
        .any(|e| matches!(e, Event::ChannelSettled { channel: c } if *c == channel))
}

/// Node `i`'s tokens on-chain, counted from what it was minted.
fn gained(net: &mut Network, i: usize) -> i128 {
    i128::try_from(net.tokens(i).to_u256()).unwrap() - i128::from(START_TOKENS)
}

/// Both nodes' tokens on-chain, counted from what they were minted, are `expected`.
fn assert_gained(net: &mut Network, expected: [i128; 2]) {
    assert_eq!([gained(net, 0), gained(net, 1)], expected);
}

/// Node `i` proposes a cooperative close of `channel` (nothing delivered).
fn propose(net: &mut Network, i: usize, channel: ChannelId) {
    let now = net.now();
    net.nodes[i]
        .close_channel(now, channel, Close::Cooperative)
        .unwrap();
    net.settle();
}

fn chain_requests_failed(net: &Network, i: usize) -> Vec<Event> {
    net.events(i)
        .iter()
        .filter(|e| matches!(e, Event::ChainRequestFailed { .. }))
        .cloned()
        .collect()
}

#[test]
fn cooperative_close_pays_out_the_off_chain_balances_at_once() {
    let (mut net, channel) = paid_channel();
    propose(&mut net, 0, channel);
    net.deliver_all();
    // Settled at once: no close, no challenge window.
    for i in [0, 1] {
        assert!(settled(&net, i, channel), "node {i}: {:?}", net.events(i));
        assert!(
            !net.events(i)
                .iter()
                .any(|e| matches!(e, Event::ChannelClosed { .. }))
        );
        assert!(chain_requests_failed(&net, i).is_empty());
    }
    // Deposited 1,000 and 500; held 850 and 650.
    assert_gained(&mut net, [850 - 1_000, 650 - 500]);
    // Settled with nothing left to unlock: forgotten, also by a restarted node that replays
    // the channel's history.
    assert!(net.nodes[0].onchain_channel(channel).is_none());
    assert!(net.nodes[0].channel(channel).is_none());
    let opened = |net: &Network| {
        net.events(0)
            .iter()
            .filter(|e| matches!(e, Event::ChannelOpened { .. }))
            .count()
    };
    let before = opened(&net);
    net.restart(0);
    assert!(net.nodes[0].channel(channel).is_none());
    assert_eq!(opened(&net), before);
    // Nothing is left to send on it.
    assert_eq!(net.nodes[0].unacknowledged(net.address(1)), 0);
    assert_eq!(net.nodes[1].unacknowledged(net.address(0)), 0);
}

#[test]
fn a_pending_lock_blocks_a_cooperative_close() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 500]);
    let payment = net.send_payment(0, 1, 100);
    let now = net.now();
    assert_eq!(
        net.nodes[0].close_channel(now, channel, Close::Cooperative),
        Err(CommandError::LocksPending(channel))
    );
    // Once the payment is through, the close goes ahead.
    net.claim_payment(&[0, 1], payment);
    propose(&mut net, 0, channel);
    net.deliver_all();
    assert!(settled(&net, 0, channel));
    assert_gained(&mut net, [-100, 100]);
}

#[test]
fn a_transfer_crossing_the_proposal_makes_it_refused_and_the_channel_goes_on() {
    let (mut net, channel) = paid_channel();
    let now = net.now();
    // 1 pays 50 while 0's proposal (without those 50) is on its way.
    net.nodes[1].send_direct(now, channel, amount(50)).unwrap();
    propose(&mut net, 0, channel);
    net.deliver_all();
    assert!(
        net.events(0).iter().any(
            |e| matches!(e, Event::CloseRefused { channel: c, answered: true } if *c == channel)
        ),
        "{:?}",
        net.events(0)
    );
    assert!(!settled(&net, 0, channel));
    // 0 refused the transfer while proposing; it is resent and applies now.
    net.advance(Duration::from_secs(10));
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(900));
    assert_eq!(net.spendable(1, channel), amount(600));
    // The channel works again, and a second try closes it.
    net.nodes[0].send_direct(now, channel, amount(1)).unwrap();
    net.settle();
    net.deliver_all();
    propose(&mut net, 1, channel);
    net.deliver_all();
    assert!(settled(&net, 1, channel));
    assert_gained(&mut net, [899 - 1_000, 601 - 500]);
}

#[test]
fn proposals_crossing_each_other_settle_once() {
    let (mut net, channel) = paid_channel();
    for i in [0, 1] {
        propose(&mut net, i, channel);
    }
    net.deliver_all();
    for i in [0, 1] {
        assert!(settled(&net, i, channel));
        assert!(
            chain_requests_failed(&net, i).is_empty(),
            "{:?}",
            net.events(i)
        );
    }
    assert_gained(&mut net, [850 - 1_000, 650 - 500]);
}

#[test]
fn a_signer_is_frozen_and_closes_unilaterally_when_its_partner_goes_silent() {
    let (mut net, channel) = paid_channel();
    let now = net.now();
    propose(&mut net, 0, channel);
    // The proposer sends nothing more on the channel, nor accepts anything new.
    assert_eq!(
        net.nodes[0].send_direct(now, channel, amount(1)),
        Err(CommandError::ChannelClosing(channel))
    );
    assert_eq!(
        net.nodes[0].deposit(now, channel, amount(5_000)),
        Err(CommandError::ChannelClosing(channel))
    );
    // 1 signs; its acceptance is lost, and 0 goes offline.
    assert!(net.deliver_next());
    net.in_flight.clear();
    assert_eq!(
        net.nodes[1].send_direct(now, channel, amount(1)),
        Err(CommandError::ChannelClosing(channel))
    );
    net.disconnect(0);
    // 1 can't settle with one signature: `close_timeout` blocks after signing, it closes
    // unilaterally, and both are paid after the challenge window.
    let closed = |net: &Network| {
        net.events(1)
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { .. }))
    };
    net.mine(19);
    assert!(!closed(&net));
    net.mine(1);
    assert!(
        net.events(1)
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { closer, .. } if *closer == net.address(1))),
        "{:?}",
        net.events(1)
    );
    net.reconnect(0);
    net.in_flight.clear();
    net.mine_and_deliver(510);
    for i in [0, 1] {
        assert!(settled(&net, i, channel), "node {i}: {:?}", net.events(i));
    }
    assert_gained(&mut net, [850 - 1_000, 650 - 500]);
}

#[test]
fn a_forged_acceptance_is_rejected_and_settles_nothing() {
    let (mut net, channel) = paid_channel();
    propose(&mut net, 0, channel);
    // Intercept 1's real acceptance; present one signed by someone else instead.
    let request = net.in_flight.pop_front().unwrap();
    let Some(Message::CloseRequest {
        balances, round, ..
    }) = request.message()
    else {
        panic!("expected the proposal, got {:?}", request.message());
    };
    // In the contract's order: 0 opened the channel, so it is participant1.
    assert_eq!(balances, [amount(850), amount(650)]);
    let forged = hoplite_htlc::testing::key(99, 0).sign_digest(&alloy_primitives::B256::ZERO);
    let errors = net.inject_message(
        1,
        0,
        Message::CloseAccepted {
            channel,
            round,
            signature: forged,
        },
    );
    assert_eq!(errors, [PeerError::BadSignature]);
    assert!(!settled(&net, 0, channel));
    // The real exchange still completes.
    net.in_flight.clear();
    let seen = net.events(0).len();
    net.in_flight.push_back(request);
    net.deliver_all();
    assert!(settled(&net, 0, channel));
    assert!(net.events(0)[seen..].iter().all(|e| !matches!(
        e,
        Event::ChainRequestFailed {
            request: ChainRequest::CooperativeSettle { .. },
            ..
        }
    )));
    assert_eq!(gained(&mut net, 0), 850 - 1_000);
}

#[test]
fn a_refused_proposal_resent_later_is_not_accepted() {
    let (mut net, channel) = paid_channel();
    let now = net.now();
    // 0 pays 10, then proposes balances that include it; the proposal overtakes the payment.
    net.nodes[0].send_direct(now, channel, amount(10)).unwrap();
    propose(&mut net, 0, channel);
    let request = net.in_flight.pop_back().unwrap();
    assert!(matches!(
        request.message(),
        Some(Message::CloseRequest { .. })
    ));
    let resent = request.clone();
    net.in_flight.push_front(request);
    net.deliver_all();
    assert!(
        net.events(0)
            .iter()
            .any(|e| matches!(e, Event::CloseRefused { .. }))
    );
    // Now 1 holds the payment, and the old proposal matches its view: a resend must still not
    // be signed, since 0 has gone on with the channel.
    assert_eq!(net.spendable(1, channel), amount(660));
    net.in_flight.push_back(resent);
    net.deliver_all();
    let now = net.now();
    net.nodes[1].send_direct(now, channel, amount(5)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(845));
    assert!(!settled(&net, 0, channel));
}

#[test]
fn an_unanswered_proposal_is_dropped_and_the_channel_goes_on() {
    let (mut net, channel) = paid_channel();
    net.disconnect(1);
    propose(&mut net, 0, channel);
    net.in_flight.clear();
    net.mine(20);
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::CloseRefused { channel: c, answered: false } if *c == channel
    )));
    // Nothing was signed, and the proposal is not sent again: the channel carries payments
    // both ways.
    net.reconnect(1);
    net.deliver_all();
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(5)).unwrap();
    net.nodes[1].send_direct(now, channel, amount(2)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(1, channel), amount(653));
    assert!(!settled(&net, 0, channel));
}

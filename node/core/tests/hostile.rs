//! Hostile and unlucky peers: garbage, oversized, replayed, wrongly signed and misaddressed
//! messages are refused with typed errors and change nothing; lost, reordered and delayed
//! messages are resent until acknowledged; nothing signed leaves before it is persisted.

use hoplite_gossip::{ChannelUpdate, GossipMessage, Rejection};
use hoplite_htlc::{Amount, BalanceChange, Channel, ChannelId, ReceiveError, Side};
use hoplite_node::testkit::{InFlight, Network, create_network};
use hoplite_node::wire::{DecodeError, Envelope, MAX_MESSAGE_SIZE, MAX_ROUTE_HOPS, Message};
use hoplite_node::{Event, PeerAction, PeerError};
use std::time::Duration;

fn pair() -> (Network, ChannelId) {
    let mut net = create_network(3);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    (net, channel)
}

/// Node 1's state of `channel`, to compare before and after.
fn state(net: &Network, channel: ChannelId) -> Channel {
    net.nodes[1].channel(channel).unwrap().clone()
}

/// The errors among `events`.
fn rejections(events: &[Event]) -> Vec<PeerError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PeerMessageRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// Sends a direct transfer from 0 to 1 and returns its message, left in flight.
fn direct_transfer(net: &mut Network, channel: ChannelId, amount: u64) -> InFlight {
    let now = net.now();
    net.nodes[0]
        .send_direct(now, channel, Amount::from(amount))
        .unwrap();
    net.settle();
    net.in_flight.back().unwrap().clone()
}

#[test]
fn garbage_and_oversized_bytes_are_decode_errors() {
    let (mut net, channel) = pair();
    let before = state(&net, channel);
    let events = net.inject(0, 1, vec![0xff, 0x13, 0x37]);
    let errors = rejections(&events);
    assert!(
        matches!(errors[..], [PeerError::Decode(DecodeError::Malformed(_))]),
        "{errors:?}"
    );
    assert_eq!(errors[0].action(), PeerAction::Disconnect);

    let events = net.inject(0, 1, vec![0; MAX_MESSAGE_SIZE + 1]);
    assert_eq!(
        rejections(&events),
        [PeerError::Decode(DecodeError::TooLong(
            MAX_MESSAGE_SIZE + 1
        ))]
    );
    // A valid message with a byte appended.
    let mut bytes = direct_transfer(&mut net, channel, 5).bytes;
    net.in_flight.clear();
    bytes.push(0);
    let events = net.inject(0, 1, bytes);
    assert_eq!(
        rejections(&events),
        [PeerError::Decode(DecodeError::TrailingBytes(1))]
    );
    assert_eq!(state(&net, channel), before);
    // Nothing was acknowledged for any of them.
    assert!(net.in_flight.is_empty());
}

#[test]
fn malformed_routing_data_is_refused_before_anything_is_checked() {
    let (mut net, channel) = pair();
    let before = state(&net, channel);
    let message = direct_transfer(&mut net, channel, 5);
    net.in_flight.clear();
    let Envelope::Message {
        id,
        message: Message::Update { update, .. },
    } = message.envelope()
    else {
        panic!("a balance update");
    };
    // A direct transfer that claims routing data.
    let onward = hoplite_node::wire::Onward {
        payment: hoplite_node::PaymentId(Default::default()),
        payer: net.address(0),
        payee: net.address(1),
        amount: Amount::from(5u64),
        hops: vec![],
        keysend: None,
    };
    let bytes = Envelope::Message {
        id,
        message: Message::Update {
            update: update.clone(),
            onward: Some(Box::new(onward.clone())),
        },
    }
    .encode();
    assert_eq!(
        rejections(&net.inject(0, 1, bytes)),
        [PeerError::Decode(DecodeError::OnwardMismatch)]
    );
    // A route longer than any node accepts.
    let hop = hoplite_node::wire::OnwardHop {
        channel,
        to: net.address(1),
        amount: Amount::from(1u64),
        expiration: hoplite_htlc::BlockNumber(1),
    };
    let mut lock_update = *update;
    lock_update.change = BalanceChange::LockedTransfer {
        lock: hoplite_htlc::Lock {
            amount: Amount::from(5u64),
            expiration: hoplite_htlc::BlockNumber(100),
            secret_hash: hoplite_htlc::SecretHash(Default::default()),
        },
    };
    let long = hoplite_node::wire::Onward {
        hops: vec![hop; MAX_ROUTE_HOPS + 1],
        ..onward
    };
    let bytes = Envelope::Message {
        id,
        message: Message::Update {
            update: Box::new(lock_update),
            onward: Some(Box::new(long)),
        },
    }
    .encode();
    assert_eq!(
        rejections(&net.inject(0, 1, bytes)),
        [PeerError::Decode(DecodeError::RouteTooLong(
            MAX_ROUTE_HOPS + 1
        ))]
    );
    assert_eq!(state(&net, channel), before);
}

#[test]
fn replayed_updates_change_nothing() {
    let (mut net, channel) = pair();
    let first = direct_transfer(&mut net, channel, 10);
    net.deliver_all();
    let after_first = state(&net, channel);

    // The same message again: a duplicate, acknowledged again, silently.
    let events = net.inject(0, 1, first.bytes.clone());
    assert!(rejections(&events).is_empty());
    assert_eq!(state(&net, channel), after_first);
    assert!(matches!(
        net.in_flight.pop_front().unwrap().envelope(),
        Envelope::Ack(_)
    ));

    // After a newer one, the old one is stale: refused, typed, and nothing changes.
    let _second = direct_transfer(&mut net, channel, 20);
    net.deliver_all();
    let after_second = state(&net, channel);
    let events = net.inject(0, 1, first.bytes);
    let errors = rejections(&events);
    assert!(
        matches!(
            errors[..],
            [PeerError::Update(ReceiveError::StaleNonce { .. })]
        ),
        "{errors:?}"
    );
    assert_eq!(state(&net, channel), after_second);
    net.deliver_all();
    assert_eq!(net.spendable(1, channel), Amount::from(1_030u64));
}

#[test]
fn wrongly_signed_or_misaddressed_updates_are_refused() {
    let (mut net, channel) = pair();
    let before = state(&net, channel);
    let message = direct_transfer(&mut net, channel, 10);
    net.in_flight.clear();
    let Envelope::Message {
        id,
        message: Message::Update { update, onward },
    } = message.envelope()
    else {
        panic!("a balance update");
    };

    // The same message with its update edited.
    let edited = |edit: &dyn Fn(&mut hoplite_htlc::BalanceUpdate)| {
        let mut update = update.clone();
        edit(&mut update);
        let message = Message::Update {
            update,
            onward: onward.clone(),
        };
        Envelope::Message { id, message }.encode()
    };

    // A flipped bit in the signature recovers some other signer, or none.
    let bytes = edited(&|u| u.proof.signature.0[5] ^= 1);
    let errors = rejections(&net.inject(0, 1, bytes));
    assert!(
        matches!(
            errors[..],
            [PeerError::Update(
                ReceiveError::WrongSigner { .. } | ReceiveError::BadSignature(_)
            )]
        ),
        "{errors:?}"
    );
    // A larger amount under the original signature.
    let bytes = edited(&|u| {
        u.proof.proof.transferred_amount = Amount::from(500u64);
        u.change = BalanceChange::DirectTransfer {
            amount: Amount::from(500u64),
        };
    });
    let errors = rejections(&net.inject(0, 1, bytes));
    assert!(
        matches!(
            errors[..],
            [PeerError::Update(ReceiveError::WrongSigner { .. })]
        ),
        "{errors:?}"
    );

    // Node 0's genuine update, relayed by node 2 who is not in the channel.
    let errors = rejections(&net.inject(2, 1, message.bytes.clone()));
    assert!(
        matches!(errors[..], [PeerError::NotPartner { .. }]),
        "{errors:?}"
    );
    // An update for a channel node 1 doesn't have: node 2 has no channel at all.
    let errors = rejections(&net.inject(0, 2, message.bytes));
    assert!(
        matches!(errors[..], [PeerError::UnknownChannel(_)]),
        "{errors:?}"
    );
    assert_eq!(state(&net, channel), before);
    // Unsolicited secrets and failures are refused too.
    let secret = hoplite_htlc::Secret(Default::default());
    let errors = net.inject_message(0, 1, Message::RevealSecret { secret });
    assert_eq!(errors, [PeerError::Unsolicited("secret")]);
    // The unsolicited secret was acknowledged (resending it can't help); no refused update
    // was: an acknowledgement says "I hold this state".
    let acks = net
        .in_flight
        .iter()
        .filter(|m| matches!(m.envelope(), Envelope::Ack(_)))
        .count();
    assert_eq!(acks, 1);
    net.in_flight.clear();
}

#[test]
fn forged_or_foreign_gossip_is_rejected() {
    let (mut net, channel) = pair();
    let config = net.nodes[0].config().clone();
    // Past the rate limit of node 0's announcement, so the updates are checked in full.
    net.advance(Duration::from_secs(120));
    // Node 2 signs a policy for node 0's direction.
    let key = hoplite_htlc::testing::key(1, 2);
    let mut update = ChannelUpdate::sign(
        &key,
        config.token_network,
        channel,
        net.now().as_secs() + 100,
        config.policy,
    );
    update.participant = net.address(0);
    let verdict = net.gossip_verdict(2, 1, GossipMessage::ChannelUpdate(update).encode());
    assert_eq!(
        verdict,
        Some(hoplite_gossip::Verdict::Reject(Rejection::BadSignature))
    );
    // Node 2 signs for its own "direction" of a channel it isn't in.
    let update = ChannelUpdate::sign(
        &key,
        config.token_network,
        channel,
        net.now().as_secs() + 100,
        config.policy,
    );
    let verdict = net.gossip_verdict(2, 1, GossipMessage::ChannelUpdate(update).encode());
    assert!(matches!(
        verdict,
        Some(hoplite_gossip::Verdict::Reject(
            Rejection::NotAParticipant { .. }
        ))
    ));
    // Garbage.
    let verdict = net.gossip_verdict(2, 1, vec![7; 40]);
    assert_eq!(
        verdict,
        Some(hoplite_gossip::Verdict::Reject(Rejection::Malformed))
    );
    // A genuine newer update from node 0 is accepted.
    let key0 = hoplite_htlc::testing::key(1, 0);
    let update = ChannelUpdate::sign(
        &key0,
        config.token_network,
        channel,
        net.now().as_secs(),
        config.policy,
    );
    let verdict = net.gossip_verdict(2, 1, GossipMessage::ChannelUpdate(update).encode());
    assert_eq!(verdict, Some(hoplite_gossip::Verdict::Accept));
    // The same again is not news.
    let verdict = net.gossip_verdict(2, 1, GossipMessage::ChannelUpdate(update).encode());
    assert_eq!(verdict, Some(hoplite_gossip::Verdict::Ignore));
}

#[test]
fn reordered_lost_and_delayed_messages_are_resent_until_acknowledged() {
    let (mut net, channel) = pair();
    let _a = direct_transfer(&mut net, channel, 1);
    let _b = direct_transfer(&mut net, channel, 2);
    let _c = direct_transfer(&mut net, channel, 3);
    // Deliver the last first: a nonce gap, refused and not acknowledged.
    let last = net.in_flight.pop_back().unwrap();
    let errors = rejections(&net.inject(last.from, last.to, last.bytes));
    assert!(
        matches!(
            errors[..],
            [PeerError::Update(ReceiveError::NonceGap { .. })]
        ),
        "{errors:?}"
    );
    // Lose the second.
    net.in_flight.remove(1);
    net.deliver_all();
    assert_eq!(net.spendable(1, channel), Amount::from(1_001u64));
    // The sender resends what was not acknowledged, in order.
    net.advance(Duration::from_secs(5));
    net.deliver_all();
    assert_eq!(net.spendable(1, channel), Amount::from(1_006u64));
    assert_eq!(net.spendable(0, channel), Amount::from(994u64));
    // Everything is acknowledged now: no more resends.
    net.advance(Duration::from_secs(60));
    assert!(net.in_flight.is_empty());
}

#[test]
fn a_payment_survives_a_disconnection() {
    let mut net = create_network(3);
    let c01 = net.open_channel(0, 1, [10_000, 0]);
    let c12 = net.open_channel(1, 2, [10_000, 0]);
    let payment = net.send_payment(0, 2, 1_000);
    // The lock reaches 1, then 2 goes offline: 1's forward is lost.
    net.deliver_next();
    net.disconnect(2);
    net.deliver_all();
    net.reconnect(2);
    let fee = net.claim_payment(&[0, 1, 2], payment);
    assert_eq!(
        net.spendable(0, c01),
        Amount::from(10_000 - 1_000 - fee.to_u256().to::<u64>())
    );
    assert_eq!(net.spendable(2, c12), Amount::from(1_000u64));
}

#[test]
fn nothing_signed_leaves_before_it_is_persisted() {
    let (mut net, channel) = pair();
    net.stall_storage(0);
    let now = net.now();
    net.nodes[0]
        .send_direct(now, channel, Amount::from(7u64))
        .unwrap();
    net.settle();
    assert!(net.in_flight.is_empty(), "held until the record is durable");
    let durable = |net: &Network, i| {
        net.persisted(i, channel)
            .map(|c| c.participant(Side::Ours).transferred_amount())
    };
    assert_eq!(durable(&net, 0), Some(Amount::ZERO));
    net.resume_storage(0);
    assert_eq!(durable(&net, 0), Some(Amount::from(7u64)));
    assert_eq!(net.in_flight.len(), 1);

    // The receiver, too, persists the partner's proof before it acknowledges it, and before
    // it tells its user it was paid.
    net.stall_storage(1);
    net.deliver_next();
    assert!(
        net.in_flight.is_empty(),
        "no acknowledgement before the proof is durable"
    );
    let paid = |net: &Network| {
        net.events(1)
            .iter()
            .any(|e| matches!(e, Event::DirectTransferReceived { .. }))
    };
    assert!(!paid(&net), "no event before the proof is durable");
    net.resume_storage(1);
    assert!(paid(&net));
    assert!(matches!(net.in_flight[0].envelope(), Envelope::Ack(_)));
    net.deliver_all();
    assert_eq!(net.nodes[0].unacknowledged(net.address(1)), 0);
}

#[test]
fn policies_are_announced_again_before_peers_would_prune_them() {
    let mut net = create_network(3);
    net.open_channel(0, 1, [10_000, 0]);
    net.open_channel(1, 2, [10_000, 0]);
    // Three weeks, a day at a time: every node's policies would be pruned after two without
    // announcements; each node announces again after one.
    for _ in 0..21 {
        net.advance(Duration::from_secs(24 * 3600));
    }
    net.deliver_all();
    net.route_payment(&[0, 1, 2], 1_000);
}

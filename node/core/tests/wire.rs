//! The decoders of peer input on random and mutated bytes: never a panic, always a typed
//! result, and whatever decodes round-trips. (`fuzz/` searches the same properties longer.)

use hoplite_gossip::{ChannelAnnouncement, ChannelUpdate, GossipMessage};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::testing::{TOKEN_NETWORK, key};
use hoplite_htlc::{
    Amount, BalanceChange, BalanceProof, BalanceUpdate, BlockNumber, ChannelId, Lock, Nonce,
    Secret, SecretHash,
};
use hoplite_node::PaymentId;
use hoplite_node::wire::{
    Envelope, FailurePoint, FailureReason, Keysend, MAX_ROUTE_HOPS, Message, MessageId, Onward,
    OnwardHop,
};
use proptest::prelude::*;

/// A valid envelope of each kind, the largest routing data included.
fn samples() -> Vec<Envelope> {
    let signer = key(3, 0);
    let lock = Lock {
        amount: Amount::from(1_000u64),
        expiration: BlockNumber(77),
        secret_hash: Secret(Default::default()).hash(),
    };
    let proof = BalanceProof {
        token_network: TOKEN_NETWORK,
        channel_id: ChannelId::from(9),
        nonce: Nonce(4),
        transferred_amount: Amount::from(5u64),
        locked_amount: lock.amount,
        locks_root: lock.leaf_hash(),
    }
    .sign(&signer, &TOKEN_NETWORK.domain_separator());
    let update = BalanceUpdate {
        change: BalanceChange::LockedTransfer { lock },
        proof,
    };
    let hop = OnwardHop {
        channel: ChannelId::from(10),
        to: signer.address(),
        amount: Amount::MAX,
        expiration: BlockNumber(u64::MAX),
    };
    let onward = Onward {
        payment: PaymentId(Default::default()),
        payer: signer.address(),
        payee: signer.address(),
        amount: Amount::MAX,
        hops: vec![hop; MAX_ROUTE_HOPS],
        keysend: Keysend::seal(Secret(Default::default()), &key(3, 1).public_key(), &signer),
    };
    let message = |message| Envelope::Message {
        id: MessageId(u64::MAX),
        message,
    };
    vec![
        message(Message::Update {
            update: Box::new(update),
            onward: Some(Box::new(onward)),
        }),
        message(Message::SecretRequest {
            payment: PaymentId(Default::default()),
            secret_hash: SecretHash(Default::default()),
            amount: Amount::from(1u64),
        }),
        message(Message::RevealSecret {
            secret: Secret(Default::default()),
        }),
        message(Message::Failure {
            secret_hash: SecretHash(Default::default()),
            at: FailurePoint {
                node: signer.address(),
                channel: Some(ChannelId::from(1)),
            },
            reason: FailureReason::InsufficientCapacity,
        }),
        message(Message::CloseRequest {
            channel: ChannelId::from(9),
            round: u64::MAX,
            balances: [Amount::MAX, Amount::MAX],
        }),
        message(Message::CloseAccepted {
            channel: ChannelId::from(9),
            round: u64::MAX,
            signature: signer.sign_digest(&Default::default()),
        }),
        message(Message::CloseRefused {
            channel: ChannelId::from(9),
            round: u64::MAX,
        }),
        Envelope::Ack(MessageId(3)),
    ]
}

/// Decodes `bytes` every way a peer's bytes are decoded; checks round trips.
fn decode_all(bytes: &[u8]) {
    if let Ok(envelope) = Envelope::decode(bytes) {
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
    }
    if let Ok(message) = GossipMessage::decode(bytes) {
        assert_eq!(GossipMessage::decode(&message.encode()), Ok(message));
    }
    if let Ok(update) = BalanceUpdate::decode(bytes) {
        assert_eq!(BalanceUpdate::decode(&update.encode()), Ok(update));
    }
}

#[test]
fn every_message_kind_round_trips_within_the_limit() {
    for envelope in samples() {
        let bytes = envelope.encode();
        assert!(
            bytes.len() <= hoplite_node::wire::MAX_MESSAGE_SIZE,
            "{}",
            bytes.len()
        );
        assert_eq!(Envelope::decode(&bytes), Ok(envelope));
    }
    let update = ChannelUpdate::sign(
        &key(3, 1),
        TOKEN_NETWORK,
        ChannelId::from(1),
        1,
        hoplite_routing::Policy {
            base_fee: u64::MAX,
            fee_millionths: u32::MAX,
            expiry_delta: u16::MAX,
            min_lock: u128::MAX,
            max_lock: u128::MAX,
            enabled: true,
        },
    );
    let message = GossipMessage::ChannelUpdate(update);
    assert!(message.encode().len() <= hoplite_gossip::MAX_GOSSIP_SIZE);
    assert_eq!(GossipMessage::decode(&message.encode()), Ok(message));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5_000)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0..5usize,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = samples()[which].encode();
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        decode_all(&bytes);
        // Every truncation, too.
        decode_all(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

#[test]
fn a_message_lists_the_signatures_its_receiver_checks() {
    let (sender, receiver) = (key(3, 0), key(3, 1));
    let ends = [sender.address(), receiver.address()];
    for envelope in samples() {
        let listed = envelope.signatures(TOKEN_NETWORK, ends, None);
        match &envelope {
            Envelope::Message {
                message: Message::Update { update, .. },
                ..
            } => {
                // The digest the receiving channel computes, and the sender it recovers.
                let digest = update
                    .proof
                    .proof
                    .signing_hash_with(&TOKEN_NETWORK.domain_separator());
                assert_eq!(listed, [(digest, update.proof.signature)]);
                assert_eq!(recover_address(&digest, &listed[0].1), Ok(sender.address()));
            }
            other => assert!(listed.is_empty(), "{other:?} lists {listed:?}"),
        }
    }
    // An announcement signature: the chain orders the participants (here the receiver
    // first), so both orders are listed and one of them is what the receiver checks.
    let (channel, capacity) = (ChannelId::from(9), Amount::from(700u64));
    let participants = [receiver.address(), sender.address()];
    let digest = ChannelAnnouncement::digest(TOKEN_NETWORK, channel, participants, capacity);
    let signature = sender.sign_digest(&digest);
    let envelope = Envelope::Message {
        id: MessageId(1),
        message: Message::AnnouncementSignature {
            channel,
            capacity,
            signature,
        },
    };
    let listed = envelope.signatures(TOKEN_NETWORK, ends, None);
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&(digest, signature)));
    assert_eq!(
        listed
            .iter()
            .filter(|(d, s)| recover_address(d, s) == Ok(sender.address()))
            .count(),
        1
    );
    // A driver that knows the chain's order gets the one the receiver checks.
    assert_eq!(
        envelope.signatures(TOKEN_NETWORK, ends, Some(participants)),
        [(digest, signature)]
    );
}

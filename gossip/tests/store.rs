//! The gossip store's verdicts on announcements and updates: each way to be invalid, not news,
//! or accepted; pruning and forgetting.

use alloy_primitives::Address;
use hoplite_gossip::{
    ChannelAnnouncement, ChannelFacts, ChannelUpdate, DecodeError, GossipMessage, GossipParams,
    GossipStore, MAX_ADDRESS_LEN, MAX_ADDRESSES, MAX_ALIAS_LEN, MAX_GOSSIP_SIZE, NodeAnnouncement,
    Rejection, Verdict,
};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::testing::{TOKEN_NETWORK, key};
use hoplite_htlc::{Amount, ChannelId, TokenNetwork};
use hoplite_routing::Policy;
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

fn policy() -> Policy {
    Policy {
        base_fee: 1,
        fee_millionths: 100,
        expiry_delta: 20,
        min_lock: 1,
        max_lock: 1_000,
        enabled: true,
    }
}

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

struct Setup {
    store: GossipStore,
    channel: ChannelId,
    ends: [Address; 2],
}

fn setup() -> Setup {
    Setup {
        store: GossipStore::new(TOKEN_NETWORK, GossipParams::default()),
        channel: ChannelId::from(5),
        ends: [key(1, 0).address(), key(1, 1).address()],
    }
}

fn update(signer: u8, channel: ChannelId, timestamp: u64) -> ChannelUpdate {
    ChannelUpdate::sign(&key(1, signer), TOKEN_NETWORK, channel, timestamp, policy())
}

#[test]
fn newer_wins_after_the_rate_limit_and_nothing_else_is_news() {
    let Setup {
        mut store,
        channel,
        ends,
    } = setup();
    let first = update(0, channel, NOW);
    assert_eq!(
        store.handle_update(at(NOW), &first, Some(ends)),
        Verdict::Accept
    );
    assert_eq!(store.latest(channel, ends[0]), Some(&first));
    // The same, an older one, and a newer one within a minute: not news.
    assert_eq!(
        store.handle_update(at(NOW), &first, Some(ends)),
        Verdict::Ignore
    );
    let older = update(0, channel, NOW - 10);
    assert_eq!(
        store.handle_update(at(NOW + 100), &older, Some(ends)),
        Verdict::Ignore
    );
    let soon = update(0, channel, NOW + 30);
    assert_eq!(
        store.handle_update(at(NOW + 30), &soon, Some(ends)),
        Verdict::Ignore
    );
    // A minute later it is.
    let later = update(0, channel, NOW + 61);
    assert_eq!(
        store.handle_update(at(NOW + 61), &later, Some(ends)),
        Verdict::Accept
    );
    assert_eq!(store.latest(channel, ends[0]), Some(&later));
    // The other direction is independent.
    let other = update(1, channel, NOW);
    assert_eq!(
        store.handle_update(at(NOW + 61), &other, Some(ends)),
        Verdict::Accept
    );
    assert_eq!(store.len(), 2);
}

#[test]
fn invalid_updates_are_rejected_with_their_reason() {
    let Setup {
        mut store,
        channel,
        ends,
    } = setup();
    let now = at(NOW);
    let reject = |store: &mut GossipStore, u: &ChannelUpdate, p| store.handle_update(now, u, p);

    let elsewhere = TokenNetwork {
        chain_id: 2,
        ..TOKEN_NETWORK
    };
    let foreign = ChannelUpdate::sign(&key(1, 0), elsewhere, channel, NOW, policy());
    assert_eq!(
        reject(&mut store, &foreign, Some(ends)),
        Verdict::Reject(Rejection::WrongTokenNetwork)
    );
    // Not open on-chain as far as we know: maybe we lag; not news, nobody to blame.
    assert_eq!(
        reject(&mut store, &update(0, channel, NOW), None),
        Verdict::Ignore
    );
    let outsider = update(2, channel, NOW);
    assert!(matches!(
        reject(&mut store, &outsider, Some(ends)),
        Verdict::Reject(Rejection::NotAParticipant { .. })
    ));
    // Signed by an outsider but naming a participant.
    let mut forged = update(2, channel, NOW);
    forged.participant = ends[0];
    assert_eq!(
        reject(&mut store, &forged, Some(ends)),
        Verdict::Reject(Rejection::BadSignature)
    );
    // A valid signature over other contents.
    let mut edited = update(0, channel, NOW);
    edited.policy.base_fee = 0;
    assert_eq!(
        reject(&mut store, &edited, Some(ends)),
        Verdict::Reject(Rejection::BadSignature)
    );
    let future = update(0, channel, NOW + 601);
    assert!(matches!(
        reject(&mut store, &future, Some(ends)),
        Verdict::Reject(Rejection::FromTheFuture { .. })
    ));
    let mut empty = policy();
    empty.min_lock = 10;
    empty.max_lock = 9;
    let empty = ChannelUpdate::sign(&key(1, 0), TOKEN_NETWORK, channel, NOW, empty);
    assert_eq!(
        reject(&mut store, &empty, Some(ends)),
        Verdict::Reject(Rejection::EmptyLockRange)
    );
    assert!(store.is_empty(), "nothing invalid was kept");
}

#[test]
fn silent_directions_are_pruned_and_closed_channels_forgotten() {
    let Setup {
        mut store,
        channel,
        ends,
    } = setup();
    let two_weeks = GossipParams::default().stale_after.as_secs();
    store.handle_update(at(NOW), &update(0, channel, NOW), Some(ends));
    store.handle_update(at(NOW), &update(1, channel, NOW + 100), Some(ends));
    assert!(!store.prune_due(at(NOW + two_weeks)));
    assert!(store.prune(at(NOW + two_weeks)).is_empty());
    assert!(store.prune_due(at(NOW + two_weeks + 50)));
    assert_eq!(store.prune(at(NOW + two_weeks + 50)), [(channel, ends[0])]);
    assert_eq!(store.len(), 1);
    // What is left is younger: nothing is due until it is stale in turn.
    assert!(!store.prune_due(at(NOW + two_weeks + 100)));
    assert!(store.prune_due(at(NOW + two_weeks + 101)));
    store.forget_channel(channel);
    assert!(store.is_empty());
}

#[test]
fn messages_already_stale_are_ignored_not_kept() {
    let Setup {
        mut store,
        channel,
        ends,
    } = setup();
    let two_weeks = GossipParams::default().stale_after.as_secs();
    let now = at(NOW + two_weeks + 10);
    // Signed more than `stale_after` ago: a prune would drop it at once, so it is not kept (a
    // sender could otherwise have every node prune again and again). At the edge: kept.
    for (signed, verdict, kept) in [
        (NOW + 9, Verdict::Ignore, 0),
        (NOW + 10, Verdict::Accept, 1),
    ] {
        let update = update(0, channel, signed);
        assert_eq!(store.handle_update(now, &update, Some(ends)), verdict);
        let announcement = node_announcement(0, signed, "alpha");
        assert_eq!(
            store.handle_node_announcement(now, &announcement, true),
            verdict
        );
        assert_eq!((store.len(), store.node_count()), (kept, kept), "{signed}");
        assert!(store.prune(now).is_empty(), "{signed}");
    }
}

fn announcement(channel: ChannelId, capacity: u64, signers: [u8; 2]) -> ChannelAnnouncement {
    let participants = [key(1, 0).address(), key(1, 1).address()];
    let capacity = Amount::from(capacity);
    let signatures = signers.map(|signer| {
        ChannelAnnouncement::sign_part(
            &key(1, signer),
            TOKEN_NETWORK,
            channel,
            participants,
            capacity,
        )
    });
    ChannelAnnouncement {
        token_network: TOKEN_NETWORK,
        channel,
        participants,
        capacity,
        signatures,
    }
}

#[test]
fn channel_announcements_are_checked_against_the_chain() {
    let Setup {
        mut store,
        channel,
        ends,
    } = setup();
    let facts = Some(ChannelFacts {
        participants: ends,
        capacity: Amount::from(1_500u64),
    });
    let good = announcement(channel, 1_500, [0, 1]);
    // Not open on-chain as far as we know (maybe we lag): ignored. Another token network,
    // other participants, a forged signature: rejected.
    assert_eq!(
        store.handle_channel_announcement(&good, None),
        Verdict::Ignore
    );
    let foreign = ChannelAnnouncement {
        token_network: TokenNetwork {
            chain_id: 2,
            ..TOKEN_NETWORK
        },
        ..good
    };
    assert_eq!(
        store.handle_channel_announcement(&foreign, facts),
        Verdict::Reject(Rejection::WrongTokenNetwork)
    );
    let swapped = ChannelAnnouncement {
        participants: [ends[1], ends[0]],
        ..good
    };
    assert_eq!(
        store.handle_channel_announcement(&swapped, facts),
        Verdict::Reject(Rejection::WrongParticipants(channel))
    );
    let forged = announcement(channel, 1_500, [0, 0]);
    assert_eq!(
        store.handle_channel_announcement(&forged, facts),
        Verdict::Reject(Rejection::BadSignature)
    );
    // Another capacity than the chain's: older, or newer than our view; nobody to blame.
    let other = announcement(channel, 1_000, [0, 1]);
    assert_eq!(
        store.handle_channel_announcement(&other, facts),
        Verdict::Ignore
    );
    assert_eq!(store.channel_announcement(channel), None);
    // The right one is accepted once.
    assert_eq!(
        store.handle_channel_announcement(&good, facts),
        Verdict::Accept
    );
    assert_eq!(
        store.handle_channel_announcement(&good, facts),
        Verdict::Ignore
    );
    assert_eq!(store.channel_announcement(channel), Some(&good));
    store.forget_channel(channel);
    assert_eq!(store.channel_announcement(channel), None);
}

fn node_announcement(signer: u8, timestamp: u64, alias: &str) -> NodeAnnouncement {
    NodeAnnouncement::sign(
        &key(1, signer),
        TOKEN_NETWORK,
        timestamp,
        alias.to_owned(),
        vec!["/ip4/10.0.0.1/tcp/9735".to_owned()],
    )
}

#[test]
fn node_announcements_need_a_channel_a_signature_and_news() {
    let mut store = GossipStore::new(TOKEN_NETWORK, GossipParams::default());
    let first = node_announcement(0, NOW, "alpha");
    // No channel open on-chain as far as we know: ignored, and not kept.
    assert_eq!(
        store.handle_node_announcement(at(NOW), &first, false),
        Verdict::Ignore
    );
    assert_eq!(store.node_count(), 0);
    let mut forged = first.clone();
    forged.alias = "mallory".to_owned();
    assert_eq!(
        store.handle_node_announcement(at(NOW), &forged, true),
        Verdict::Reject(Rejection::BadSignature)
    );
    let long = node_announcement(0, NOW, &"x".repeat(MAX_ALIAS_LEN + 1));
    assert_eq!(
        store.handle_node_announcement(at(NOW), &long, true),
        Verdict::Reject(Rejection::Malformed)
    );
    // Encoded, it does not even decode.
    assert_eq!(
        GossipMessage::decode(&GossipMessage::NodeAnnouncement(long).encode()),
        Err(DecodeError::FieldTooLong)
    );
    let ahead = node_announcement(0, NOW + 3_600, "alpha");
    assert!(matches!(
        store.handle_node_announcement(at(NOW), &ahead, true),
        Verdict::Reject(Rejection::FromTheFuture { .. })
    ));
    assert_eq!(
        store.handle_node_announcement(at(NOW), &first, true),
        Verdict::Accept
    );
    assert_eq!(store.node_announcement(first.node), Some(&first));
    // Repeated, older, or newer within the rate limit: not news. After it: news.
    let newer = node_announcement(0, NOW + 10, "beta");
    assert_eq!(
        store.handle_node_announcement(at(NOW + 10), &newer, true),
        Verdict::Ignore
    );
    assert_eq!(
        store.handle_node_announcement(at(NOW + 60), &first, true),
        Verdict::Ignore
    );
    assert_eq!(
        store.handle_node_announcement(at(NOW + 60), &newer, true),
        Verdict::Accept
    );
    assert_eq!(store.node_announcement(first.node).unwrap().alias, "beta");
    // Silent for two weeks: pruned. Its last channel closed: forgotten.
    store.prune(at(NOW + 15 * 24 * 3600));
    assert_eq!(store.node_count(), 0);
    assert_eq!(
        store.handle_node_announcement(at(NOW + 60), &first, true),
        Verdict::Accept
    );
    store.forget_node(first.node);
    assert_eq!(store.node_announcement(first.node), None);
}

#[test]
fn the_largest_node_announcement_fits_the_gossip_limit() {
    let largest = NodeAnnouncement::sign(
        &key(1, 0),
        TOKEN_NETWORK,
        u64::MAX,
        "a".repeat(MAX_ALIAS_LEN),
        vec!["b".repeat(MAX_ADDRESS_LEN); MAX_ADDRESSES],
    );
    let bytes = GossipMessage::NodeAnnouncement(largest.clone()).encode();
    assert!(bytes.len() <= MAX_GOSSIP_SIZE, "{} bytes", bytes.len());
    assert_eq!(
        GossipMessage::decode(&bytes),
        Ok(GossipMessage::NodeAnnouncement(largest))
    );
}

#[test]
fn the_signatures_a_message_lists_recover_to_its_signers() {
    // A driver recovers these ahead of the receiver's checks: a wrong digest would recover
    // some other address.
    let channel = ChannelId::from(5);
    let announcement = announcement(channel, 1_500, [0, 1]);
    let signers = |message: GossipMessage| -> Vec<Address> {
        message
            .signatures()
            .iter()
            .map(|(digest, signature)| recover_address(digest, signature).unwrap())
            .collect()
    };
    assert_eq!(
        signers(GossipMessage::ChannelAnnouncement(announcement)),
        announcement.participants
    );
    let update = update(1, channel, NOW);
    assert_eq!(
        signers(GossipMessage::ChannelUpdate(update)),
        [update.participant]
    );
    let node = node_announcement(0, NOW, "hub");
    assert_eq!(
        signers(GossipMessage::NodeAnnouncement(node.clone())),
        [node.node]
    );
}

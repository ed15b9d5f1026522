//! The gossip store's verdicts: each way to be invalid, not news, or accepted; pruning.

use alloy_primitives::Address;
use hoplite_gossip::{ChannelUpdate, GossipParams, GossipStore, Rejection, Verdict};
use hoplite_htlc::testing::{TOKEN_NETWORK, key};
use hoplite_htlc::{ChannelId, TokenNetwork};
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
    assert_eq!(
        reject(&mut store, &update(0, channel, NOW), None),
        Verdict::Reject(Rejection::UnknownChannel(channel))
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
    assert!(store.prune(at(NOW + two_weeks)).is_empty());
    assert_eq!(store.prune(at(NOW + two_weeks + 50)), [(channel, ends[0])]);
    assert_eq!(store.len(), 1);
    store.forget_channel(channel);
    assert!(store.is_empty());
}

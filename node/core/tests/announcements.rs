//! Channel and node announcements end to end: the participants of a channel sign its capacity
//! to each other and announce it; every node checks what it hears against the chain, learns
//! the nodes' aliases and addresses, and forgets both when the channels close.

use hoplite_gossip::{ChannelAnnouncement, GossipMessage, NodeAnnouncement, Rejection, Verdict};
use hoplite_htlc::{Amount, BlockNumber, ChannelId};
use hoplite_node::testkit::Network;
use hoplite_node::wire::{Envelope, Message};
use hoplite_node::{Close, Input, PeerError};

/// Three nodes with aliases and addresses; a channel between 0 and 1 (1,000 and 500),
/// announced (at the block after its last deposit).
fn network() -> (Network, ChannelId) {
    let mut net = Network::new(3, 7, |i, config| {
        config.alias = format!("node {i}");
        config.addresses = vec![format!("/ip4/10.0.0.{i}/tcp/9735")];
    });
    let channel = net.open_channel(0, 1, [1_000, 500]);
    net.mine_and_deliver(1);
    (net, channel)
}

/// The announcement signatures that wait for delivery: (sender, capacity).
fn signatures_in_flight(net: &Network) -> Vec<(usize, Amount)> {
    net.in_flight
        .iter()
        .filter_map(|m| match Envelope::decode(&m.bytes) {
            Ok(Envelope::Message {
                message: Message::AnnouncementSignature { capacity, .. },
                ..
            }) => Some((m.from, capacity)),
            _ => None,
        })
        .collect()
}

fn announced(net: &Network, i: usize, channel: ChannelId) -> Option<ChannelAnnouncement> {
    net.nodes[i]
        .view()
        .gossip()
        .channel_announcement(channel)
        .copied()
}

#[test]
fn every_node_learns_the_channel_its_capacity_and_its_nodes() {
    let (mut net, channel) = network();
    for i in 0..3 {
        let announcement = announced(&net, i, channel).expect("announced");
        assert_eq!(announcement.capacity, Amount::from(1_500u64));
        assert_eq!(announcement.participants, [net.address(0), net.address(1)]);
        for j in [0, 1] {
            let node = net.nodes[i]
                .view()
                .gossip()
                .node_announcement(net.address(j))
                .cloned()
                .unwrap_or_else(|| panic!("node {i} knows node {j}"));
            assert_eq!(node.alias, format!("node {j}"));
            assert_eq!(node.addresses, vec![format!("/ip4/10.0.0.{j}/tcp/9735")]);
        }
        // Node 2 has no channel: nobody keeps an announcement of it.
        assert!(
            net.nodes[i]
                .view()
                .gossip()
                .node_announcement(net.address(2))
                .is_none()
        );
    }
    // A deposit: the channel is announced again with its new capacity, at the next block.
    let now = net.now();
    net.nodes[1]
        .deposit(now, channel, Amount::from(800u64))
        .unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(
        announced(&net, 2, channel).map(|a| a.capacity),
        Some(Amount::from(1_500u64))
    );
    net.mine_and_deliver(1);
    for i in 0..3 {
        assert_eq!(
            announced(&net, i, channel).map(|a| a.capacity),
            Some(Amount::from(1_800u64))
        );
    }
    // Closed: the channel and its nodes (who have no other) are forgotten.
    let now = net.now();
    net.nodes[0]
        .close_channel(now, channel, Close::Cooperative)
        .unwrap();
    net.settle();
    net.deliver_all();
    for i in 0..3 {
        assert_eq!(announced(&net, i, channel), None);
        assert_eq!(net.nodes[i].view().gossip().node_count(), 0);
    }
}

#[test]
fn a_new_channel_is_signed_once_at_the_block_after_its_last_deposit() {
    let mut net = Network::new(2, 7, |_, _| {});
    // The opener's deposit and the partner's land in blocks of their own.
    let channel = net.open_channel(0, 1, [1_000, 500]);
    assert!(signatures_in_flight(&net).is_empty());
    assert_eq!(announced(&net, 1, channel), None);
    // The next block: each signs the capacity both deposits make, once.
    net.mine(1);
    let capacity = Amount::from(1_500u64);
    let mut signed = signatures_in_flight(&net);
    signed.sort();
    assert_eq!(signed, [(0, capacity), (1, capacity)]);
    net.deliver_all();
    for i in 0..2 {
        assert_eq!(
            announced(&net, i, channel).map(|a| a.capacity),
            Some(capacity)
        );
    }
    // Nothing more to sign at later blocks.
    net.mine(1);
    assert!(signatures_in_flight(&net).is_empty());
}

#[test]
fn a_partner_half_that_comes_before_our_next_block_waits_for_it() {
    let mut net = Network::new(2, 7, |_, _| {});
    let channel = net.open_channel(0, 1, [1_000, 500]);
    // Node 1 sees the next block before node 0 and sends its half at once.
    let next = BlockNumber(net.block().0 + 1);
    let now = net.now();
    net.nodes[1].handle_input(now, Input::Block(next));
    net.settle();
    assert_eq!(signatures_in_flight(&net), [(1, Amount::from(1_500u64))]);
    net.deliver_all();
    // Node 0's capacity has not settled for it yet: it keeps the half and signs nothing.
    assert_eq!(announced(&net, 0, channel), None);
    assert!(signatures_in_flight(&net).is_empty());
    // Its next block: it signs once and announces with the half it kept.
    net.mine(1);
    assert_eq!(signatures_in_flight(&net), [(0, Amount::from(1_500u64))]);
    assert_eq!(
        announced(&net, 0, channel).map(|a| a.capacity),
        Some(Amount::from(1_500u64))
    );
    net.deliver_all();
    assert_eq!(
        announced(&net, 1, channel).map(|a| a.capacity),
        Some(Amount::from(1_500u64))
    );
}

#[test]
fn forged_announcements_are_rejected_and_unfounded_ones_not_relayed() {
    let (mut net, channel) = network();
    let genuine = announced(&net, 2, channel).unwrap();
    let config = net.nodes[2].config().clone();
    // Node 1 deposits behind its node's back: the capacity changes on-chain, and node 2 has
    // not heard the new announcement yet. One signed by node 0 alone is forged.
    let total = Amount::from(900u64);
    let own = net.address(1);
    hoplite_chain::evm::complete(net.chain(1).set_total_deposit(channel, own, total)).unwrap();
    net.sync_chain();
    let capacity = Amount::from(1_900u64);
    let key0 = hoplite_htlc::testing::key(7, 0);
    assert_eq!(key0.address(), net.address(0));
    let part = ChannelAnnouncement::sign_part(
        &key0,
        config.token_network,
        channel,
        genuine.participants,
        capacity,
    );
    let forged = ChannelAnnouncement {
        capacity,
        signatures: [part, part],
        ..genuine
    };
    assert_eq!(
        net.gossip_verdict(0, 2, GossipMessage::ChannelAnnouncement(forged).encode()),
        Some(Verdict::Reject(Rejection::BadSignature))
    );
    // The participants' own exchange announces it, at the next block.
    net.mine_and_deliver(1);
    assert_eq!(
        announced(&net, 2, channel).map(|a| a.capacity),
        Some(capacity)
    );
    // A channel that does not exist on-chain, as far as node 2 knows: not relayed.
    let unknown = ChannelAnnouncement {
        channel: ChannelId::from(77),
        ..genuine
    };
    assert_eq!(
        net.gossip_verdict(0, 2, GossipMessage::ChannelAnnouncement(unknown).encode()),
        Some(Verdict::Ignore)
    );
    assert_eq!(announced(&net, 2, ChannelId::from(77)), None);
    // Node 2 announcing itself without a channel.
    let lonely = NodeAnnouncement::sign(
        &hoplite_htlc::testing::key(7, 2),
        config.token_network,
        net.now().as_secs(),
        "node 2".to_owned(),
        Vec::new(),
    );
    assert_eq!(lonely.node, net.address(2));
    assert_eq!(
        net.gossip_verdict(2, 1, GossipMessage::NodeAnnouncement(lonely).encode()),
        Some(Verdict::Ignore)
    );
    assert!(
        net.nodes[1]
            .view()
            .gossip()
            .node_announcement(net.address(2))
            .is_none()
    );
}

#[test]
fn a_partner_signature_that_is_not_its_own_is_refused() {
    let (mut net, channel) = network();
    let genuine = announced(&net, 1, channel).unwrap();
    let errors = net.inject_message(
        0,
        1,
        Message::AnnouncementSignature {
            channel,
            capacity: genuine.capacity,
            // Node 1's own signature, presented as node 0's.
            signature: genuine.signatures[1],
        },
    );
    assert_eq!(errors, [PeerError::BadSignature]);
    net.in_flight.clear();
}

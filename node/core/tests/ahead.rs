//! Routes searched ahead of a payment (`hoplite_node::ahead`): taken when nothing the search
//! depended on changed, and otherwise searched again, never used stale.

use alloy_primitives::{Address, B256};
use hoplite_gossip::GossipParams;
use hoplite_htlc::{Amount, BlockNumber, ChannelId, PrivateKey, TokenNetwork};
use hoplite_node::ahead::FoundRoute;
use hoplite_node::testkit::{Network, create_network};
use hoplite_node::{Config, Node, SharedView};
use hoplite_routing::Router;
use std::time::Duration;

/// A line 0 - 1 - 2 - 3 with 100,000 on both sides of every channel.
fn line() -> (Network, Vec<ChannelId>) {
    let mut net = create_network(4);
    let channels = (0..3)
        .map(|i| net.open_channel(i, i + 1, [100_000, 100_000]))
        .collect();
    (net, channels)
}

/// What node `payer` would search now to pay `amount` to node `payee`, searched.
fn search_ahead(net: &mut Network, payer: usize, payee: usize, amount: u64) -> FoundRoute {
    let (now, to) = (net.now(), net.address(payee));
    net.nodes[payer]
        .route_query(now, to, Amount::from(amount))
        .expect("the amount fits")
        .search(&mut Router::default())
}

/// Offers `found` to node 0, has it pay an invoice of node 3 for `amount`, and says whether
/// the payment took the offer; the payment must go through either way.
fn pay_with(net: &mut Network, found: FoundRoute, amount: u64) -> bool {
    let invoice = net.invoice(3, amount);
    let taken = net.nodes[0].routes_taken();
    net.nodes[0].offer_route(found);
    let now = net.now();
    let payment = net.nodes[0].pay(now, &invoice).expect("a valid invoice");
    net.settle();
    let took = net.nodes[0].routes_taken() - taken;
    net.claim_payment(&[0, 1, 2, 3], payment);
    took == 1
}

#[test]
fn a_route_searched_ahead_is_taken_when_nothing_changed() {
    let (mut net, _) = line();
    let found = search_ahead(&mut net, 0, 3, 1_000);
    assert!(pay_with(&mut net, found, 1_000));
    // And again after that payment taught the scorer, searched after it.
    let found = search_ahead(&mut net, 0, 3, 2_000);
    assert!(pay_with(&mut net, found, 2_000));
}

#[test]
fn a_route_searched_for_other_inputs_is_searched_again() {
    let (mut net, _) = line();
    // Another amount (so other fees, limits and exclusions).
    let found = search_ahead(&mut net, 0, 3, 1_000);
    assert!(!pay_with(&mut net, found, 1_001));
    // Another payee.
    let found = search_ahead(&mut net, 0, 2, 1_000);
    assert!(!pay_with(&mut net, found, 1_000));
    // Another payer's search.
    let found = search_ahead(&mut net, 1, 3, 1_000);
    assert!(!pay_with(&mut net, found, 1_000));
}

#[test]
fn a_route_searched_before_the_scorer_learned_is_searched_again() {
    let (mut net, _) = line();
    let found = search_ahead(&mut net, 0, 3, 1_000);
    // A payment completes meanwhile: the scorer learns from it.
    net.route_payment(&[0, 1, 2, 3], 500);
    assert!(!pay_with(&mut net, found, 1_000));
}

#[test]
fn a_route_searched_before_the_graph_changed_is_searched_again() {
    let (mut net, _) = line();
    let found = search_ahead(&mut net, 0, 3, 1_000);
    // A channel elsewhere opens (too small to take the payment): the graph changes, the
    // clock does not.
    net.open_channel(1, 3, [10, 10]);
    assert!(!pay_with(&mut net, found, 1_000));
}

#[test]
fn a_route_searched_for_another_time_or_offered_a_call_early_is_searched_again() {
    let (mut net, _) = line();
    // Searched for now, paid a second later (the scorer's time differs).
    let found = search_ahead(&mut net, 0, 3, 1_000);
    net.advance(Duration::from_secs(1));
    assert!(!pay_with(&mut net, found, 1_000));
    // Offered, then another call to the node comes first: the offer lapses with it.
    let found = search_ahead(&mut net, 0, 3, 1_000);
    net.nodes[0].offer_route(found);
    let now = net.now();
    net.nodes[0].handle_timeout(now);
    net.settle();
    let invoice = net.invoice(3, 1_000);
    let taken = net.nodes[0].routes_taken();
    let payment = net.nodes[0].pay(now, &invoice).expect("a valid invoice");
    net.settle();
    assert_eq!(net.nodes[0].routes_taken(), taken);
    net.claim_payment(&[0, 1, 2, 3], payment);
}

#[test]
fn a_route_searched_for_a_node_before_its_restart_is_searched_again() {
    // Two instances of one node following one shared view: the second stands for the first
    // restored after a crash, with a new scorer whose generations count from the start again
    // (here both are at the same generation, so only the instance tells them apart).
    let token_network = TokenNetwork {
        chain_id: 1,
        address: Address::repeat_byte(0xee),
    };
    let view = SharedView::new(token_network, GossipParams::default(), 1);
    let key = |n: u8| PrivateKey::from_bytes(&B256::repeat_byte(n)).expect("a valid key");
    let (now, block) = (Duration::from_secs(1_700_000_000), BlockNumber(1));
    let node = |n: u8| {
        Node::following(
            Config::new(token_network, 1),
            key(n),
            now,
            block,
            view.clone(),
        )
        .expect("a valid config")
    };
    let (mut payer, mut payee) = (node(1), node(2));
    let mut restored = node(1);
    let invoice = payee.create_invoice(now, Amount::from(10u64), Duration::from_secs(60));
    let search = |payer: &mut Node| {
        payer
            .route_query(now, payee.address(), Amount::from(10u64))
            .expect("the amount fits")
            .search(&mut Router::default())
    };
    // (The view has no channel: every search finds that the payer is unknown to it.)
    restored.offer_route(search(&mut payer));
    restored.pay(now, &invoice).expect("a valid invoice");
    assert_eq!(restored.routes_taken(), 0);
    // The same search offered to the instance it was made for is taken.
    let found = search(&mut payer);
    payer.offer_route(found);
    payer.pay(now, &invoice).expect("a valid invoice");
    assert_eq!(payer.routes_taken(), 1);
}

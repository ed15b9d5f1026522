//! The probabilistic scorer learns from payment outcomes and forgets with time, the router
//! follows what it learnt, and payments split when no single route can carry them.

use alloy_primitives::{Address, U256};
use hoplite_htlc::ChannelId;
use hoplite_routing::{
    ChannelDirection, NetworkGraph, NodeId, Payment, Policy, ProbabilisticParams,
    ProbabilisticScorer, RouteError, RouteHop, RouteParams, Router, Scorer, SplitParams,
    ZeroPenalty, find_route,
};
use std::time::Duration;

fn node(n: u8) -> NodeId {
    NodeId(Address::with_last_byte(n))
}

fn policy(base_fee: u64) -> Policy {
    Policy {
        base_fee,
        fee_millionths: 0,
        expiry_delta: 10,
        min_lock: 0,
        max_lock: u128::MAX,
        enabled: true,
    }
}

/// Channels `(id, a, b, capacity, fee)` with the same policy both ways.
fn graph(channels: &[(u64, u8, u8, u128, u64)]) -> NetworkGraph {
    let mut graph = NetworkGraph::new();
    for &(id, a, b, capacity, fee) in channels {
        let id = ChannelId(U256::from(id));
        graph.add_channel(id, node(a), node(b), capacity).unwrap();
        graph.update_policy(id, node(a), policy(fee)).unwrap();
        graph.update_policy(id, node(b), policy(fee)).unwrap();
    }
    graph
}

const HALF_LIFE: Duration = Duration::from_secs(3600);

fn scorer() -> ProbabilisticScorer {
    ProbabilisticScorer::new(
        ProbabilisticParams {
            half_life: HALF_LIFE,
            ..ProbabilisticParams::default()
        },
        7,
    )
}

/// Two routes from 1 to 4: via 2 (fee 10) and via 3 (fee 20).
fn diamond() -> NetworkGraph {
    graph(&[
        (1, 1, 2, 1_000_000, 0),
        (2, 2, 4, 1_000_000, 10),
        (3, 1, 3, 1_000_000, 0),
        (4, 3, 4, 1_000_000, 20),
    ])
}

#[test]
fn a_new_scorer_prices_by_a_uniform_prior_and_more_for_more() {
    let graph = diamond();
    let scorer = scorer();
    let hop = graph.graph().edge_weights().next().unwrap();
    let p = scorer.success_probability(hop, 250_000);
    assert!((p - 750_001.0 / 1_000_001.0).abs() < 1e-12, "{p}");
    let mut last = 0;
    for amount in (0..=1_000_000).step_by(50_000) {
        let penalty = scorer.penalty(hop, amount).unwrap();
        assert!(penalty >= last, "penalty falls at {amount}");
        last = penalty;
    }
    assert_eq!(scorer.penalty(hop, 1_000_001), None, "over capacity");
}

#[test]
fn a_failure_narrows_bounds_and_moves_the_route_until_it_decays() {
    let graph = diamond();
    let mut scorer = scorer();
    let params = RouteParams::default();
    let route = find_route(&graph, &scorer, node(1), node(4), 400_000, &params).unwrap();
    assert_eq!(route.hops[1].to, node(4));
    assert_eq!(route.hops[0].to, node(2), "the cheaper way first");

    // Node 2 could not forward 400,000 to node 4.
    scorer.report_failure(&route.hops, 1, Duration::ZERO);
    let (first, failed) = (route.hops[0], route.hops[1]);
    assert_eq!(
        scorer.bounds(first.direction, first.capacity),
        (400_010, 1_000_000),
        "the hop before had enough (its amount includes node 2's fee)"
    );
    assert_eq!(
        scorer.bounds(failed.direction, failed.capacity),
        (0, 399_999)
    );
    let retry = find_route(&graph, &scorer, node(1), node(4), 400_000, &params).unwrap();
    assert_eq!(retry.hops[0].to, node(3), "the other way after the failure");

    // One half-life later the learnt offsets are half as large.
    scorer.time_passed(HALF_LIFE);
    let (lower, upper) = scorer.bounds(failed.direction, failed.capacity);
    assert_eq!(lower, 0);
    assert!(upper.abs_diff(1_000_000 - 600_001 / 2) <= 1, "{upper}");
    // Long after, nothing is left of it, and the cheap way is back.
    scorer.time_passed(HALF_LIFE * 60);
    assert_eq!(scorer.known_directions(), 0);
    let later = find_route(&graph, &scorer, node(1), node(4), 400_000, &params).unwrap();
    assert_eq!(later.hops[0].to, node(2));
}

#[test]
fn a_success_moves_the_liquidity_it_used() {
    let graph = diamond();
    let mut scorer = scorer();
    let route = find_route(
        &graph,
        &scorer,
        node(1),
        node(4),
        300_000,
        &RouteParams::default(),
    )
    .unwrap();
    scorer.report_success(&route.hops, Duration::from_secs(5));
    for hop in &route.hops {
        assert_eq!(
            scorer.bounds(hop.direction, hop.capacity),
            (0, 1_000_000 - hop.amount),
            "had at least the amount, and sent it on"
        );
    }
    // Time never runs backwards: an older report does not undo decay.
    scorer.time_passed(Duration::ZERO);
    let hop = route.hops[0];
    assert_eq!(
        scorer.bounds(hop.direction, hop.capacity).1,
        1_000_000 - hop.amount
    );
}

#[test]
fn a_payment_no_single_route_carries_is_split() {
    // Two ways of 600 each; 1,000 to pay.
    let graph = graph(&[
        (1, 1, 2, 600, 0),
        (2, 2, 4, 600, 1),
        (3, 1, 3, 600, 0),
        (4, 3, 4, 600, 1),
    ]);
    let mut router = Router::default();
    let params = RouteParams::default();
    assert!(matches!(
        router.find_route(&graph, &ZeroPenalty, node(1), node(4), 1_000, &params),
        Err(RouteError::NoChannelFromPayer(1_000))
    ));
    let payment = pay(
        &mut router,
        &graph,
        &ZeroPenalty,
        1_000,
        &params,
        &SplitParams::default(),
    )
    .unwrap();
    assert_eq!(payment.amount(), 1_000);
    assert_eq!(payment.parts.len(), 2);
    let firsts: Vec<ChannelDirection> = payment.parts.iter().map(|p| p.hops[0].direction).collect();
    assert_ne!(firsts[0], firsts[1], "the parts take different ways");
    assert_eq!(payment.fee(), 2);

    // One part is not enough, and a fee limit of 1 leaves no room for two.
    let single = SplitParams {
        max_parts: 1,
        ..SplitParams::default()
    };
    assert!(pay(&mut router, &graph, &ZeroPenalty, 1_000, &params, &single).is_err());
    let tight = RouteParams {
        max_fee: Some(1),
        ..RouteParams::default()
    };
    assert!(
        pay(
            &mut router,
            &graph,
            &ZeroPenalty,
            1_000,
            &tight,
            &SplitParams::default()
        )
        .is_err()
    );
}

#[test]
fn an_unlikely_single_route_is_split_when_that_costs_less() {
    // Two equal ways of 1,000 each: 900 over one of them alone is unlikely.
    let graph = graph(&[
        (1, 1, 2, 1_000, 0),
        (2, 2, 4, 1_000, 0),
        (3, 1, 3, 1_000, 0),
        (4, 3, 4, 1_000, 0),
    ]);
    let scorer = ProbabilisticScorer::new(
        ProbabilisticParams {
            base_penalty: 0,
            base_penalty_millionths: 0,
            liquidity_penalty: 1_000,
            liquidity_penalty_millionths: 0,
            half_life: HALF_LIFE,
        },
        1,
    );
    let mut router = Router::default();
    let payment = pay(
        &mut router,
        &graph,
        &scorer,
        900,
        &RouteParams::default(),
        &SplitParams::default(),
    )
    .unwrap();
    assert_eq!(payment.parts.len(), 2, "{payment:?}");
    let single = router
        .find_route(
            &graph,
            &scorer,
            node(1),
            node(4),
            900,
            &RouteParams::default(),
        )
        .unwrap();
    assert!(payment.cost() < single.cost);
    assert!(
        payment.success_probability(&graph, &scorer)
            > single_probability(&graph, &scorer, &single.hops)
    );
}

/// Node 1 pays node 4.
fn pay<S: Scorer>(
    router: &mut Router,
    graph: &NetworkGraph,
    scorer: &S,
    amount: u128,
    params: &RouteParams,
    split: &SplitParams,
) -> Result<Payment, RouteError> {
    router.find_payment(graph, scorer, node(1), node(4), amount, params, split)
}

fn single_probability(
    graph: &NetworkGraph,
    scorer: &ProbabilisticScorer,
    hops: &[hoplite_routing::RouteHop],
) -> f64 {
    hops.iter()
        .map(|hop| {
            scorer.success_probability(graph.channel_direction(&hop.direction).unwrap(), hop.amount)
        })
        .product()
}

#[test]
fn generations_count_what_changes_a_search_and_nothing_else() {
    let mut graph = diamond();
    let mut scorer = scorer();
    let params = RouteParams::default();
    let before = (graph.generation(), scorer.generation());
    // Searching and the passing of time within a half-life change neither.
    let route = find_route(&graph, &scorer, node(1), node(4), 1_000, &params).unwrap();
    scorer.time_passed(HALF_LIFE / 2);
    assert_eq!((graph.generation(), scorer.generation()), before);
    // Each thing learnt does, and so does a prune.
    scorer.report_success(&route.hops, HALF_LIFE / 2);
    let learnt = scorer.generation();
    assert!(learnt > before.1);
    scorer.report_failure(&route.hops, 0, HALF_LIFE / 2);
    assert!(scorer.generation() > learnt);
    let failed = scorer.generation();
    scorer.time_passed(HALF_LIFE * 3);
    assert!(scorer.generation() > failed, "a half-life on: a prune");
    // Every change of the graph does.
    let id = ChannelId(U256::from(2));
    let mut last = graph.generation();
    for change in 0..3 {
        match change {
            0 => graph.update_policy(id, node(2), policy(11)).unwrap(),
            1 => graph.set_capacity(id, 5).unwrap(),
            _ => graph.remove_channel(id).unwrap(),
        }
        assert!(graph.generation() > last, "change {change}");
        last = graph.generation();
    }
}

#[test]
fn directions_that_share_a_filter_slot_are_told_apart_and_a_prune_keeps_the_rest() {
    // Channel ids 1 and 1 + 2^15 share a slot of the scorer's filter of known directions;
    // 2 has one of its own.
    let direction = |id: u64| ChannelDirection {
        channel: ChannelId::from(id),
        from_lower: true,
    };
    let hop = |id: u64| RouteHop {
        direction: direction(id),
        capacity: 1_000,
        to: node(2),
        amount: 400,
        expiry: 0,
    };
    let (one, twin, other) = (1, 1 + (1 << 15), 2);
    let mut scorer = scorer();
    scorer.report_failure(&[hop(one)], 0, Duration::ZERO);
    assert_eq!(scorer.bounds(direction(one), 1_000), (0, 399));
    assert_eq!(scorer.bounds(direction(twin), 1_000), (0, 1_000));
    assert_eq!(scorer.bounds(direction(other), 1_000), (0, 1_000));
    // Long after, `one` has decayed to nothing and `other` is learnt: the prune forgets
    // `one`, and what is still known is still found.
    let later = HALF_LIFE * 40;
    scorer.report_failure(&[hop(other)], 0, later);
    scorer.time_passed(later);
    assert_eq!(scorer.known_directions(), 1);
    assert_eq!(scorer.bounds(direction(other), 1_000), (0, 399));
    assert_eq!(scorer.bounds(direction(one), 1_000), (0, 1_000));
    scorer.report_failure(&[hop(twin)], 0, later);
    assert_eq!(scorer.bounds(direction(twin), 1_000), (0, 399));
}

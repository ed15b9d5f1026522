//! `find_route` against exhaustive search on small random graphs: every route it returns is
//! feasible and as cheap as the best simple path, and it finds one whenever one exists.
//!
//! The feasibility and cost rules are written out again here, from the `route` module docs,
//! independently of the router. Each case is built from a seed, which every failure prints;
//! `HOPLITE_ROUTE_SEED=n` reruns only case `n`.

use alloy_primitives::{Address, U256};
use hoplite_htlc::ChannelId;
use hoplite_routing::route::RouteHop;
use hoplite_routing::{
    DirectedChannel, NetworkGraph, NodeId, Policy, ProbabilisticParams, ProbabilisticScorer,
    RouteError, RouteParams, Router, Scorer, SplitParams, ZeroPenalty, find_route,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;

/// One channel direction of the test's own model of the graph.
#[derive(Clone, Debug)]
struct Edge {
    from: usize,
    to: usize,
    channel: DirectedChannel,
}

#[derive(Clone)]
struct Case {
    nodes: Vec<NodeId>,
    edges: Vec<Edge>,
    payer: usize,
    payee: usize,
    amount: u128,
    params: RouteParams,
}

fn node(i: usize) -> NodeId {
    NodeId(Address::with_last_byte(i as u8 + 1))
}

fn case(seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.random_range(3..=8);
    // A random line through every node first (so that long routes are common), then random
    // extra channels.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let nodes: Vec<NodeId> = (0..n).map(node).collect();
    let mut edges = Vec::new();
    // Few distinct values, so that ties, thresholds and parallel channels are common.
    let amounts = [0u128, 10, 50, 100, 105, 110, 120, 150, 200, 400, 1_000];
    for c in 0..n - 1 + rng.random_range(0..=8) {
        let (a, b) = if c + 1 < n {
            (order[c], order[c + 1])
        } else {
            let a = rng.random_range(0..n);
            (a, (a + rng.random_range(1..n)) % n)
        };
        let capacity = amounts[rng.random_range(5..amounts.len())];
        let id = ChannelId(U256::from(c + 1));
        for (from, to) in [(a, b), (b, a)] {
            if rng.random_bool(0.1) {
                continue; // this side never announced a policy
            }
            let policy = Policy {
                base_fee: [0, 0, 1, 3, 10][rng.random_range(0..5)],
                fee_millionths: [0, 0, 1_000, 20_000, 100_000, 200_000][rng.random_range(0..6)],
                expiry_delta: [0, 6, 40, 144][rng.random_range(0..4)],
                min_lock: [0, 0, 0, 0, 0, 0, 0, 0, 100, 105, 110, 130][rng.random_range(0..12)],
                max_lock: [u128::MAX, u128::MAX, u128::MAX, u128::MAX, 100, 120, 300]
                    [rng.random_range(0..7)],
                enabled: rng.random_bool(0.95),
            };
            edges.push(Edge {
                from,
                to,
                channel: DirectedChannel {
                    channel: id,
                    capacity,
                    policy,
                    from_lower: nodes[from] < nodes[to],
                },
            });
        }
    }
    // Half the time the ends of the line, which only long routes join (unless extras do).
    let (payer, payee) = if rng.random_bool(0.5) {
        (order[0], order[n - 1])
    } else {
        let payer = rng.random_range(0..n);
        (payer, (payer + rng.random_range(1..n)) % n)
    };
    let mut params = RouteParams {
        max_hops: [1, 2, 3, 4, 6, 6][rng.random_range(0..6)],
        max_total_expiry: [1008, 1008, 300, 200, 150, 100][rng.random_range(0..6)],
        final_expiry_delta: [0, 10, 42][rng.random_range(0..3)],
        max_fee: [None, None, None, Some(0), Some(5), Some(20), Some(100)][rng.random_range(0..7)],
        expiry_risk_per_billion: [0, 15, 10_000_000][rng.random_range(0..3)],
        ..RouteParams::default()
    };
    if !edges.is_empty() && rng.random_bool(0.2) {
        let channel = edges[rng.random_range(0..edges.len())].channel.channel;
        params.excluded_channels.insert(channel);
    }
    if rng.random_bool(0.2) {
        params.excluded_nodes.insert(nodes[rng.random_range(0..n)]);
    }
    Case {
        nodes,
        amount: amounts[rng.random_range(1..8)],
        edges,
        payer,
        payee,
        params,
    }
}

fn graph_of(case: &Case) -> NetworkGraph {
    let mut graph = NetworkGraph::new();
    let mut added = BTreeSet::new();
    for edge in &case.edges {
        let id = edge.channel.channel;
        if added.insert(id) {
            graph
                .add_channel(
                    id,
                    case.nodes[edge.from],
                    case.nodes[edge.to],
                    edge.channel.capacity,
                )
                .unwrap();
        }
        graph
            .update_policy(id, case.nodes[edge.from], edge.channel.policy)
            .unwrap();
    }
    graph
}

/// A scorer that learnt from a few random reports, some of them hours old.
fn trained_scorer(case: &Case, seed: u64) -> ProbabilisticScorer {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut scorer = ProbabilisticScorer::new(
        ProbabilisticParams {
            base_penalty: rng.random_range(0..5),
            base_penalty_millionths: rng.random_range(0..10_000),
            liquidity_penalty: rng.random_range(0..20),
            liquidity_penalty_millionths: rng.random_range(0..200_000),
            half_life: Duration::from_secs(3600),
        },
        seed,
    );
    for step in 0..rng.random_range(0..6) {
        if case.edges.is_empty() {
            break;
        }
        let edge = &case.edges[rng.random_range(0..case.edges.len())];
        let hop = RouteHop {
            direction: edge.channel.direction(),
            capacity: edge.channel.capacity,
            to: case.nodes[edge.to],
            amount: rng.random_range(1..=edge.channel.capacity.max(1)),
            expiry: 0,
        };
        let now = Duration::from_secs(600 * step);
        if rng.random_bool(0.5) {
            scorer.report_failure(&[hop], 0, now);
        } else {
            scorer.report_success(&[hop], now);
        }
    }
    scorer.time_passed(Duration::from_secs(rng.random_range(3_000..10_000)));
    scorer
}

/// The rules of the `route` module docs, applied to one path: its cost, or `None` if it is not
/// feasible.
fn evaluate<S: Scorer>(
    case: &Case,
    scorer: &S,
    path: &[&Edge],
) -> Option<(u128, Vec<(u128, u32)>)> {
    let p = &case.params;
    let mut visited = BTreeSet::from([case.payer]);
    if path.is_empty()
        || path.len() > usize::from(p.max_hops)
        || path[0].from != case.payer
        || path.last().unwrap().to != case.payee
        || !path.iter().all(|e| visited.insert(e.to))
        || path.windows(2).any(|w| w[0].to != w[1].from)
    {
        return None;
    }
    let mut hops = vec![(0, 0); path.len()];
    let mut expiry = p.final_expiry_delta;
    let mut carried = case.amount;
    let mut cost = 0u128;
    for j in (0..path.len()).rev() {
        let edge = &path[j].channel;
        let policy = &edge.policy;
        let intermediate = j > 0;
        if !policy.enabled
            || p.excluded_channels.contains(&edge.channel)
            || (intermediate && p.excluded_nodes.contains(&case.nodes[path[j].from]))
            || carried < policy.min_lock
            || carried > policy.max_lock
            || carried > edge.capacity
        {
            return None;
        }
        cost += u128::from(scorer.penalty(edge, carried)?);
        hops[j] = (carried, expiry);
        if intermediate {
            let fee = policy.fee(carried)?;
            cost += fee
                + carried * u128::from(p.expiry_risk_per_billion) * u128::from(policy.expiry_delta)
                    / 1_000_000_000;
            carried += fee;
            expiry += u32::from(policy.expiry_delta);
        }
    }
    let fee = carried - case.amount;
    if expiry > p.max_total_expiry || p.max_fee.is_some_and(|max| fee > max) {
        return None;
    }
    Some((cost, hops))
}

/// The least cost over every simple path, by depth-first enumeration.
fn exhaustive<S: Scorer>(case: &Case, scorer: &S) -> Option<u128> {
    fn walk<'a, S: Scorer>(
        case: &'a Case,
        scorer: &S,
        path: &mut Vec<&'a Edge>,
        best: &mut Option<u128>,
    ) {
        let at = path.last().map_or(case.payer, |e| e.to);
        if at == case.payee {
            if let Some((cost, _)) = evaluate(case, scorer, path) {
                *best = Some(best.map_or(cost, |b| b.min(cost)));
            }
            return;
        }
        if path.len() == usize::from(case.params.max_hops) {
            return;
        }
        for edge in case.edges.iter().filter(|e| e.from == at) {
            if edge.to == case.payer || path.iter().any(|e| e.to == edge.to) {
                continue;
            }
            path.push(edge);
            walk(case, scorer, path, best);
            path.pop();
        }
    }
    let mut best = None;
    walk(case, scorer, &mut Vec::new(), &mut best);
    best
}

/// The model's edges a route's hops took.
fn edges_of<'a>(case: &'a Case, hops: &[RouteHop]) -> Vec<&'a Edge> {
    hops.iter()
        .map(|hop| {
            case.edges
                .iter()
                .find(|e| e.channel.direction() == hop.direction && case.nodes[e.to] == hop.to)
                .expect("a hop is an edge")
        })
        .collect()
}

fn check<S: Scorer>(seed: u64, case: &Case, scorer: &S, which: &str) {
    let graph = graph_of(case);
    let found = find_route(
        &graph,
        scorer,
        case.nodes[case.payer],
        case.nodes[case.payee],
        case.amount,
        &case.params,
    );
    let best = exhaustive(case, scorer);
    match (found, best) {
        (Err(RouteError::SearchLimit(n)), _) => panic!("seed {seed} ({which}): search limit {n}"),
        (Err(_), None) => {}
        (Err(error), Some(best)) => {
            panic!("seed {seed} ({which}): router says {error}, exhaustive finds cost {best}")
        }
        (Ok(route), None) => {
            panic!("seed {seed} ({which}): router returns {route:?}, exhaustive finds nothing")
        }
        (Ok(route), Some(best)) => {
            assert!(
                route.cheapest,
                "seed {seed} ({which}): relaxed search on a small graph"
            );
            let path = edges_of(case, &route.hops);
            let (cost, hops) = evaluate(case, scorer, &path)
                .unwrap_or_else(|| panic!("seed {seed} ({which}): infeasible route {route:?}"));
            assert_eq!(
                route
                    .hops
                    .iter()
                    .map(|h| (h.amount, h.expiry))
                    .collect::<Vec<_>>(),
                hops,
                "seed {seed} ({which}): hop amounts and expiries"
            );
            assert_eq!(route.cost, cost, "seed {seed} ({which}): stated cost");
            assert_eq!(cost, best, "seed {seed} ({which}): not the cheapest");
            assert_eq!(route.fee, route.hops[0].amount - case.amount);
        }
    }
}

const CASES: u64 = 20_000;

fn seeds() -> Vec<u64> {
    match std::env::var("HOPLITE_ROUTE_SEED") {
        Ok(seed) => vec![seed.parse().expect("HOPLITE_ROUTE_SEED is a number")],
        Err(_) => (0..CASES).collect(),
    }
}

#[test]
fn zero_penalty_routes_are_feasible_and_cheapest() {
    for seed in seeds() {
        check(seed, &case(seed), &ZeroPenalty, "zero penalty");
    }
}

#[test]
fn probabilistic_routes_are_feasible_and_cheapest() {
    for seed in seeds() {
        let case = case(seed);
        check(seed, &case, &trained_scorer(&case, seed), "probabilistic");
    }
}

#[test]
fn cases_cover_the_interesting_outcomes() {
    // Guards the generator: the exactness tests prove little if nearly every case is trivial.
    let (mut routed, mut multi_hop, mut none) = (0, 0, 0);
    for seed in 0..CASES {
        let case = case(seed);
        match exhaustive(&case, &ZeroPenalty) {
            Some(_) => routed += 1,
            None => none += 1,
        }
        let graph = graph_of(&case);
        if let Ok(route) = find_route(
            &graph,
            &ZeroPenalty,
            case.nodes[case.payer],
            case.nodes[case.payee],
            case.amount,
            &case.params,
        ) {
            multi_hop += usize::from(route.hops.len() > 1);
        }
    }
    assert!(
        routed > 5_000 && none > 5_000,
        "routed {routed}, none {none}"
    );
    assert!(
        multi_hop > 2_500,
        "multi-hop routes {multi_hop} (routed {routed}, none {none})"
    );
}

/// A hand-built case: channel directions `(from, to, base_fee, expiry_delta, min_lock)` with
/// no proportional fee, capacity 1,000, each its own channel; node 0 pays 100 to node 3.
fn gadget(edges: &[(usize, usize, u64, u16, u128)], params: RouteParams) -> Case {
    let count = edges.iter().map(|e| e.0.max(e.1) + 1).max().unwrap_or(0);
    let nodes: Vec<NodeId> = (0..count).map(node).collect();
    let edges = edges
        .iter()
        .enumerate()
        .map(|(c, &(from, to, base_fee, expiry_delta, min_lock))| Edge {
            from,
            to,
            channel: DirectedChannel {
                channel: ChannelId(U256::from(c + 1)),
                capacity: 1_000,
                policy: Policy {
                    base_fee,
                    fee_millionths: 0,
                    expiry_delta,
                    min_lock,
                    max_lock: u128::MAX,
                    enabled: true,
                },
                from_lower: nodes[from] < nodes[to],
            },
        })
        .collect();
    Case {
        nodes,
        edges,
        payer: 0,
        payee: 3,
        amount: 100,
        params: RouteParams {
            expiry_risk_per_billion: 0,
            ..params
        },
    }
}

// In each gadget, node 2 can reach the payee (3) two ways: a cheap one that is worse in one
// respect, and a dearer one. Upstream, that respect decides, so the cheap way must not hide
// the dear one. Each fails if the router's dominance test ignores that respect.

#[test]
fn a_cheaper_but_later_expiring_path_does_not_hide_one_within_the_expiry_limit() {
    let case = gadget(
        &[
            (0, 1, 0, 0, 0),
            (1, 2, 0, 100, 0),
            (2, 3, 0, 144, 0), // free, but 144 blocks
            (2, 3, 5, 0, 0),
        ],
        RouteParams {
            final_expiry_delta: 42,
            max_total_expiry: 200,
            ..RouteParams::default()
        },
    );
    assert_eq!(exhaustive(&case, &ZeroPenalty), Some(5));
    check(0, &case, &ZeroPenalty, "expiry gadget");
}

#[test]
fn a_cheaper_but_longer_path_does_not_hide_one_within_the_hop_limit() {
    let case = gadget(
        &[
            (0, 1, 0, 0, 0),
            (1, 2, 0, 0, 0),
            (2, 4, 0, 0, 0), // free, but one hop more
            (4, 3, 0, 0, 0),
            (2, 3, 5, 0, 0),
        ],
        RouteParams {
            max_hops: 3,
            ..RouteParams::default()
        },
    );
    assert_eq!(exhaustive(&case, &ZeroPenalty), Some(5));
    check(0, &case, &ZeroPenalty, "hops gadget");
}

#[test]
fn a_cheaper_smaller_amount_does_not_hide_one_that_meets_a_minimum_upstream() {
    // Upstream, 1 -> 2 forwards only 104 or more: the free way gets there with 100.
    let case = gadget(
        &[
            (0, 1, 0, 0, 0),
            (1, 2, 0, 0, 104),
            (2, 3, 0, 0, 0),
            (2, 3, 5, 0, 0),
        ],
        RouteParams::for_amount(100),
    );
    assert_eq!(exhaustive(&case, &ZeroPenalty), Some(5));
    check(0, &case, &ZeroPenalty, "min_lock gadget");
}

#[test]
fn a_label_prunes_only_if_its_whole_path_meets_the_minimums() {
    // Node 2 reaches the payee via 1 (2 -> 1 -> 3, cost 10, arriving with 110) or via 4
    // (2 -> 4 -> 3, cost 11, arriving with 111). The first is better at node 2 in every
    // respect and 110 meets every minimum, but it passes node 1 carrying just 100: the only
    // route, 0 -> 1 -> 2 -> 4 -> 3, also passes node 1, and joining 0 -> 1 (minimum 105) to the
    // first way's tail from node 1 falls short. So the first must not prune the second.
    let case = gadget(
        &[
            (0, 1, 0, 0, 105),
            (1, 3, 0, 0, 0),
            (2, 1, 10, 0, 0),
            (1, 2, 1, 0, 0),
            (2, 4, 11, 0, 0),
            (4, 3, 0, 0, 0),
        ],
        RouteParams::default(),
    );
    assert_eq!(exhaustive(&case, &ZeroPenalty), Some(12));
    check(0, &case, &ZeroPenalty, "whole-path gadget");
}

#[test]
fn multi_path_payments_are_feasible_together() {
    let mut router = Router::default();
    let (mut split, mut routed, mut only_split) = (0, 0, 0);
    for seed in seeds() {
        let case = case(seed);
        let scorer = trained_scorer(&case, seed);
        let graph = graph_of(&case);
        let limits = SplitParams {
            max_parts: 3,
            split_below: 0.9,
        };
        let payment = router.find_payment(
            &graph,
            &scorer,
            case.nodes[case.payer],
            case.nodes[case.payee],
            case.amount,
            &case.params,
            &limits,
        );
        let single = exhaustive(&case, &scorer);
        only_split += usize::from(single.is_none() && payment.is_ok());
        let Ok(payment) = payment else {
            assert!(
                single.is_none(),
                "seed {seed}: no payment, but a single route exists"
            );
            continue;
        };
        routed += 1;
        split += usize::from(payment.parts.len() > 1);
        assert!(payment.parts.len() <= limits.max_parts, "seed {seed}");
        assert_eq!(payment.amount(), case.amount, "seed {seed}: parts add up");
        if let Some(max) = case.params.max_fee {
            assert!(
                payment.fee() <= max,
                "seed {seed}: fee limit over all parts"
            );
        }
        // Each part obeys every rule on its own...
        let mut totals = std::collections::BTreeMap::new();
        for part in &payment.parts {
            let part_case = Case {
                amount: part.amount,
                params: RouteParams {
                    max_fee: None,
                    ..case.params.clone()
                },
                ..case.clone()
            };
            let path = edges_of(&case, &part.hops);
            assert!(
                evaluate(&part_case, &ZeroPenalty, &path).is_some(),
                "seed {seed}: infeasible part {part:?}"
            );
            for (hop, edge) in part.hops.iter().zip(&path) {
                totals
                    .entry(hop.direction)
                    .or_insert((0, edge.channel.capacity))
                    .0 += hop.amount;
            }
        }
        // ...and together they fit in every channel they share.
        for (direction, (total, capacity)) in totals {
            assert!(
                total <= capacity,
                "seed {seed}: {direction:?} carries {total}"
            );
        }
    }
    if seeds().len() > 1 {
        assert!(
            split > 1_000,
            "only {split} of {routed} payments were split"
        );
        assert!(
            only_split > 300,
            "only {only_split} payments needed a split to go through at all"
        );
    }
}

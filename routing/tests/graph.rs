//! The network graph under incremental updates, and the snapshot and query parsers on small
//! inputs.

use alloy_primitives::{Address, U256};
use hoplite_htlc::ChannelId;
use hoplite_routing::queries::{self, Query};
use hoplite_routing::snapshot::{self, SnapshotError};
use hoplite_routing::{GraphError, NetworkGraph, NodeId, Policy};

fn node(n: u8) -> NodeId {
    NodeId(Address::repeat_byte(n))
}

fn channel(n: u64) -> ChannelId {
    ChannelId(U256::from(n))
}

fn policy(base_fee: u64) -> Policy {
    Policy {
        base_fee,
        fee_millionths: 100,
        expiry_delta: 40,
        min_lock: 1,
        max_lock: 1_000_000,
        enabled: true,
    }
}

#[test]
fn a_node_sends_on_the_directions_it_announced() {
    let mut graph = NetworkGraph::new();
    for (id, a, b) in [(1, 1, 2), (2, 2, 3), (3, 3, 1)] {
        graph
            .add_channel(channel(id), node(a), node(b), 500)
            .unwrap();
    }
    let from = |graph: &NetworkGraph, n: u8| -> Vec<ChannelId> {
        let mut ids: Vec<_> = graph.directions_from(&node(n)).map(|d| d.channel).collect();
        ids.sort();
        ids
    };
    assert!(from(&graph, 2).is_empty(), "no policy announced yet");
    graph.update_policy(channel(1), node(2), policy(5)).unwrap();
    graph
        .update_policy(
            channel(2),
            node(2),
            Policy {
                enabled: false,
                ..policy(5)
            },
        )
        .unwrap();
    graph.update_policy(channel(2), node(3), policy(5)).unwrap();
    assert_eq!(
        from(&graph, 2),
        [channel(1), channel(2)],
        "disabled ones included"
    );
    assert_eq!(from(&graph, 3), [channel(2)]);
    assert!(from(&graph, 1).is_empty());
    assert!(from(&graph, 9).is_empty(), "not in the graph");
}

#[test]
fn channels_come_and_go_with_their_nodes() {
    let mut graph = NetworkGraph::new();
    graph
        .add_channel(channel(1), node(1), node(2), 500)
        .unwrap();
    graph
        .add_channel(channel(2), node(2), node(3), 700)
        .unwrap();
    assert_eq!((graph.node_count(), graph.channel_count()), (3, 2));
    // No policy yet: no edge to route over.
    assert_eq!(graph.edge_count(), 0);
    graph.update_policy(channel(1), node(2), policy(5)).unwrap();
    graph.update_policy(channel(1), node(2), policy(6)).unwrap();
    graph.update_policy(channel(1), node(1), policy(7)).unwrap();
    assert_eq!(graph.edge_count(), 2, "a newer policy replaces, not adds");
    let view = graph.channel(&channel(1)).unwrap();
    assert_eq!(view.ends, [node(1), node(2)]);
    assert_eq!(view.policies.map(|p| p.unwrap().base_fee), [7, 6]);
    let edge = graph
        .graph()
        .edge_weights()
        .find(|e| e.policy.base_fee == 6)
        .unwrap();
    assert_eq!((edge.channel, edge.capacity), (channel(1), 500));

    graph.remove_channel(channel(1)).unwrap();
    assert_eq!(
        (
            graph.node_count(),
            graph.channel_count(),
            graph.edge_count()
        ),
        (2, 1, 0)
    );
    assert!(
        graph.node_index(&node(1)).is_none(),
        "node 1 left with its last channel"
    );
    assert!(graph.node_index(&node(2)).is_some());
}

#[test]
fn bad_updates_are_refused_and_change_nothing() {
    let mut graph = NetworkGraph::new();
    graph
        .add_channel(channel(1), node(1), node(2), 500)
        .unwrap();
    graph
        .add_channel(channel(2), node(3), node(4), 500)
        .unwrap();
    assert_eq!(
        graph.add_channel(channel(1), node(5), node(6), 1),
        Err(GraphError::ChannelExists(channel(1)))
    );
    assert_eq!(
        graph.add_channel(channel(3), node(5), node(5), 1),
        Err(GraphError::SelfChannel(channel(3)))
    );
    assert_eq!(
        graph.update_policy(channel(9), node(1), policy(1)),
        Err(GraphError::UnknownChannel(channel(9)))
    );
    // Node 3 exists, but is not an end of channel 1; node 7 doesn't exist at all.
    for outsider in [node(3), node(7)] {
        assert_eq!(
            graph.update_policy(channel(1), outsider, policy(1)),
            Err(GraphError::NotAnEnd {
                channel: channel(1),
                node: outsider
            })
        );
    }
    assert_eq!(
        graph.remove_channel(channel(9)),
        Err(GraphError::UnknownChannel(channel(9)))
    );
    assert_eq!(
        (
            graph.node_count(),
            graph.channel_count(),
            graph.edge_count()
        ),
        (4, 2, 0)
    );
}

#[test]
fn fees_round_down_and_never_wrap() {
    let p = Policy {
        base_fee: 1000,
        fee_millionths: 499,
        ..policy(0)
    };
    assert_eq!(p.fee(0), Some(1000));
    assert_eq!(p.fee(2004), Some(1000)); // 2004 × 499 / 10⁶ = 0.99…
    assert_eq!(p.fee(2_005_000), Some(1000 + 1000));
    assert_eq!(p.fee(u128::MAX), None);
    let free = Policy {
        base_fee: 0,
        fee_millionths: 0,
        ..p
    };
    assert_eq!(free.fee(u128::MAX), Some(0));
}

const NODES: &str = "idx\tnode_id\talias
0\t03864ef025fde8fb587d989186ce6a4a186895ee44a926bfc370e2c366597a3f8f\tACINQ
1\t0217890e3aad8d35bc054f43acc00084b25229ecff0ab68debd82883ad65ee8266\t
2\t02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tthird
";
const EDGES: &str = "chan_idx\tdir\tsrc\tdst\tcapacity_sat\tenabled\thtlc_min_msat\thtlc_max_msat\tfee_base_msat\tfee_ppm\tcltv_delta
0\t0\t1\t0\t9093802\t1\t1\t4092210000\t0\t11000\t34
0\t1\t0\t1\t9093802\t1\t0\t1000000\t1000\t499\t144
1\t0\t2\t1\t20000\t1\t1000\t19800000\t1\t1\t80
1\t1\t1\t2\t20000\t0\t0\t0\t0\t0\t0
";

fn parse(nodes: &str, edges: &str) -> Result<snapshot::Snapshot, SnapshotError> {
    snapshot::parse(nodes.as_bytes(), edges.as_bytes())
}

#[test]
fn a_snapshot_parses_into_the_graph() {
    let s = parse(NODES, EDGES).unwrap();
    assert_eq!(s.nodes.len(), 3);
    assert_eq!(
        (
            s.graph.node_count(),
            s.graph.channel_count(),
            s.graph.edge_count()
        ),
        (3, 2, 4)
    );
    let acinq = s.nodes[0];
    assert_eq!(
        acinq,
        snapshot::node_id_of(
            &alloy_primitives::hex::decode(
                "03864ef025fde8fb587d989186ce6a4a186895ee44a926bfc370e2c366597a3f8f"
            )
            .unwrap()
        )
    );
    let view = s.graph.channel(&channel(0)).unwrap();
    assert_eq!(view.ends, [s.nodes[1], acinq]);
    assert_eq!(view.capacity, 9_093_802_000, "capacity in msat");
    assert_eq!(
        view.policies[1],
        Some(Policy {
            base_fee: 1000,
            fee_millionths: 499,
            expiry_delta: 144,
            min_lock: 0,
            max_lock: 1_000_000,
            enabled: true,
        })
    );
    let disabled = s.graph.channel(&channel(1)).unwrap().policies[1].unwrap();
    assert!(!disabled.enabled);
}

#[test]
fn malformed_snapshots_are_refused_with_the_line() {
    let with_edge = |row: &str| format!("{}{row}\n", EDGES);
    let cases: Vec<(String, String, &str)> = vec![
        (
            NODES.replace("idx\t", "index\t"),
            EDGES.into(),
            "Nodes: unexpected header",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t0\t1\t5"),
            "Edges line 6: 5 columns",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t0\t1\tlots\t1\t0\t0\t0\t0\t0"),
            "Edges line 6: column capacity_sat",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t0\t1\t5\t2\t0\t0\t0\t0\t0"),
            "Edges line 6: column enabled",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t0\t1\t5\t1\t0\t0\t0\t0\t70000"),
            "Edges line 6: column cltv_delta",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t0\t9\t5\t1\t0\t0\t0\t0\t0"),
            "Edges line 6: unknown node index 9",
        ),
        (
            NODES.into(),
            with_edge("0\t1\t0\t2\t9093802\t1\t0\t0\t0\t0\t0"),
            "Edges line 6: the two rows of channel 0 disagree",
        ),
        (
            NODES.into(),
            with_edge("2\t0\t1\t1\t5\t1\t0\t0\t0\t0\t0"),
            "edges line 6: channel",
        ),
        (
            NODES.replace("\n1\t", "\n7\t"),
            EDGES.into(),
            "Nodes line 3: node index 7, expected 1",
        ),
        (
            NODES.replace("ACINQ", "\t"),
            EDGES.into(),
            "Nodes line 2: 4 columns",
        ),
        (
            NODES.replace("03864e", "zz864e"),
            EDGES.into(),
            "Nodes line 2: column node_id",
        ),
    ];
    for (nodes, edges, expected) in cases {
        let error = parse(&nodes, &edges).expect_err(expected).to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    // A path that doesn't exist names the path.
    let missing = std::path::Path::new("no/such/file.tsv.gz");
    let error = snapshot::load(missing, missing).unwrap_err();
    assert!(matches!(error, SnapshotError::Io { .. }) && error.to_string().starts_with("no/such"));
}

#[test]
fn generated_queries_follow_the_rules_and_the_seed() {
    let s = parse(NODES, EDGES).unwrap();
    let queries = queries::generate(&s, 200, 7);
    assert_eq!(queries.len(), 200);
    assert_eq!(
        queries,
        queries::generate(&s, 200, 7),
        "same seed, same queries"
    );
    assert_ne!(queries, queries::generate(&s, 200, 8));
    // Enabled edges: 1→0, 0→1, 2→1. Node 2 never receives, so it is never a payee.
    for q in &queries {
        assert_ne!(q.payer, q.payee);
        assert_ne!(q.payee, 2);
        assert!(
            (1_000_000..=1_000_000_000).contains(&q.amount_msat),
            "{q:?}"
        );
    }
    assert!(queries.iter().any(|q| q.payer == 2));
    // Log-uniform: about as many below 31,623 sat (the geometric middle) as above.
    let low = queries
        .iter()
        .filter(|q| q.amount_msat < 31_623_000)
        .count();
    assert!((70..=130).contains(&low), "{low} of 200 below the middle");
}

#[test]
fn queries_round_trip_through_the_file_format() {
    let s = parse(NODES, EDGES).unwrap();
    let queries = queries::generate(&s, 20, 1);
    let mut file = Vec::new();
    queries::write(&s, &queries, &mut file).unwrap();
    assert_eq!(queries::read(&s, file.as_slice()).unwrap(), queries);

    let key = |i: usize| s.public_keys[i].clone();
    let bad = [
        (format!("{}\t{}", key(0), key(1)), "line 1: expected"),
        (format!("{}\t02ff\t5", key(0)), "line 1: node \"02ff\""),
        (
            format!("\n{}\t{}\t0", key(0), key(1)),
            "line 2: amount \"0\"",
        ),
        (format!("{}\t{}\t-3", key(0), key(1)), "line 1: amount"),
    ];
    for (text, expected) in bad {
        let error = queries::read(&s, text.as_bytes()).unwrap_err();
        assert!(
            error.to_string().starts_with(expected),
            "{error} / {expected}"
        );
    }
    let one = format!("{}\t{}\t5000\n\n", key(2), key(0));
    assert_eq!(
        queries::read(&s, one.as_bytes()).unwrap(),
        vec![Query {
            payer: 2,
            payee: 0,
            amount_msat: 5000
        }]
    );
}

//! Who has channels with whom: generated (scale-free, hub-and-spoke) or taken from a real
//! Lightning snapshot. A [`Plan`] is pure data; the simulation opens its channels on-chain.

use crate::config::{NodeModel, Topology};
use petgraph::graph::{DiGraph, NodeIndex};
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, BTreeSet};

/// One channel to open: `opener` opens it and deposits `deposits[0]`, `partner` deposits
/// `deposits[1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedChannel {
    /// Who opens it.
    pub opener: usize,
    /// The other end.
    pub partner: usize,
    /// What each deposits, opener first.
    pub deposits: [u64; 2],
}

/// The nodes (by index) and the channels between them.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// How many nodes.
    pub nodes: usize,
    /// The channels, in the order they are opened.
    pub channels: Vec<PlannedChannel>,
    /// Metering customers and the node each pays (its ISP), in order of preference.
    pub customers: Vec<(usize, usize)>,
}

/// Why a topology could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The snapshot did not load.
    #[error(transparent)]
    Snapshot(#[from] hoplite_routing::snapshot::SnapshotError),
    /// Nothing left to simulate.
    #[error("the topology has no channel")]
    Empty,
}

impl Plan {
    /// Builds the topology `topology` describes.
    pub fn build(
        topology: &Topology,
        node: &NodeModel,
        rng: &mut StdRng,
    ) -> Result<Self, TopologyError> {
        let split = |capacity: u64| {
            let opener = ((capacity as f64 * node.deposit_split).round() as u64).clamp(1, capacity);
            [opener, capacity - opener]
        };
        let plan = match topology {
            Topology::ScaleFree {
                nodes,
                edges_per_node,
            } => scale_free(*nodes, *edges_per_node, rng, |_| {
                split(node.channel_capacity)
            }),
            Topology::HubAndSpoke {
                isps,
                customers_per_isp,
            } => hub_and_spoke(*isps, *customers_per_isp, |backbone| {
                // A backbone link carries its ISPs' customers' traffic.
                let factor = if backbone {
                    *customers_per_isp as u64
                } else {
                    1
                };
                split(node.channel_capacity.saturating_mul(factor))
            }),
            Topology::Snapshot {
                nodes_file,
                edges_file,
                largest_component,
                msat_per_unit,
            } => {
                let snapshot = hoplite_routing::snapshot::load(nodes_file, edges_file)?;
                from_snapshot(&snapshot, *largest_component, |capacity_msat| {
                    let units = u64::try_from(capacity_msat / u128::from(*msat_per_unit))
                        .unwrap_or(u64::MAX);
                    split(units.max(2))
                })
            }
        };
        if plan.channels.is_empty() {
            return Err(TopologyError::Empty);
        }
        Ok(plan)
    }

    /// How many channels each node has.
    pub fn degrees(&self) -> Vec<usize> {
        let mut degrees = vec![0; self.nodes];
        for channel in &self.channels {
            degrees[channel.opener] += 1;
            degrees[channel.partner] += 1;
        }
        degrees
    }

    /// Picks `n` metering customers among the nodes `eligible` allows: on a hub-and-spoke
    /// topology its customers (one per ISP first), on another the nodes of lowest degree (ties
    /// by index), each paying its best-connected neighbour.
    pub fn pick_customers(&mut self, n: usize, eligible: impl Fn(usize) -> bool) {
        if !self.customers.is_empty() {
            self.customers
                .retain(|&(customer, isp)| eligible(customer) && eligible(isp));
            self.customers.truncate(n);
            return;
        }
        let degrees = self.degrees();
        let mut neighbours: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for c in &self.channels {
            neighbours.entry(c.opener).or_default().insert(c.partner);
            neighbours.entry(c.partner).or_default().insert(c.opener);
        }
        let mut by_degree: Vec<usize> = (0..self.nodes)
            .filter(|&i| degrees[i] > 0 && eligible(i))
            .collect();
        by_degree.sort_by_key(|&i| (degrees[i], i));
        self.customers = by_degree
            .into_iter()
            .filter_map(|customer| {
                let isp = neighbours[&customer]
                    .iter()
                    .copied()
                    .filter(|&j| eligible(j))
                    .max_by_key(|&j| (degrees[j], std::cmp::Reverse(j)))?;
                Some((customer, isp))
            })
            .take(n)
            .collect();
    }
}

/// Barabási–Albert: a complete core of `m + 1` nodes, then each node opens `m` channels to
/// distinct earlier nodes picked in proportion to their degree.
fn scale_free(n: usize, m: usize, rng: &mut StdRng, deposits: impl Fn(usize) -> [u64; 2]) -> Plan {
    let mut channels = Vec::new();
    // Each channel end appears once: picking uniformly from it is picking by degree.
    let mut ends: Vec<usize> = Vec::new();
    let core = (m + 1).min(n);
    for a in 0..core {
        for b in a + 1..core {
            channels.push(PlannedChannel {
                opener: b,
                partner: a,
                deposits: deposits(channels.len()),
            });
            ends.extend([a, b]);
        }
    }
    for new in core..n {
        let mut targets = BTreeSet::new();
        while targets.len() < m {
            targets.insert(ends[rng.random_range(0..ends.len())]);
        }
        for target in targets {
            channels.push(PlannedChannel {
                opener: new,
                partner: target,
                deposits: deposits(channels.len()),
            });
            ends.extend([new, target]);
        }
    }
    Plan {
        nodes: n,
        channels,
        customers: Vec::new(),
    }
}

/// ISPs `0..isps` in a ring (with chords across it past three), then each ISP's customers,
/// each on one channel it opens to its ISP.
fn hub_and_spoke(isps: usize, per_isp: usize, deposits: impl Fn(bool) -> [u64; 2]) -> Plan {
    let mut links = BTreeSet::new();
    for i in 0..isps {
        for j in [(i + 1) % isps, (i + isps / 2) % isps] {
            if i != j && (isps > 3 || j == (i + 1) % isps) {
                links.insert((i.min(j), i.max(j)));
            }
        }
    }
    let mut channels: Vec<PlannedChannel> = links
        .into_iter()
        .map(|(a, b)| PlannedChannel {
            opener: a,
            partner: b,
            deposits: deposits(true),
        })
        .collect();
    let mut customers = Vec::new();
    for isp in 0..isps {
        for k in 0..per_isp {
            let customer = isps + isp * per_isp + k;
            channels.push(PlannedChannel {
                opener: customer,
                partner: isp,
                deposits: deposits(false),
            });
            customers.push((customer, isp));
        }
    }
    // One metering customer per ISP first, then the second of each, and so on.
    customers.sort_by_key(|&(customer, isp)| ((customer - isps) % per_isp, isp));
    Plan {
        nodes: isps + isps * per_isp,
        channels,
        customers,
    }
}

/// The snapshot's channels, restricted to the largest strongly connected component of
/// enabled directions if asked, with nodes renumbered densely in snapshot order.
fn from_snapshot(
    snapshot: &hoplite_routing::snapshot::Snapshot,
    largest_component: bool,
    deposits: impl Fn(u128) -> [u64; 2],
) -> Plan {
    let index: BTreeMap<_, _> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let graph = snapshot.graph.graph();
    // One channel per pair (the contract allows one open channel between two parties):
    // parallel channels are merged, capacities added. Keyed by channel id first, so each
    // channel counts once.
    let mut by_id: BTreeMap<_, (usize, usize, u128)> = BTreeMap::new();
    let mut enabled = DiGraph::<(), ()>::new();
    for _ in 0..snapshot.nodes.len() {
        enabled.add_node(());
    }
    for edge in graph.edge_indices() {
        let Some((src, dst)) = graph.edge_endpoints(edge) else {
            continue;
        };
        let (a, b) = (index[&graph[src].id], index[&graph[dst].id]);
        let direction = &graph[edge];
        by_id
            .entry(direction.channel)
            .or_insert((a, b, direction.capacity));
        if direction.policy.enabled {
            enabled.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
    }
    let keep: Option<BTreeSet<usize>> = largest_component.then(|| {
        petgraph::algo::tarjan_scc(&enabled)
            .into_iter()
            .max_by_key(Vec::len)
            .unwrap_or_default()
            .into_iter()
            .map(NodeIndex::index)
            .collect()
    });
    let kept = |i: &usize| keep.as_ref().is_none_or(|keep| keep.contains(i));
    let mut channels: BTreeMap<(usize, usize), (usize, usize, u128)> = BTreeMap::new();
    for (a, b, capacity) in by_id.into_values() {
        let pair = channels.entry((a.min(b), a.max(b))).or_insert((a, b, 0));
        pair.2 = pair.2.saturating_add(capacity);
    }
    let mut renumber = BTreeMap::new();
    let mut plan = Plan::default();
    for (a, b, capacity) in channels.into_values() {
        if a == b || !kept(&a) || !kept(&b) {
            continue;
        }
        let mut number = |i: usize| {
            let next = renumber.len();
            *renumber.entry(i).or_insert(next)
        };
        let (opener, partner) = (number(a), number(b));
        plan.channels.push(PlannedChannel {
            opener,
            partner,
            deposits: deposits(capacity),
        });
    }
    plan.nodes = renumber.len();
    plan
}

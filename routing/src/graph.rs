//! The network graph: nodes are participants, edges are channel directions with the policy their
//! sender announced. Updated incrementally (gossip feeds it) or loaded whole from a snapshot.

use alloy_primitives::Address;
use hoplite_htlc::ChannelId;
use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A participant: its Ethereum address (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub Address);

/// What the sender of one channel direction charges and allows. Amounts are in the token's
/// smallest unit (msat for the Lightning snapshot). Gossip carries it as is (serde).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Fixed fee per forwarded payment.
    pub base_fee: u64,
    /// Proportional fee, in millionths of the forwarded amount.
    pub fee_millionths: u32,
    /// Blocks the sender wants between the expiry of the lock it receives and the one it sends.
    pub expiry_delta: u16,
    /// Smallest lock it forwards.
    pub min_lock: u128,
    /// Largest lock it forwards.
    pub max_lock: u128,
    /// False: the sender said it doesn't forward this way now (or never said anything).
    pub enabled: bool,
}

impl Policy {
    /// The fee to forward `amount`: `base_fee + floor(amount × fee_millionths / 10⁶)`; `None`
    /// if that doesn't fit in u128.
    pub fn fee(&self, amount: u128) -> Option<u128> {
        let proportional = scale(amount, u64::from(self.fee_millionths), 1_000_000)?;
        proportional.checked_add(u128::from(self.base_fee))
    }
}

/// `floor(amount × factor / divisor)`, `None` if the product overflows u128. In u64 when it
/// fits: the router calls this for every edge it looks at, and u128 division is several times
/// slower.
pub(crate) fn scale(amount: u128, factor: u64, divisor: u64) -> Option<u128> {
    if let Some(product) = u64::try_from(amount)
        .ok()
        .and_then(|amount| amount.checked_mul(factor))
    {
        return Some(u128::from(product / divisor));
    }
    Some(amount.checked_mul(u128::from(factor))? / u128::from(divisor))
}

/// One direction of a channel: an edge of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectedChannel {
    /// The channel.
    pub channel: ChannelId,
    /// Its capacity (both deposits): no lock over it can be larger.
    pub capacity: u128,
    /// The sender's policy.
    pub policy: Policy,
    /// Whether the sender is the end with the lower address (BOLT 7's direction bit, inverted).
    pub from_lower: bool,
}

impl DirectedChannel {
    /// This direction's name, independent of graph indices.
    pub fn direction(&self) -> ChannelDirection {
        ChannelDirection {
            channel: self.channel,
            from_lower: self.from_lower,
        }
    }
}

/// One direction of a channel, named by the channel and which end sends: what the scorer learns
/// about, and what a route's hops are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelDirection {
    /// The channel.
    pub channel: ChannelId,
    /// Whether the sender is the end with the lower address.
    pub from_lower: bool,
}

/// Why a graph update was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No channel with this id.
    #[error("unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// The channel is already in the graph.
    #[error("channel {0:?} is already in the graph")]
    ChannelExists(ChannelId),
    /// Both ends are the same node.
    #[error("channel {0:?} has the same node at both ends")]
    SelfChannel(ChannelId),
    /// A policy from a node that is not an end of the channel.
    #[error("{node:?} is not an end of channel {channel:?}")]
    NotAnEnd {
        /// The channel.
        channel: ChannelId,
        /// The node.
        node: NodeId,
    },
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    ends: [NodeIndex; 2],
    capacity: u128,
    /// The edge from `ends[i]` to the other end, once `ends[i]` announced a policy.
    directions: [Option<EdgeIndex>; 2],
}

/// A node's entry: its id and how many channels it has (it leaves the graph with its last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// The participant.
    pub id: NodeId,
    channels: u32,
}

/// The channel graph routing works on. Iteration is in insertion order of the petgraph indices,
/// so everything computed from it is deterministic.
#[derive(Clone, Debug, Default)]
pub struct NetworkGraph {
    graph: StableDiGraph<Node, DirectedChannel>,
    nodes: BTreeMap<NodeId, NodeIndex>,
    channels: BTreeMap<ChannelId, Channel>,
    /// How many enabled edges have each `min_lock`: the router asks which minimums lie in a
    /// range of amounts.
    min_locks: BTreeMap<u128, u32>,
    /// The search index and the generation, which every change drops and bumps.
    changes: Changes,
}

/// What every change of a [`NetworkGraph`] resets.
#[derive(Clone, Debug, Default)]
struct Changes {
    /// Built on the first search after a change.
    outgoing: OnceLock<Outgoing>,
    /// See [`NetworkGraph::generation`].
    generation: u64,
}

impl Changes {
    fn record(&mut self) {
        self.outgoing.take();
        self.generation += 1;
    }
}

/// Every node's enabled outgoing edges, side by side in one array: what the router's forward
/// search scans. petgraph's own adjacency lists are linked through the edge array, and
/// following them costs a cache miss per edge on a large graph.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outgoing {
    /// Node `n`'s edges are `edges[start[n]..start[n + 1]]`.
    start: Vec<u32>,
    edges: Vec<(NodeIndex, EdgeIndex, DirectedChannel)>,
}

impl Outgoing {
    fn build(graph: &StableDiGraph<Node, DirectedChannel>) -> Self {
        let mut start = Vec::with_capacity(graph.node_bound() + 1);
        let mut edges = Vec::with_capacity(graph.edge_count());
        for node in 0..graph.node_bound() {
            start.push(edges.len() as u32);
            let node = NodeIndex::new(node);
            if graph.contains_node(node) {
                edges.extend(
                    graph
                        .edges_directed(node, Direction::Outgoing)
                        .filter(|e| e.weight().policy.enabled)
                        .map(|e| (e.target(), e.id(), *e.weight())),
                );
            }
        }
        start.push(edges.len() as u32);
        Self { start, edges }
    }

    /// `node`'s enabled outgoing edges: (target, edge, channel).
    pub(crate) fn of(&self, node: NodeIndex) -> &[(NodeIndex, EdgeIndex, DirectedChannel)] {
        let i = node.index();
        &self.edges[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

impl NetworkGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a channel between `a` and `b` with no policy in either direction yet (so no edge:
    /// nothing can be routed over it until a side announces one).
    pub fn add_channel(
        &mut self,
        id: ChannelId,
        a: NodeId,
        b: NodeId,
        capacity: u128,
    ) -> Result<(), GraphError> {
        if self.channels.contains_key(&id) {
            return Err(GraphError::ChannelExists(id));
        }
        if a == b {
            return Err(GraphError::SelfChannel(id));
        }
        self.changes.record();
        let ends = [self.node_index_or_insert(a), self.node_index_or_insert(b)];
        for end in ends {
            self.graph[end].channels += 1;
        }
        self.channels.insert(
            id,
            Channel {
                ends,
                capacity,
                directions: [None, None],
            },
        );
        Ok(())
    }

    /// Sets the policy of the direction of channel `id` that `from` sends on.
    pub fn update_policy(
        &mut self,
        id: ChannelId,
        from: NodeId,
        policy: Policy,
    ) -> Result<(), GraphError> {
        let not_an_end = GraphError::NotAnEnd {
            channel: id,
            node: from,
        };
        let from_index = self.nodes.get(&from).copied().ok_or(not_an_end.clone())?;
        let channel = self
            .channels
            .get_mut(&id)
            .ok_or(GraphError::UnknownChannel(id))?;
        let side = channel
            .ends
            .iter()
            .position(|&end| end == from_index)
            .ok_or(not_an_end)?;
        self.changes.record();
        let to = channel.ends[1 - side];
        let weight = DirectedChannel {
            channel: id,
            capacity: channel.capacity,
            policy,
            from_lower: from < self.graph[to].id,
        };
        match channel.directions[side] {
            Some(edge) => {
                let old = std::mem::replace(&mut self.graph[edge], weight);
                forget_min_lock(&mut self.min_locks, &old.policy);
            }
            None => channel.directions[side] = Some(self.graph.add_edge(from_index, to, weight)),
        }
        if policy.enabled {
            *self.min_locks.entry(policy.min_lock).or_default() += 1;
        }
        Ok(())
    }

    /// Sets a channel's capacity (its deposits changed on-chain).
    pub fn set_capacity(&mut self, id: ChannelId, capacity: u128) -> Result<(), GraphError> {
        let channel = self
            .channels
            .get_mut(&id)
            .ok_or(GraphError::UnknownChannel(id))?;
        self.changes.record();
        channel.capacity = capacity;
        for edge in channel.directions.into_iter().flatten() {
            self.graph[edge].capacity = capacity;
        }
        Ok(())
    }

    /// Removes a channel (closed on-chain, or pruned); its ends leave with their last channel.
    pub fn remove_channel(&mut self, id: ChannelId) -> Result<(), GraphError> {
        let channel = self
            .channels
            .remove(&id)
            .ok_or(GraphError::UnknownChannel(id))?;
        self.changes.record();
        for edge in channel.directions.into_iter().flatten() {
            let weight = self.graph.remove_edge(edge).expect("directions are edges");
            forget_min_lock(&mut self.min_locks, &weight.policy);
        }
        for end in channel.ends {
            self.graph[end].channels -= 1;
            if self.graph[end].channels == 0 {
                let node = self.graph.remove_node(end).expect("ends are in the graph");
                self.nodes.remove(&node.id);
            }
        }
        Ok(())
    }

    /// Counts the changes made to the graph: a search made while it had one value is what a
    /// search would find while it still has it (with the same scorer and query).
    pub fn generation(&self) -> u64 {
        self.changes.generation
    }

    /// The graph itself, for the router.
    pub fn graph(&self) -> &StableDiGraph<Node, DirectedChannel> {
        &self.graph
    }

    /// The search index of enabled outgoing edges, built now if the graph changed since.
    pub(crate) fn outgoing(&self) -> &Outgoing {
        self.changes
            .outgoing
            .get_or_init(|| Outgoing::build(&self.graph))
    }

    /// The edge of a channel direction, if that side announced a policy.
    pub(crate) fn edge_of(&self, direction: &ChannelDirection) -> Option<EdgeIndex> {
        let channel = self.channels.get(&direction.channel)?;
        let first_is_lower = self.graph[channel.ends[0]].id < self.graph[channel.ends[1]].id;
        let side = usize::from(first_is_lower != direction.from_lower);
        channel.directions[side]
    }

    /// A channel direction as the graph has it, if that side announced a policy.
    pub fn channel_direction(&self, direction: &ChannelDirection) -> Option<&DirectedChannel> {
        self.edge_of(direction).map(|edge| &self.graph[edge])
    }

    /// A node's index in [`Self::graph`].
    pub fn node_index(&self, id: &NodeId) -> Option<NodeIndex> {
        self.nodes.get(id).copied()
    }

    /// The directions `node` sends on (those it announced a policy for, enabled or not), in
    /// the graph's order; none if it is not in the graph.
    pub fn directions_from(&self, node: &NodeId) -> impl Iterator<Item = &DirectedChannel> {
        self.node_index(node).into_iter().flat_map(|index| {
            self.graph
                .edges_directed(index, Direction::Outgoing)
                .map(|edge| edge.weight())
        })
    }

    /// The policies of a channel's two directions (from its first end, from its second), and
    /// its ends and capacity.
    pub fn channel(&self, id: &ChannelId) -> Option<ChannelView> {
        let channel = self.channels.get(id)?;
        Some(ChannelView {
            ends: channel.ends.map(|end| self.graph[end].id),
            capacity: channel.capacity,
            policies: channel
                .directions
                .map(|edge| edge.map(|edge| self.graph[edge].policy)),
        })
    }

    /// The largest `min_lock` of an enabled edge in `range`, if any.
    pub fn largest_min_lock_in(&self, range: impl std::ops::RangeBounds<u128>) -> Option<u128> {
        self.min_locks.range(range).next_back().map(|(&min, _)| min)
    }

    /// Nodes in the graph.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Channels in the graph.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Channel directions with a policy (enabled or not): the edges.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    fn node_index_or_insert(&mut self, id: NodeId) -> NodeIndex {
        *self
            .nodes
            .entry(id)
            .or_insert_with(|| self.graph.add_node(Node { id, channels: 0 }))
    }
}

fn forget_min_lock(min_locks: &mut BTreeMap<u128, u32>, policy: &Policy) {
    if !policy.enabled {
        return;
    }
    if let Some(count) = min_locks.get_mut(&policy.min_lock) {
        *count -= 1;
        if *count == 0 {
            min_locks.remove(&policy.min_lock);
        }
    }
}

/// A channel as the graph holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelView {
    /// Its two ends, in the order it was added.
    pub ends: [NodeId; 2],
    /// Its capacity.
    pub capacity: u128,
    /// The policy each end announced for sending to the other, if any.
    pub policies: [Option<Policy>; 2],
}

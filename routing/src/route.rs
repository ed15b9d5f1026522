//! Single-path routing: the cheapest path that can carry a payment under the caller's limits.
//!
//! # The problem solved
//! A route from payer `n0` to payee `nk` is a simple path of channel directions `e1 … ek`
//! (`ej` from `n(j-1)` to `nj`). Amounts run backwards from the payee: `ek` carries the
//! payment amount `A`, and `ej` carries what `e(j+1)` carries plus the fee `n(j)` charges
//! for forwarding over `e(j+1)` by its policy ([`Policy::fee`](crate::Policy::fee)). The
//! payer pays no fee to itself. Lock expiries run backwards too, in blocks after now: `ek`'s
//! lock expires after `final_expiry_delta`, and `ej`'s after `e(j+1)`'s plus `n(j)`'s
//! `expiry_delta` on `e(j+1)`.
//!
//! A route is feasible when every hop is enabled and not excluded (nor is any intermediate
//! node), carries at least its `min_lock`, at most its `max_lock` and at most its capacity less
//! what other parts of the payment already put on it, and the scorer does not rule it out; and
//! when it has at most `max_hops` hops, the payer's lock expires within `max_total_expiry`,
//! and the total fee is within `max_fee`.
//!
//! Its cost is `Σ fee + Σ expiry risk + Σ penalty`: the fee and the expiry risk
//! (`amount × expiry_delta × expiry_risk_per_billion / 10⁹`, the value of funds held up for
//! the extra blocks a forwarder asks for, as in LND) of every forwarding hop `e2 … ek`, and
//! the scorer's penalty of every hop. [`find_route`] returns a feasible route of least cost,
//! or says why there is none.
//!
//! # How
//! A label-setting search from the payee back to the payer. A label is one partial path with
//! its (cost, amount, expiry, hops); a label at a node is dropped only when another there is
//! no worse in any of the four — and so no worse however it is extended, because fees,
//! penalties and expiry risk never shrink as the amount grows. One exception needs care:
//! a smaller amount can miss a `min_lock` further up that a larger one meets. So a label only
//! prunes others if every amount on its own path already meets every `min_lock` the payment
//! could run into (those in `(A, A + max_fee]`), which holds for almost every query on real
//! graphs (`routing/tests/exact.rs` has a case for each of these rules).
//!
//! Labels are taken in order of cost plus a lower bound on the cost still to come (A*). The
//! bound comes from a Dijkstra forward from the payer that prices every hop at the payment
//! amount itself, over a contiguous index of enabled outgoing edges. The two searches run
//! interleaved, each doing about as much work as the other: a node the forward search has not
//! reached yet is at least as far as the last node it settled, and a label whose bound has
//! grown since it was queued goes back in with the better key. Bounds only ever
//! underestimate, so the first label to reach the payer is the answer. On the real graph this
//! settles a few dozen nodes per query instead of thousands (BENCHMARKS.md).

use crate::graph::{ChannelDirection, DirectedChannel, NetworkGraph, NodeId, scale};
use crate::scorer::Scorer;
use hoplite_htlc::ChannelId;
use petgraph::Direction::Incoming;
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use petgraph::visit::{EdgeRef, NodeIndexable};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;

/// The caller's limits on a route, and the weight of expiry risk in its cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteParams {
    /// At most this many hops (channels).
    pub max_hops: u8,
    /// The payer's lock must expire at most this many blocks after now.
    pub max_total_expiry: u32,
    /// Blocks after now at which the lock reaching the payee expires.
    pub final_expiry_delta: u32,
    /// At most this much in fees over the whole route; `None`: no limit (searches get slower:
    /// see the module docs on `min_lock`).
    pub max_fee: Option<u128>,
    /// The cost of holding one unit of the amount for one extra block, in billionths.
    pub expiry_risk_per_billion: u32,
    /// Channels not to use, either way.
    pub excluded_channels: BTreeSet<ChannelId>,
    /// Nodes not to route through (the payer and payee are never excluded).
    pub excluded_nodes: BTreeSet<NodeId>,
    /// At most this many labels (partial paths) per search: a bound on memory and time
    /// whatever the graph. An exact search that hits it is rerun relaxed when a `min_lock` is
    /// to blame (see [`Route::cheapest`]); otherwise, or if the rerun hits it too, the answer
    /// is [`RouteError::SearchLimit`].
    pub max_labels: usize,
}

impl Default for RouteParams {
    /// LDK's defaults where it has one (hops, total expiry, final expiry); LND's risk factor;
    /// no fee limit.
    fn default() -> Self {
        Self {
            max_hops: 20,
            max_total_expiry: 1008,
            final_expiry_delta: 42,
            max_fee: None,
            expiry_risk_per_billion: 15,
            excluded_channels: BTreeSet::new(),
            excluded_nodes: BTreeSet::new(),
            max_labels: 50_000,
        }
    }
}

impl RouteParams {
    /// The defaults, with LDK's default fee limit for a payment of `amount`: 1% plus 50,000
    /// (50 sat when amounts are msat).
    pub fn for_amount(amount: u128) -> Self {
        Self {
            max_fee: Some(amount / 100 + 50_000),
            ..Self::default()
        }
    }
}

/// One hop of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHop {
    /// The channel direction taken.
    pub direction: ChannelDirection,
    /// The channel's capacity, as the graph had it.
    pub capacity: u128,
    /// The node this hop reaches.
    pub to: NodeId,
    /// What the lock on this hop carries: the payment plus the fees of every later forwarder.
    pub amount: u128,
    /// Blocks after now at which this hop's lock expires.
    pub expiry: u32,
}

/// A route found by [`find_route`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// From the payer's channel to the payee's.
    pub hops: Vec<RouteHop>,
    /// What the payee receives.
    pub amount: u128,
    /// What the payer pays on top.
    pub fee: u128,
    /// Fees, expiry risk and penalties: what the search minimised.
    pub cost: u128,
    /// No feasible route costs less. Always true, except when a `min_lock` lies within the
    /// fee limit above the amount and the exact search hit `max_labels`: the search is then
    /// run again letting every label prune (as single-label routers do), and its route is
    /// feasible but may not be the cheapest. On the real snapshot this happens for about 3
    /// queries in 10,000 (BENCHMARKS.md).
    pub cheapest: bool,
}

impl Route {
    /// Blocks after now at which the payer's lock expires.
    pub fn total_expiry(&self) -> u32 {
        self.hops.first().map_or(0, |hop| hop.expiry)
    }
}

/// What cut off the paths a search saw, when it found none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// A hop could not carry the amount with fees added (capacity, `max_lock` or the scorer).
    pub too_large: bool,
    /// A hop's `min_lock` was above what it would carry.
    pub too_small: bool,
    /// `max_hops`.
    pub hops: bool,
    /// `max_total_expiry`.
    pub expiry: bool,
    /// `max_fee`.
    pub fee: bool,
}

/// Why there is no route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The amount is zero.
    #[error("nothing to pay")]
    ZeroAmount,
    /// Payer and payee are the same node.
    #[error("payer and payee are the same node")]
    PayerIsPayee,
    /// The node has no channel in the graph.
    #[error("{0:?} is not in the graph")]
    UnknownNode(NodeId),
    /// None of the payer's channels can send the amount.
    #[error("no channel of the payer can send {0}")]
    NoChannelFromPayer(u128),
    /// None of the payee's channels can receive the amount.
    #[error("no channel of the payee can receive {0}")]
    NoChannelToPayee(u128),
    /// No chain of channels that can carry the amount joins payer and payee.
    #[error("no path can carry {0} from payer to payee")]
    Unreachable(u128),
    /// Paths exist, but each breaks a limit.
    #[error("every path breaks a limit: {0:?}")]
    Limits(Cutoffs),
    /// The search hit [`RouteParams::max_labels`] (after a relaxed rerun, where one applies).
    #[error("search gave up after {0} partial paths")]
    SearchLimit(usize),
}

/// What other parts of the same payment already put on each edge (multi-path).
pub(crate) type InFlight = BTreeMap<EdgeIndex, u128>;

/// The cheapest feasible route for `amount` from `payer` to `payee`; see the module docs.
pub fn find_route<S: Scorer + ?Sized>(
    graph: &NetworkGraph,
    scorer: &S,
    payer: NodeId,
    payee: NodeId,
    amount: u128,
    params: &RouteParams,
) -> Result<Route, RouteError> {
    Router::default().find_route(graph, scorer, payer, payee, amount, params)
}

/// [`find_route`] with its working memory kept between calls (faster for many queries).
#[derive(Debug, Default)]
pub struct Router {
    bound: Vec<u128>,
    settled: Vec<bool>,
    touched: Vec<NodeIndex>,
    /// Per node, the first of its labels that may prune others, and the first of the rest
    /// (two lists threaded through `Label::next_at_node`): only the first can make a new
    /// label pointless, so only they are scanned for each new label.
    first_label: Vec<[u32; 2]>,
    labels: Vec<Label>,
    forward: BinaryHeap<Reverse<(u128, NodeIndex)>>,
    backward: BinaryHeap<Reverse<(u128, u32)>>,
    stats: SearchStats,
}

/// How much work the last search did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Nodes the forward (lower-bound) search settled.
    pub settled: usize,
    /// Edges the forward search looked at.
    pub scanned: usize,
    /// Labels (partial paths) created by the backward search.
    pub labels: usize,
    /// Labels it extended.
    pub extended: usize,
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Label {
    node: NodeIndex,
    /// The label this one extends (one hop nearer the payee), or `NONE` at the payee.
    parent: u32,
    /// The edge from `node` to the parent's node.
    edge: EdgeIndex,
    /// What the edge into `node` must carry (what `node` forwards, plus its fee).
    amount: u128,
    /// When the lock on the edge into `node` expires.
    expiry: u32,
    cost: u128,
    hops: u8,
    /// Every amount on this label's path meets every `min_lock` the payment can run into, so
    /// it may prune labels it dominates.
    prunes: bool,
    dead: bool,
    next_at_node: u32,
}

impl Router {
    /// How much work the last search did.
    pub fn stats(&self) -> SearchStats {
        self.stats
    }

    /// As [`find_route`].
    pub fn find_route<S: Scorer + ?Sized>(
        &mut self,
        graph: &NetworkGraph,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
    ) -> Result<Route, RouteError> {
        self.find_route_with(
            graph,
            scorer,
            payer,
            payee,
            amount,
            params,
            &InFlight::new(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn find_route_with<S: Scorer + ?Sized>(
        &mut self,
        graph: &NetworkGraph,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
        in_flight: &InFlight,
    ) -> Result<Route, RouteError> {
        if amount == 0 {
            return Err(RouteError::ZeroAmount);
        }
        if payer == payee {
            return Err(RouteError::PayerIsPayee);
        }
        let source = graph
            .node_index(&payer)
            .ok_or(RouteError::UnknownNode(payer))?;
        let target = graph
            .node_index(&payee)
            .ok_or(RouteError::UnknownNode(payee))?;
        let mut search = Search {
            relaxed: false,
            graph,
            scorer,
            params,
            in_flight,
            source,
            target,
            amount,
            max_amount: params
                .max_fee
                .map_or(u128::MAX, |fee| amount.saturating_add(fee)),
        };
        self.reset(graph);
        self.stats = SearchStats::default();
        let mut result = self.run(&search);
        self.clear();
        if matches!(result, Err(RouteError::SearchLimit(_))) && search.min_lock_window() != 0 {
            // See `Route::cheapest`.
            search.relaxed = true;
            self.stats = SearchStats::default();
            result = self.run(&search);
            self.clear();
        }
        result
    }

    fn reset(&mut self, graph: &NetworkGraph) {
        let nodes = graph.graph().node_bound();
        if self.bound.len() < nodes {
            self.bound.resize(nodes, u128::MAX);
            self.settled.resize(nodes, false);
            self.first_label.resize(nodes, [NONE; 2]);
        }
    }

    /// Undoes what a search wrote to the per-node arrays, so the next starts clean without
    /// touching every node.
    fn clear(&mut self) {
        self.stats.labels = self.labels.len();
        for node in self.touched.drain(..) {
            self.bound[node.index()] = u128::MAX;
            self.settled[node.index()] = false;
            self.first_label[node.index()] = [NONE; 2];
        }
        self.labels.clear();
        self.forward.clear();
        self.backward.clear();
    }

    fn touch(&mut self, node: NodeIndex) {
        let i = node.index();
        if self.bound[i] == u128::MAX && !self.settled[i] && self.first_label[i] == [NONE; 2] {
            self.touched.push(node);
        }
    }

    fn run<S: Scorer + ?Sized>(&mut self, s: &Search<'_, S>) -> Result<Route, RouteError> {
        let g = s.graph.graph();
        // Cheap refusals first: most unroutable payments fail at one end.
        let payer_can_send = s
            .graph
            .outgoing()
            .of(s.source)
            .iter()
            .any(|(_, edge, channel)| s.usable(*edge, channel, s.source, s.amount).is_some());
        if !payer_can_send {
            return Err(RouteError::NoChannelFromPayer(s.amount));
        }
        let payee_can_receive = g.edges_directed(s.target, Incoming).any(|e| {
            e.weight().policy.min_lock <= s.amount
                && s.usable(e.id(), e.weight(), e.source(), s.amount).is_some()
        });
        if !payee_can_receive {
            return Err(RouteError::NoChannelToPayee(s.amount));
        }
        self.search(s)
    }

    /// The two searches, interleaved so that neither does much more work than the other:
    ///
    /// - forward, a Dijkstra from the payer with every hop priced as if it carried just the
    ///   payment amount (fees, risk and penalties never shrink with the amount, so a node's
    ///   distance is a lower bound on what reaching the payer from it costs a label). Nodes it
    ///   has not settled yet are at least as far as the last one it settled (`radius`);
    /// - backward, the labels from the payee, taken in order of cost plus that lower bound.
    ///   A label's key is computed when it is pushed; if the bound has grown by the time it is
    ///   popped, it goes back in with the better key. Keys only ever underestimate, so the
    ///   first label popped at the payer is still the cheapest.
    fn search<S: Scorer + ?Sized>(&mut self, s: &Search<'_, S>) -> Result<Route, RouteError> {
        let g = s.graph.graph();
        let highest_min_lock = if s.relaxed { 0 } else { s.min_lock_window() };
        let mut cutoffs = Cutoffs::default();
        let mut forward = Forward {
            radius: 0,
            exhausted: false,
            work: 0,
        };
        let mut backward_work = 0usize;
        self.touch(s.source);
        self.bound[s.source.index()] = 0;
        self.forward.push(Reverse((0, s.source)));
        self.push_label(
            Label {
                node: s.target,
                parent: NONE,
                edge: EdgeIndex::end(),
                amount: s.amount,
                expiry: s.params.final_expiry_delta,
                cost: 0,
                hops: 0,
                prunes: false,
                dead: false,
                next_at_node: NONE,
            },
            0,
        );
        while let Some(&Reverse((key, index))) = self.backward.peek() {
            if !forward.exhausted && forward.work <= backward_work {
                self.settle_next(s, &mut forward);
                if forward.exhausted && self.bound[s.target.index()] == u128::MAX {
                    return Err(RouteError::Unreachable(s.amount));
                }
                continue;
            }
            self.backward.pop();
            let label = self.labels[index as usize];
            if label.dead {
                continue;
            }
            let Some(bound) = self.lower_bound(label.node, &forward) else {
                continue; // the payer cannot reach this node at all
            };
            let current = label.cost.saturating_add(bound);
            if current > key {
                self.backward.push(Reverse((current, index)));
                continue;
            }
            if label.node == s.source {
                return Ok(self.route(s, index));
            }
            if label.hops >= s.params.max_hops {
                cutoffs.hops = true;
                continue;
            }
            if label.expiry > s.params.max_total_expiry {
                cutoffs.expiry = true;
                continue;
            }
            self.stats.extended += 1;
            for edge in g.edges_directed(label.node, Incoming) {
                backward_work += 1;
                let from = edge.source();
                let channel = edge.weight();
                if from == s.target || self.on_path(index, from) {
                    continue;
                }
                // This hop carries what the label's node must receive.
                let carried = label.amount;
                if carried < channel.policy.min_lock {
                    cutoffs.too_small = true;
                    continue;
                }
                let Some(penalty) = s.usable(edge.id(), channel, from, carried) else {
                    cutoffs.too_large = true;
                    continue;
                };
                let mut next = Label {
                    node: from,
                    parent: index,
                    edge: edge.id(),
                    amount: carried,
                    expiry: label.expiry,
                    cost: label.cost.saturating_add(u128::from(penalty)),
                    hops: label.hops + 1,
                    prunes: label.prunes,
                    dead: false,
                    next_at_node: NONE,
                };
                if from != s.source {
                    let Some(amount) = channel
                        .policy
                        .fee(carried)
                        .and_then(|fee| carried.checked_add(fee))
                        .filter(|&amount| amount <= s.max_amount)
                    else {
                        cutoffs.fee = true;
                        continue;
                    };
                    next.amount = amount;
                    next.expiry = label
                        .expiry
                        .saturating_add(u32::from(channel.policy.expiry_delta));
                    if next.expiry > s.params.max_total_expiry {
                        cutoffs.expiry = true;
                        continue;
                    }
                    next.cost = next
                        .cost
                        .saturating_add(amount - carried)
                        .saturating_add(s.forwarding_risk(channel, carried));
                    if label.parent == NONE {
                        // The first forwarder's amount is the smallest on any path it starts.
                        next.prunes = amount >= highest_min_lock;
                    }
                }
                let Some(bound) = self.lower_bound(from, &forward) else {
                    continue;
                };
                if self.dominated(&next) {
                    continue;
                }
                if self.labels.len() >= s.params.max_labels {
                    return Err(RouteError::SearchLimit(self.labels.len()));
                }
                self.push_label(next, bound);
            }
        }
        Err(RouteError::Limits(cutoffs))
    }

    /// What reaching the payer from `node` costs at least, as far as the forward search
    /// knows; `None` if it finished without reaching `node`.
    fn lower_bound(&self, node: NodeIndex, forward: &Forward) -> Option<u128> {
        if self.settled[node.index()] {
            Some(self.bound[node.index()])
        } else if forward.exhausted {
            None
        } else {
            Some(forward.radius)
        }
    }

    /// Settles the forward search's next node and relaxes its edges.
    fn settle_next<S: Scorer + ?Sized>(&mut self, s: &Search<'_, S>, forward: &mut Forward) {
        let outgoing = s.graph.outgoing();
        let (distance, node) = loop {
            match self.forward.pop() {
                None => {
                    forward.exhausted = true;
                    return;
                }
                Some(Reverse((_, node))) if self.settled[node.index()] => {}
                Some(Reverse(entry)) => break entry,
            }
        };
        self.settled[node.index()] = true;
        forward.radius = distance;
        forward.work += 1;
        self.stats.settled += 1;
        for &(next, edge, ref channel) in outgoing.of(node) {
            forward.work += 1;
            self.stats.scanned += 1;
            if self.settled[next.index()] || next == s.source {
                continue;
            }
            let Some(penalty) = s.usable(edge, channel, node, s.amount) else {
                continue;
            };
            let mut step = u128::from(penalty);
            if node != s.source {
                step = step.saturating_add(s.forwarding_cost(channel, s.amount));
            }
            let candidate = distance.saturating_add(step);
            if candidate < self.bound[next.index()] {
                self.touch(next);
                self.bound[next.index()] = candidate;
                self.forward.push(Reverse((candidate, next)));
            }
        }
    }

    /// Whether a label already at `label.node` makes `label` pointless; if not, and `label`
    /// may prune, marks the labels it makes pointless dead.
    fn dominated(&mut self, label: &Label) -> bool {
        let [pruning, others] = self.first_label[label.node.index()];
        let mut at = pruning;
        while at != NONE {
            let other = &self.labels[at as usize];
            if !other.dead && other.no_worse_than(label) {
                return true;
            }
            at = other.next_at_node;
        }
        if label.prunes {
            for first in [pruning, others] {
                let mut at = first;
                while at != NONE {
                    let other = &mut self.labels[at as usize];
                    if !other.dead && label.no_worse_than(other) {
                        other.dead = true;
                    }
                    at = other.next_at_node;
                }
            }
        }
        false
    }

    fn push_label(&mut self, mut label: Label, bound: u128) {
        let index = self.labels.len() as u32;
        self.touch(label.node);
        let first = &mut self.first_label[label.node.index()][usize::from(!label.prunes)];
        label.next_at_node = *first;
        *first = index;
        self.backward
            .push(Reverse((label.cost.saturating_add(bound), index)));
        self.labels.push(label);
    }

    /// Whether `node` is on the path from label `index` to the payee.
    fn on_path(&self, mut index: u32, node: NodeIndex) -> bool {
        while index != NONE {
            let label = &self.labels[index as usize];
            if label.node == node {
                return true;
            }
            index = label.parent;
        }
        false
    }

    fn route<S: Scorer + ?Sized>(&self, s: &Search<'_, S>, at_payer: u32) -> Route {
        let g = s.graph.graph();
        let mut hops = Vec::new();
        let mut label = &self.labels[at_payer as usize];
        let cost = label.cost;
        while label.parent != NONE {
            let next = &self.labels[label.parent as usize];
            let channel = &g[label.edge];
            hops.push(RouteHop {
                direction: channel.direction(),
                capacity: channel.capacity,
                to: g[next.node].id,
                amount: next.amount,
                expiry: next.expiry,
            });
            label = next;
        }
        Route {
            cheapest: !s.relaxed,
            amount: s.amount,
            fee: hops[0].amount - s.amount,
            cost,
            hops,
        }
    }
}

impl Label {
    fn no_worse_than(&self, other: &Label) -> bool {
        self.cost <= other.cost
            && self.amount <= other.amount
            && self.expiry <= other.expiry
            && self.hops <= other.hops
    }
}

/// Where the forward search stands.
struct Forward {
    /// The distance of the last node settled: every node not settled is at least this far.
    radius: u128,
    /// Nothing is left to settle: nodes not settled cannot be reached from the payer.
    exhausted: bool,
    /// Nodes settled and edges looked at, to keep the two searches level.
    work: usize,
}

/// One query's inputs.
struct Search<'a, S: ?Sized> {
    /// Every label may prune (see `Route::cheapest`).
    relaxed: bool,
    graph: &'a NetworkGraph,
    scorer: &'a S,
    params: &'a RouteParams,
    in_flight: &'a InFlight,
    source: NodeIndex,
    target: NodeIndex,
    amount: u128,
    /// No hop can carry more: the amount plus the fee limit.
    max_amount: u128,
}

impl<S: Scorer + ?Sized> Search<'_, S> {
    /// The largest `min_lock` a label could still run into, 0 if none: they lie in
    /// (A, A + max_fee].
    fn min_lock_window(&self) -> u128 {
        self.graph
            .largest_min_lock_in((
                Bound::Excluded(self.amount),
                Bound::Included(self.max_amount),
            ))
            .unwrap_or(0)
    }

    /// The penalty for `carried` over this edge, or `None` if it can't be used for that
    /// amount (`min_lock` aside: the caller knows whether it applies).
    fn usable(
        &self,
        edge: EdgeIndex,
        channel: &DirectedChannel,
        from: NodeIndex,
        carried: u128,
    ) -> Option<u64> {
        let policy = &channel.policy;
        if !policy.enabled
            || carried > policy.max_lock
            || policy.min_lock > self.max_amount
            || (!self.params.excluded_channels.is_empty()
                && self.params.excluded_channels.contains(&channel.channel))
            || (from != self.source
                && !self.params.excluded_nodes.is_empty()
                && self
                    .params
                    .excluded_nodes
                    .contains(&self.graph.graph()[from].id))
        {
            return None;
        }
        let already = if self.in_flight.is_empty() {
            0
        } else {
            self.in_flight.get(&edge).copied().unwrap_or(0)
        };
        let total = carried.checked_add(already)?;
        if total > channel.capacity {
            return None;
        }
        self.scorer.penalty(channel, total)
    }

    /// Fee plus expiry risk for a forwarder sending `carried` over `channel`.
    fn forwarding_cost(&self, channel: &DirectedChannel, carried: u128) -> u128 {
        channel
            .policy
            .fee(carried)
            .unwrap_or(u128::MAX)
            .saturating_add(self.forwarding_risk(channel, carried))
    }

    fn forwarding_risk(&self, channel: &DirectedChannel, carried: u128) -> u128 {
        let factor =
            u64::from(self.params.expiry_risk_per_billion) * u64::from(channel.policy.expiry_delta);
        scale(carried, factor, 1_000_000_000).unwrap_or(u128::MAX)
    }
}

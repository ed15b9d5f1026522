//! Multi-path payments: one payment split into up to `max_parts` routes, when no single route
//! carries it or when the parts together cost less (so, with the probabilistic scorer, are
//! more likely to get through).
//!
//! The split is LDK-style iterative collection, which measures well on the real graph (see
//! BENCHMARKS.md): route half of what is left; when that fails, halve again; the last allowed
//! part takes the whole remainder. Each part is an exact [`find_route`](crate::find_route)
//! search that sees what earlier parts already put on each channel direction (capacity left,
//! and the scorer's penalty for the total), and gets the fee budget earlier parts left.

use crate::graph::NetworkGraph;
use crate::route::{InFlight, Route, RouteError, RouteParams, Router};
use crate::scorer::Scorer;
use crate::{NodeId, RouteHop};

/// A payment's routes, together delivering its amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// At least one; each delivers part of the amount.
    pub parts: Vec<Route>,
}

impl Payment {
    /// What the payee receives in all.
    pub fn amount(&self) -> u128 {
        self.parts.iter().map(|part| part.amount).sum()
    }

    /// What the payer pays on top, in all.
    pub fn fee(&self) -> u128 {
        self.parts.iter().map(|part| part.fee).sum()
    }

    /// What the searches minimised, in all.
    pub fn cost(&self) -> u128 {
        self.parts.iter().map(|part| part.cost).sum()
    }

    /// The scorer's probability that every part gets through (parts taken as independent).
    pub fn success_probability<S: Scorer + ?Sized>(&self, graph: &NetworkGraph, scorer: &S) -> f64 {
        let mut on_hop = std::collections::BTreeMap::new();
        let mut probability = 1.0;
        for hop in self.parts.iter().flat_map(|part| &part.hops) {
            let total = on_hop.entry(hop.direction).or_insert(0u128);
            *total += hop.amount;
            probability *= graph
                .channel_direction(&hop.direction)
                .map_or(0.0, |channel| scorer.success_probability(channel, *total));
        }
        probability
    }
}

/// When to split, and into how many parts at most.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitParams {
    /// At most this many parts; 1 never splits.
    pub max_parts: usize,
    /// A single route the scorer gives at least this probability is taken without trying a
    /// split; below it, a split is tried and taken if it costs less.
    pub split_below: f64,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            max_parts: 4,
            split_below: 0.5,
        }
    }
}

impl Router {
    /// Routes a payment of `amount` in one part or up to `split.max_parts`; see the module
    /// docs. The fee limit of `params` holds for all parts together. Errors are those of the
    /// single-route search when no split works either.
    #[allow(clippy::too_many_arguments)]
    pub fn find_payment<S: Scorer + ?Sized>(
        &mut self,
        graph: &NetworkGraph,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
        split: &SplitParams,
    ) -> Result<Payment, RouteError> {
        let single = self
            .find_route(graph, scorer, payer, payee, amount, params)
            .map(|route| Payment { parts: vec![route] });
        if split.max_parts < 2 {
            return single;
        }
        if let Ok(payment) = &single
            && payment.success_probability(graph, scorer) >= split.split_below
        {
            return single;
        }
        match (
            single,
            self.split(graph, scorer, payer, payee, amount, params, split),
        ) {
            (Ok(one), Some(parts)) if parts.cost() < one.cost() => Ok(parts),
            (Ok(one), _) => Ok(one),
            (Err(_), Some(parts)) => Ok(parts),
            (Err(error), None) => Err(error),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn split<S: Scorer + ?Sized>(
        &mut self,
        graph: &NetworkGraph,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
        split: &SplitParams,
    ) -> Option<Payment> {
        let mut parts = Vec::new();
        let mut in_flight = InFlight::new();
        let mut remaining = amount;
        let mut piece = amount.div_ceil(2);
        let mut part_params = params.clone();
        while remaining > 0 {
            if parts.len() + 1 == split.max_parts {
                piece = remaining;
            }
            piece = piece.min(remaining);
            match self.find_route_with(graph, scorer, payer, payee, piece, &part_params, &in_flight)
            {
                Ok(route) => {
                    for hop in &route.hops {
                        add_in_flight(graph, &mut in_flight, hop);
                    }
                    if let Some(budget) = &mut part_params.max_fee {
                        *budget -= route.fee;
                    }
                    remaining -= piece;
                    parts.push(route);
                }
                // Halving stops where even `max_parts` pieces this small can't make up the
                // amount.
                Err(_) if parts.len() + 1 < split.max_parts && piece > 1 => {
                    let smaller = piece.div_ceil(2);
                    let room = (split.max_parts - parts.len() - 1) as u128;
                    if smaller.saturating_mul(room + 1) < remaining {
                        return None;
                    }
                    piece = smaller;
                }
                Err(_) => return None,
            }
        }
        Some(Payment { parts })
    }
}

fn add_in_flight(graph: &NetworkGraph, in_flight: &mut InFlight, hop: &RouteHop) {
    if let Some(edge) = graph.edge_of(&hop.direction) {
        *in_flight.entry(edge).or_insert(0) += hop.amount;
    }
}

//! Hoplite routing: the payment-channel network graph that pathfinding works on.
//!
//! # Layout
//! - [`graph`]: [`NetworkGraph`] on petgraph: nodes are participants, edges are channel
//!   directions with capacity and the sender's [`Policy`] (fees, expiry delta, lock limits,
//!   enabled). Updated channel by channel, as gossip will feed it.
//! - [`snapshot`]: the real Lightning graph snapshots (gzip'd TSV) loaded into a graph, for
//!   benchmarks and simulations.
//! - [`queries`]: benchmark payments on a snapshot, generated from a seed or read from a file.
//! - [`route`]: [`find_route`], the cheapest single path under the caller's limits (exact: the
//!   problem and the search are specified there; see `Route::cheapest` for the one exception).
//! - [`multipath`]: [`Router::find_payment`], one payment split over up to N routes when
//!   that is the only way or costs less.
//! - [`scorer`]: what a hop costs beyond its fee: [`ZeroPenalty`], or the
//!   [`ProbabilisticScorer`] that learns liquidity bounds from payment outcomes.
//!
//! Pure: no clock, no socket, no unseeded randomness; iteration follows petgraph indices, so results are
//! deterministic.

pub mod graph;
pub mod multipath;
pub mod queries;
pub mod route;
pub mod scorer;
pub mod snapshot;

pub use graph::{ChannelDirection, DirectedChannel, GraphError, NetworkGraph, NodeId, Policy};
pub use multipath::{Payment, SplitParams};
pub use route::{
    Cutoffs, Route, RouteError, RouteHop, RouteParams, Router, SearchStats, find_route,
};
pub use scorer::{ProbabilisticParams, ProbabilisticScorer, Scorer, ZeroPenalty};

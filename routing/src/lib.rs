//! Hoplite routing: the payment-channel network graph that pathfinding works on.
//!
//! # Layout
//! - [`graph`]: [`NetworkGraph`] on petgraph: nodes are participants, edges are channel
//!   directions with capacity and the sender's [`Policy`] (fees, expiry delta, lock limits,
//!   enabled). Updated channel by channel, as gossip will feed it.
//! - [`snapshot`]: the real Lightning graph snapshots (gzip'd TSV) loaded into a graph, for
//!   benchmarks and simulations.
//! - [`queries`]: benchmark payments on a snapshot, generated from a seed or read from a file.
//!
//! # Status
//! Pathfinding (`find_route`), the learning scorer and multi-path splitting are not built yet.
//!
//! Pure: no clock, no socket, no unseeded randomness; iteration follows petgraph indices, so results are
//! deterministic.

pub mod graph;
pub mod queries;
pub mod snapshot;

pub use graph::{DirectedChannel, GraphError, NetworkGraph, NodeId, Policy};

//! Hoplite's simulator: thousands of real [`hoplite_node::Node`]s in one process on virtual
//! time, on the real contract bytecode (in-process EVM) with a mempool and block times, with
//! faults and adversaries, invariants checked while it runs, and reports at the end.
//!
//! # Layout
//! - [`config`]: what a run simulates ([`SimConfig`], TOML, every field defaulted).
//! - [`topology`]: who has channels with whom (scale-free, hub-and-spoke, a real snapshot).
//! - [`workload`]: Poisson arrivals, pair picks, amount distributions.
//! - [`roles`]: faulty and adversarial nodes, as filters on real nodes' messages.
//! - [`queue`]: the event queue (virtual time, ties in scheduling order).
//! - [`recovery`]: messages' signatures recovered on the other cores while in flight.
//! - [`ahead`]: payers' routes searched a few payments ahead.
//! - [`presign`]: what the nodes will sign as a block of the setup comes in, signed ahead.
//! - [`workers`]: the threads beside the loop, which do the work of all three.
//! - [`net`]: latency, loss, per-link order, partitions.
//! - [`chain`]: the EVM, the mempool, blocks, gas.
//! - [`sim`]: the loop that drives the nodes ([`Simulation`]).
//! - [`ledger`]: payments, what each node is owed, the invariants ([`Violation`]).
//! - [`report`]: the results ([`Report`], JSON) and wall-clock figures ([`Timing`]).
//! - [`plots`]: the plots (SVG and PNG) and the HTML report.
//!
//! # Determinism
//! Everything random is drawn from one generator seeded by `seed`; each node's own seed is
//! derived from it and the node's index; maps that are iterated are ordered; the queue breaks
//! ties by scheduling order. So the results file is a function of the seed and the config
//! (which it carries, snapshot paths included). Wall-clock figures go to a separate file. The
//! only other threads compute messages' signers ([`recovery`]), a pure function of the bytes,
//! payers' routes ([`ahead`]), taken only when the payer's own search would have the same
//! inputs, for the call that would compute them itself, and signatures ([`presign`]), which
//! are deterministic: the results do not depend on how many run.

pub mod ahead;
pub mod chain;
pub mod config;
pub mod ledger;
pub mod net;
pub mod plots;
pub mod presign;
pub mod queue;
pub mod recovery;
pub mod report;
pub mod roles;
pub mod sim;
pub mod topology;
pub mod workers;
pub mod workload;

pub use config::SimConfig;
pub use ledger::Violation;
pub use report::{Report, Timing};
pub use sim::Simulation;

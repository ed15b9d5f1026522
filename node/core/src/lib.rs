//! Hoplite's node: a pure state machine that holds a node's channels, its view of the network,
//! its payments and its duties on-chain. Everything a node decides is decided here; a driver
//! (the runtime, the simulator, the [`testkit`]) only moves its inputs and outputs.
//!
//! # Layout
//! - [`Node`] (`node.rs`): inputs, commands, outputs, timers; the call-order contract is in its
//!   docs. Channels come from the chain's events, policies from gossip.
//! - `api.rs`: what a driver sees: [`Config`], [`Input`], [`Output`], [`Record`], [`Event`],
//!   and the errors sorted by what the caller does.
//! - `gossip.rs`: announcing our channels, policies and ourselves; judging what peers relay.
//! - `payments.rs`: paying (routing, attempts, retries), being paid, and forwarding;
//!   [`ahead`]: a payer's route searched on another thread before its payment, taken only if
//!   nothing it depends on changed.
//! - `withdraw.rs`: taking part of our balance out of an open channel (both sign the new
//!   withdrawn total; the channel is frozen until the chain shows it or it expires).
//! - `close.rs`: closing a channel, unilaterally or cooperatively (both sign the final
//!   balances).
//! - `onchain.rs`: duties on-chain, derived after every call from what the chain shows:
//!   closing, depositing, answering a close, settling, unlocking, registering secrets.
//! - `state.rs`: the bookkeeping a crash must not lose, persisted entry by entry (each call
//!   writes only what it changed); `outbox.rs`: messages to peers until acknowledged.
//! - `monitor.rs`: each channel's duties in flight (one request per channel, retried while it
//!   matters) and the history of our lock sets, kept until the channel settles.
//! - [`audit`]: conservation checks a driver runs on its nodes and the chain.
//! - [`MemoryStore`] (`store.rs`): a driver's records kept in memory, as the testkit and the
//!   simulator keep them; [`ChainRequest::submit`] sends a request through a `Chain`.
//! - [`wire`]: the messages between peers, acknowledged and resent, with a bounded encoding.
//! - [`invoice`]: what a payee signs to ask for a payment.
//! - [`testkit`] (feature `test-utils`): many nodes and the in-process EVM in one test, with
//!   message delivery under the test's control.
//!
//! # Driving a node
//! The contract a driver (the runtime, the simulator, the testkit) keeps is in [`Node`]'s
//! docs: drain the outputs after every call; feed a block's events before the block; write each
//! [`Output::Persist`] batch atomically before reporting it (what the call made waits for it);
//! report failed chain requests; one wall clock shared by all nodes.
//!
//! # Payments
//! The payer routes with `hoplite-routing` over the graph the chain and gossip built, and sends
//! a lock along the route; each hop forwards it (checking its fee and expiry delta) with a lower
//! amount and an earlier expiration. When the payee holds its lock it asks the payer for the
//! secret (`SecretRequest`); the payer reveals it to the payee only, then the secret travels
//! back hop by hop, each lock's sender unlocking as it learns it.
//!
//! The payer makes a fresh secret for every attempt and reveals at most one. A failed attempt's
//! locks can't be removed early (only a lock's sender signs its direction, and its receiver
//! could still take an older proof with the lock on-chain), so they wait for their expiration;
//! were the retry to reuse their secret hash, anyone on the failed route who later learnt the
//! secret could claim them, and the payer would pay twice. With one secret per attempt, no lock
//! of a failed attempt is ever claimable, and retries are safe at once.

pub mod ahead;
mod api;
pub mod audit;
mod close;
mod gossip;
pub mod invoice;
mod monitor;
mod node;
mod onchain;
mod outbox;
mod payments;
mod state;
mod store;
#[cfg(feature = "test-utils")]
pub mod testkit;
pub mod view;
pub mod wire;
mod withdraw;

pub use api::{
    ChainRequest, CommandError, Config, Event, Input, Output, PaymentFailure, PeerAction,
    PeerError, PersistId, Record,
};
pub use close::Close;
pub use invoice::{Invoice, InvoiceError, InvoiceParseError, PaymentId};
pub use monitor::{ChainFailure, ChainRequestId, LockChange};
pub use node::Node;
pub use state::{CorruptEntry, EntryKey, EntryValue};
pub use store::MemoryStore;
pub use view::{NetworkView, SharedView};

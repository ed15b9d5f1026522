//! Hoplite's on-chain side: the adjudicator contracts and the EVM that runs their real bytecode.
//!
//! # Layout
//! - `contracts/*.sol`: `TokenNetwork` (the adjudicator of one ERC-20 token's channels),
//!   `SecretRegistry` (when each secret was revealed on-chain), `TestToken` (a mintable ERC-20 for
//!   local networks and tests).
//! - `compile.cjs` + `../scripts/install-tools.sh solc`: the pinned solcjs compiles them into
//!   `artifacts/*.json` (ABI, creation and runtime bytecode), which are committed; a test fails
//!   if they differ from a fresh compile.
//! - [`contracts`]: Rust bindings generated from those artifacts by `sol!`.
//! - [`deploy`]: [`deploy::Deployment`], the three contracts deployed from their bytecode.
//! - `testing` (feature `test-utils`): a funded three-party network on the in-process EVM.
//! - [`evm`]: [`evm::InProcessEvm`], revm under Cancun rules with blocks mined on the caller's
//!   command: the deterministic chain for tests and the simulator.
//!
//! # Status
//! `TokenNetwork` holds the verification core every channel operation rests on: the EIP-712
//! balance-proof digest, signer recovery (65-byte `r ‖ s ‖ v`, low `s`, typed errors), lock
//! leaves, roots and membership proofs. Each is checked against the known-answer vectors shipped
//! with `hoplite-htlc`. The channel lifecycle, the `Chain` trait and the JSON-RPC backend come
//! next.

pub mod backend;
mod client;
pub mod contracts;
pub mod deploy;
pub mod events;
pub mod evm;
pub mod rpc;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use backend::{Backend, ChainError, Mine, Receipt, RevertReason};
pub use client::Chain;

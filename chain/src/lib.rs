//! Hoplite's on-chain side: the adjudicator contracts, and `Chain` to use them on an in-process
//! EVM running their real bytecode or on any node over JSON-RPC.
//!
//! # Layout
//! - `contracts/*.sol`: `TokenNetwork` (the adjudicator of one ERC-20 token's channels),
//!   `SecretRegistry` (when each secret was revealed on-chain), `TestToken` (a mintable ERC-20 for
//!   local networks and tests).
//! - `compile.cjs` + `../scripts/install-tools.sh solc`: the pinned solcjs compiles them into
//!   `artifacts/*.json` (ABI, creation and runtime bytecode), which are committed; a test fails
//!   if they differ from a fresh compile.
//! - [`contracts`]: Rust bindings generated from those artifacts by `sol!`.
//! - [`Chain`]: one account's access to a token network: every channel operation, the secret
//!   registry, token balances, channel state and decoded events; typed errors
//!   ([`ChainError`], with the contract's revert decoded as a [`RevertReason`]).
//! - [`backend`]: the [`Backend`] trait `Chain` runs on, and [`Mine`] for dev chains.
//! - [`evm`]: [`evm::InProcessEvm`], revm under Cancun rules with blocks mined on the caller's
//!   command, and [`evm::EvmBackend`]: the deterministic chain for tests and the simulator.
//! - `rpc` (feature `rpc`, on by default): `RpcBackend`, any Ethereum node over HTTP JSON-RPC
//!   through alloy. Off, the crate builds without an HTTP client or tokio (the node's sans-IO
//!   part and the simulator need only the in-process EVM).
//! - [`events`]: contract events decoded from logs, and [`events::OnChainChannel`], a channel's
//!   state rebuilt from them (the contract stores only its hash; calls carry it in calldata).
//! - [`deploy`]: [`deploy::Deployment`], the contracts deployed from their bytecode.
//! - `anvil` (feature `rpc`): the pinned anvil (installed by `scripts/install-tools.sh`) as a
//!   child process on loopback, for `hoplite localnet` and tests.
//! - `testing` (feature `test-utils`): a funded three-party network on either backend, and
//!   `Anvil`, a local anvil node for the duration of a test.

#[cfg(feature = "rpc")]
pub mod anvil;
pub mod backend;
mod client;
pub mod contracts;
pub mod deploy;
pub mod events;
pub mod evm;
#[cfg(feature = "rpc")]
pub mod rpc;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use backend::{Backend, ChainError, Mine, Receipt, RevertReason};
pub use client::Chain;

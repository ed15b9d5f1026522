//! What a chain must offer for [`crate::Chain`] to run on it: send a transaction as one
//! account, call, deploy, read the block number and logs. Two implementations:
//! [`crate::evm::EvmBackend`] (in-process revm) and `RpcBackend` (JSON-RPC, feature `rpc`).
//!
//! Block numbers: [`Backend::block_number`] is the latest block; a transaction sent after reading
//! it is included in a later block, and its logs carry that block's number.

use crate::contracts::{TestToken, TokenNetwork};
use alloy_primitives::{Address, B256, Bytes, Log};
use alloy_sol_types::{GenericContractError, SolInterface};
use std::fmt;
use std::future::Future;

/// Why a chain operation failed, sorted by what the caller can do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The contract refused: the same call will fail again until the state changes.
    #[error("reverted: {0}")]
    Reverted(RevertReason),
    /// Execution halted (out of gas, invalid opcode): a bug or a gas limit too low.
    #[error("halted: {0}")]
    Halted(String),
    /// The chain could not be reached or answered nonsense: retrying may help.
    #[error("transport: {0}")]
    Transport(String),
    /// A successful transaction did not emit the event it must have emitted, or returned data
    /// that does not decode.
    #[error("unexpected chain data: {0}")]
    Unexpected(String),
}

/// A revert payload, decoded against the errors of the Hoplite contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevertReason {
    /// A TokenNetwork custom error.
    TokenNetwork(TokenNetwork::TokenNetworkErrors),
    /// A TestToken custom error.
    Token(TestToken::TestTokenErrors),
    /// `Error(string)` or `Panic(uint256)`.
    Generic(GenericContractError),
    /// Anything else, raw (a third-party token's own error, or empty).
    Unknown(Bytes),
}

impl RevertReason {
    /// Decodes a revert payload; never fails.
    pub fn decode(data: &[u8]) -> Self {
        if let Ok(e) = TokenNetwork::TokenNetworkErrors::abi_decode(data) {
            Self::TokenNetwork(e)
        } else if let Ok(e) = TestToken::TestTokenErrors::abi_decode(data) {
            Self::Token(e)
        } else if let Ok(e) = GenericContractError::abi_decode(data) {
            Self::Generic(e)
        } else {
            Self::Unknown(Bytes::copy_from_slice(data))
        }
    }

    /// The TokenNetwork error, if it is one.
    pub fn token_network(&self) -> Option<&TokenNetwork::TokenNetworkErrors> {
        match self {
            Self::TokenNetwork(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for RevertReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenNetwork(e) => write!(f, "TokenNetwork: {e:?}"),
            Self::Token(e) => write!(f, "token: {e:?}"),
            Self::Generic(e) => write!(f, "{e:?}"),
            Self::Unknown(data) => write!(f, "0x{}", alloy_primitives::hex::encode(data)),
        }
    }
}

impl ChainError {
    /// The TokenNetwork error this is, if it is one.
    pub fn token_network(&self) -> Option<&TokenNetwork::TokenNetworkErrors> {
        match self {
            Self::Reverted(reason) => reason.token_network(),
            _ => None,
        }
    }
}

/// A mined transaction that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The block it was included in.
    pub block: u64,
    /// Gas used, including the 21,000 base and calldata.
    pub gas_used: u64,
    /// Logs emitted, in order.
    pub logs: Vec<Log>,
    /// The address created, for a deployment.
    pub contract_address: Option<Address>,
}

/// A log and the block that included it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockLog {
    /// Block number.
    pub block: u64,
    /// The log.
    pub log: Log,
}

/// Which logs to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// Emitted by one of these contracts.
    pub addresses: Vec<Address>,
    /// With this first indexed argument (topic 1), if set: a channel id, for TokenNetwork events.
    pub topic1: Option<B256>,
    /// From this block on.
    pub from_block: u64,
    /// Up to this block, inclusive; `None`: up to the newest.
    pub to_block: Option<u64>,
}

/// One account's access to a chain. Futures are `Send`, so a node runtime can hold a backend
/// across `.await`s on any executor; the in-process backend's futures are ready at once.
pub trait Backend: Send {
    /// The account transactions are sent from.
    fn account(&self) -> Address;

    /// The chain id.
    fn chain_id(&self) -> u64;

    /// The latest block.
    fn block_number(&mut self) -> impl Future<Output = Result<u64, ChainError>> + Send;

    /// Sends a transaction calling `to` with `input` and waits until it is mined.
    fn transact(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send;

    /// Deploys `init_code` (creation code followed by constructor arguments).
    fn deploy(
        &mut self,
        init_code: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send;

    /// Runs a call against the latest state without sending a transaction (`eth_call`).
    fn call(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Bytes, ChainError>> + Send;

    /// Logs matching `query`, oldest first.
    fn logs(
        &mut self,
        query: &LogQuery,
    ) -> impl Future<Output = Result<Vec<BlockLog>, ChainError>> + Send;
}

/// A development chain whose blocks the caller can mine: the in-process EVM and anvil.
pub trait Mine: Backend {
    /// Mines `blocks` empty blocks.
    fn mine(&mut self, blocks: u64) -> impl Future<Output = Result<(), ChainError>> + Send;
}

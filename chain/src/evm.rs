//! An in-process EVM (revm, Cancun rules) running the committed contract bytecode.
//!
//! Deterministic: blocks are mined only when the caller says so, each 12 s after the last, and
//! nothing reads a clock. Gas is metered but free (base fee and gas price 0), so accounts need no
//! ether.

use crate::backend::{Backend, BlockLog, ChainError, LogQuery, Mine, Receipt, RevertReason};
use alloy_primitives::{Address, B256, Bytes, Log, U256};
use alloy_sol_types::SolCall;
use revm::context::TxEnv;
use revm::context_interface::result::{ExecutionResult, Output};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::primitives::hardfork::SpecId;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, Database, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};
use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// Gas limit of every transaction and of a block.
const GAS_LIMIT: u64 = 30_000_000;
/// Seconds between blocks.
const BLOCK_TIME: u64 = 12;

/// What a successful execution returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Gas used, including the 21,000 base and calldata.
    pub gas_used: u64,
    /// The return data (for a deployment: the runtime code).
    pub output: Bytes,
    /// Logs emitted, in order.
    pub logs: Vec<Log>,
}

/// A chain in memory.
#[derive(Clone, Debug)]
pub struct InProcessEvm {
    db: CacheDB<EmptyDB>,
    chain_id: u64,
    block_number: u64,
    timestamp: u64,
    /// Every log of every committed transaction, in order.
    logs: Vec<BlockLog>,
    /// (emitter, topic 1) => positions in `logs`: a channel's history without a full scan.
    by_topic1: BTreeMap<(Address, B256), Vec<usize>>,
}

impl InProcessEvm {
    /// An empty chain with this id, at block 1.
    pub fn new(chain_id: u64) -> Self {
        Self {
            db: CacheDB::new(EmptyDB::default()),
            chain_id,
            block_number: 1,
            timestamp: 1_700_000_000,
            logs: Vec::new(),
            by_topic1: BTreeMap::new(),
        }
    }

    /// The chain id (`block.chainid`).
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The block the next transaction is included in (the pending block: [`Self::mine`] seals
    /// it).
    pub fn block_number(&self) -> u64 {
        self.block_number
    }

    /// Mines `blocks` empty blocks.
    pub fn mine(&mut self, blocks: u64) {
        self.block_number += blocks;
        self.timestamp += blocks * BLOCK_TIME;
    }

    /// Deploys `init_code` (creation bytecode followed by ABI-encoded constructor arguments).
    pub fn deploy(
        &mut self,
        from: Address,
        init_code: Bytes,
    ) -> Result<(Address, Outcome), ChainError> {
        let address = from.create(self.nonce(from)?);
        let receipt = self.execute(from, TxKind::Create, init_code, true)?;
        Ok((address, receipt))
    }

    /// Sends a transaction and keeps its effects.
    pub fn transact(
        &mut self,
        from: Address,
        to: Address,
        calldata: Bytes,
    ) -> Result<Outcome, ChainError> {
        self.execute(from, TxKind::Call(to), calldata, true)
    }

    /// Sends a typed call as a transaction and decodes what it returned.
    pub fn transact_sol<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<(C::Return, Outcome), ChainError> {
        let receipt = self.transact(from, to, call.abi_encode().into())?;
        let value = C::abi_decode_returns(&receipt.output)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        Ok((value, receipt))
    }

    /// Logs matching `query`, oldest first (those of the pending block included).
    pub fn logs(&self, query: &LogQuery) -> Vec<BlockLog> {
        let in_range = |entry: &&BlockLog| {
            entry.block >= query.from_block
                && query.to_block.is_none_or(|to| entry.block <= to)
                && query.addresses.contains(&entry.log.address)
        };
        match query.topic1 {
            Some(topic) => {
                let mut positions: Vec<usize> = query
                    .addresses
                    .iter()
                    .filter_map(|&address| self.by_topic1.get(&(address, topic)))
                    .flatten()
                    .copied()
                    .collect();
                positions.sort_unstable();
                positions
                    .into_iter()
                    .map(|i| &self.logs[i])
                    .filter(in_range)
                    .cloned()
                    .collect()
            }
            None => {
                // Logs are appended in block order: start at the first of `from_block`.
                let start = self
                    .logs
                    .partition_point(|entry| entry.block < query.from_block);
                self.logs[start..]
                    .iter()
                    .take_while(|entry| query.to_block.is_none_or(|to| entry.block <= to))
                    .filter(in_range)
                    .cloned()
                    .collect()
            }
        }
    }

    /// Runs a call without keeping its effects (`eth_call`), from the zero address.
    pub fn call(&mut self, to: Address, calldata: Bytes) -> Result<Bytes, ChainError> {
        self.execute(Address::ZERO, TxKind::Call(to), calldata, false)
            .map(|outcome| outcome.output)
    }

    /// Runs a typed call without keeping its effects (`eth_call`).
    pub fn call_sol<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, ChainError> {
        let receipt = self.execute(
            Address::ZERO,
            TxKind::Call(to),
            call.abi_encode().into(),
            false,
        )?;
        C::abi_decode_returns(&receipt.output).map_err(|e| ChainError::Unexpected(e.to_string()))
    }

    /// Puts the runtime code deployed at `from` at `to` too (storage is not copied).
    pub fn copy_code(&mut self, from: Address, to: Address) -> Result<(), ChainError> {
        let code = self
            .db
            .basic(from)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?
            .and_then(|info| info.code)
            .unwrap_or_default();
        self.db
            .insert_account_info(to, AccountInfo::default().with_code(code));
        Ok(())
    }

    /// The runtime code at `address` (empty if none).
    pub fn code(&mut self, address: Address) -> Result<Bytes, ChainError> {
        let info = self
            .db
            .basic(address)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        Ok(info
            .and_then(|info| info.code)
            .map(|code: Bytecode| code.original_bytes())
            .unwrap_or_default())
    }

    fn nonce(&mut self, address: Address) -> Result<u64, ChainError> {
        let info = self
            .db
            .basic(address)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        Ok(info.map_or(0, |info| info.nonce))
    }

    fn execute(
        &mut self,
        from: Address,
        kind: TxKind,
        data: Bytes,
        commit: bool,
    ) -> Result<Outcome, ChainError> {
        let tx = TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .nonce(self.nonce(from)?)
            .gas_limit(GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(self.chain_id))
            .build()
            .map_err(|e| ChainError::Unexpected(format!("{e:?}")))?;
        let (chain_id, number, timestamp) = (self.chain_id, self.block_number, self.timestamp);
        let mut evm = Context::mainnet()
            .with_db(&mut self.db)
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = chain_id;
                cfg.spec = SpecId::CANCUN;
            })
            .modify_block_chained(|block| {
                block.number = U256::from(number);
                block.timestamp = U256::from(timestamp);
                block.basefee = 0;
                block.gas_limit = GAS_LIMIT;
            })
            .build_mainnet();
        let result = if commit {
            evm.transact_commit(tx)
        } else {
            evm.transact(tx).map(|outcome| outcome.result)
        }
        .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        match result {
            ExecutionResult::Success {
                gas, output, logs, ..
            } => {
                let output = match output {
                    Output::Call(bytes) | Output::Create(bytes, _) => bytes,
                };
                if commit {
                    self.record(&logs);
                }
                Ok(Outcome {
                    gas_used: gas.used(),
                    output,
                    logs,
                })
            }
            ExecutionResult::Revert { output, .. } => {
                Err(ChainError::Reverted(RevertReason::decode(&output)))
            }
            ExecutionResult::Halt { reason, gas, .. } => Err(ChainError::Halted(format!(
                "{reason:?} after {} gas",
                gas.used()
            ))),
        }
    }

    fn record(&mut self, logs: &[Log]) {
        for log in logs {
            if let Some(&topic) = log.topics().get(1) {
                self.by_topic1
                    .entry((log.address, topic))
                    .or_default()
                    .push(self.logs.len());
            }
            self.logs.push(BlockLog {
                block: self.block_number,
                log: log.clone(),
            });
        }
    }
}

/// The output of a future of [`EvmBackend`] (or of a [`crate::Chain`] on it), which never
/// waits: in-process work completes on the first poll.
///
/// # Panics
/// If `future` is not ready at once (it awaited something other than the in-process EVM).
pub fn complete<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process chain future was not ready"),
    }
}

/// An in-process chain shared by the handles of several accounts.
pub type SharedEvm = Arc<Mutex<InProcessEvm>>;

/// One account's [`Backend`] on a shared [`InProcessEvm`]. Transactions need no signature and
/// no ether; each is included in the pending block, which only [`Mine::mine`] seals.
#[derive(Clone, Debug)]
pub struct EvmBackend {
    evm: SharedEvm,
    account: Address,
}

impl EvmBackend {
    /// `account`'s handle on `evm`.
    pub fn new(evm: SharedEvm, account: Address) -> Self {
        Self { evm, account }
    }

    /// The chain itself, locked.
    pub fn evm(&self) -> MutexGuard<'_, InProcessEvm> {
        // A panic while holding the lock leaves the EVM consistent (revm commits atomically).
        self.evm.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for EvmBackend {
    fn account(&self) -> Address {
        self.account
    }

    fn chain_id(&self) -> u64 {
        self.evm().chain_id()
    }

    fn block_number(&mut self) -> impl Future<Output = Result<u64, ChainError>> + Send {
        ready(Ok(self.evm().block_number() - 1))
    }

    fn transact(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send {
        let mut evm = self.evm();
        let block = evm.block_number();
        let result = evm
            .transact(self.account, to, input)
            .map(|outcome| Receipt {
                block,
                gas_used: outcome.gas_used,
                logs: outcome.logs,
                contract_address: None,
            });
        ready(result)
    }

    fn deploy(
        &mut self,
        init_code: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send {
        let mut evm = self.evm();
        let block = evm.block_number();
        let result = evm
            .deploy(self.account, init_code)
            .map(|(address, outcome)| Receipt {
                block,
                gas_used: outcome.gas_used,
                logs: outcome.logs,
                contract_address: Some(address),
            });
        ready(result)
    }

    fn call(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Bytes, ChainError>> + Send {
        ready(self.evm().call(to, input))
    }

    fn logs(
        &mut self,
        query: &LogQuery,
    ) -> impl Future<Output = Result<Vec<BlockLog>, ChainError>> + Send {
        ready(Ok(self.evm().logs(query)))
    }
}

impl Mine for EvmBackend {
    fn mine(&mut self, blocks: u64) -> impl Future<Output = Result<(), ChainError>> + Send {
        self.evm().mine(blocks);
        ready(Ok(()))
    }
}

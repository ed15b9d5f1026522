//! An in-process EVM (revm, Cancun rules) running the committed contract bytecode.
//!
//! Deterministic: blocks are mined only when the caller says so, each 12 s after the last, and
//! nothing reads a clock. Gas is metered but free (base fee and gas price 0), so accounts need no
//! ether.

use alloy_primitives::{Address, Bytes, Log, U256};
use alloy_sol_types::{SolCall, SolInterface};
use revm::context::TxEnv;
use revm::context_interface::result::{ExecutionResult, Output};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::primitives::hardfork::SpecId;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, Database, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};

/// Gas limit of every transaction and of a block.
const GAS_LIMIT: u64 = 30_000_000;
/// Seconds between blocks.
const BLOCK_TIME: u64 = 12;

/// Why a transaction or call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// The contract reverted; `data` is the revert payload (a custom error or `Error(string)`).
    #[error("reverted ({gas_used} gas): 0x{}", alloy_primitives::hex::encode(data))]
    Reverted {
        /// ABI-encoded revert reason.
        data: Bytes,
        /// Gas spent before the revert.
        gas_used: u64,
    },
    /// Execution halted (out of gas, invalid opcode, ...).
    #[error("halted ({gas_used} gas): {reason}")]
    Halted {
        /// revm's reason.
        reason: String,
        /// Gas spent.
        gas_used: u64,
    },
    /// The transaction could not run at all.
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// The return data does not decode as the call's return type.
    #[error("undecodable return data: {0}")]
    Decode(String),
}

impl EvmError {
    /// The revert decoded as one of a contract's errors (`C` is e.g. `TokenNetworkErrors`).
    pub fn decode_revert<C: SolInterface>(&self) -> Option<C> {
        match self {
            Self::Reverted { data, .. } => C::abi_decode(data).ok(),
            _ => None,
        }
    }
}

/// What a successful transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
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
}

impl InProcessEvm {
    /// An empty chain with this id, at block 1.
    pub fn new(chain_id: u64) -> Self {
        Self {
            db: CacheDB::new(EmptyDB::default()),
            chain_id,
            block_number: 1,
            timestamp: 1_700_000_000,
        }
    }

    /// The chain id (`block.chainid`).
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The block the next transaction is included in.
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
    ) -> Result<(Address, Receipt), EvmError> {
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
    ) -> Result<Receipt, EvmError> {
        self.execute(from, TxKind::Call(to), calldata, true)
    }

    /// Sends a typed call as a transaction and decodes what it returned.
    pub fn transact_sol<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<(C::Return, Receipt), EvmError> {
        let receipt = self.transact(from, to, call.abi_encode().into())?;
        let value =
            C::abi_decode_returns(&receipt.output).map_err(|e| EvmError::Decode(e.to_string()))?;
        Ok((value, receipt))
    }

    /// Runs a typed call without keeping its effects (`eth_call`).
    pub fn call_sol<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, EvmError> {
        let receipt = self.execute(
            Address::ZERO,
            TxKind::Call(to),
            call.abi_encode().into(),
            false,
        )?;
        C::abi_decode_returns(&receipt.output).map_err(|e| EvmError::Decode(e.to_string()))
    }

    /// Puts the runtime code deployed at `from` at `to` too (storage is not copied).
    pub fn copy_code(&mut self, from: Address, to: Address) -> Result<(), EvmError> {
        let code = self
            .db
            .basic(from)
            .map_err(|e| EvmError::Invalid(e.to_string()))?
            .and_then(|info| info.code)
            .unwrap_or_default();
        self.db
            .insert_account_info(to, AccountInfo::default().with_code(code));
        Ok(())
    }

    /// The runtime code at `address` (empty if none).
    pub fn code(&mut self, address: Address) -> Result<Bytes, EvmError> {
        let info = self
            .db
            .basic(address)
            .map_err(|e| EvmError::Invalid(e.to_string()))?;
        Ok(info
            .and_then(|info| info.code)
            .map(|code: Bytecode| code.original_bytes())
            .unwrap_or_default())
    }

    fn nonce(&mut self, address: Address) -> Result<u64, EvmError> {
        let info = self
            .db
            .basic(address)
            .map_err(|e| EvmError::Invalid(e.to_string()))?;
        Ok(info.map_or(0, |info| info.nonce))
    }

    fn execute(
        &mut self,
        from: Address,
        kind: TxKind,
        data: Bytes,
        commit: bool,
    ) -> Result<Receipt, EvmError> {
        let tx = TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .nonce(self.nonce(from)?)
            .gas_limit(GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(self.chain_id))
            .build()
            .map_err(|e| EvmError::Invalid(format!("{e:?}")))?;
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
        .map_err(|e| EvmError::Invalid(e.to_string()))?;
        match result {
            ExecutionResult::Success {
                gas, output, logs, ..
            } => {
                let output = match output {
                    Output::Call(bytes) | Output::Create(bytes, _) => bytes,
                };
                Ok(Receipt {
                    gas_used: gas.used(),
                    output,
                    logs,
                })
            }
            ExecutionResult::Revert { gas, output, .. } => Err(EvmError::Reverted {
                data: output,
                gas_used: gas.used(),
            }),
            ExecutionResult::Halt { reason, gas, .. } => Err(EvmError::Halted {
                reason: format!("{reason:?}"),
                gas_used: gas.used(),
            }),
        }
    }
}

//! A [`Backend`] on any Ethereum node over JSON-RPC (HTTP), through alloy: transactions are
//! signed locally with the account's key, gas and nonce are filled in by the provider, and a
//! refusal comes back as the revert data of the node's gas estimate.

use crate::backend::{Backend, BlockLog, ChainError, LogQuery, Mine, Receipt, RevertReason};
use alloy_network::{EthereumWallet, TransactionBuilder};
use alloy_primitives::{Address, Bytes, U64};
use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use alloy_rpc_types_eth::{Filter, TransactionRequest};
use alloy_signer_local::PrivateKeySigner;
use alloy_transport::TransportError;
use std::future::Future;

/// One account's access to a node at an HTTP JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub struct RpcBackend {
    provider: DynProvider,
    account: Address,
    chain_id: u64,
}

impl RpcBackend {
    /// Connects to `url` (e.g. `http://127.0.0.1:8545`) as the holder of `signer`; asks the node
    /// for its chain id.
    pub async fn connect(url: &str, signer: PrivateKeySigner) -> Result<Self, ChainError> {
        let url = url
            .parse()
            .map_err(|e| ChainError::Transport(format!("bad RPC url {url:?}: {e}")))?;
        let account = signer.address();
        // The nonce is asked of the node for every transaction: a cached nonce would skip one
        // whenever a gas estimate refuses a call after the nonce was taken, and every later
        // transaction would then wait forever behind the gap.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await.map_err(transport)?;
        Ok(Self {
            provider,
            account,
            chain_id,
        })
    }

    /// The provider, for calls this crate doesn't wrap.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    async fn submit(&self, tx: TransactionRequest) -> Result<Receipt, ChainError> {
        let tx = tx.with_from(self.account);
        let pending = self.provider.send_transaction(tx).await.map_err(refusal)?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        if !receipt.status() {
            // It passed the gas estimate but failed when mined: the state changed in between.
            return Err(ChainError::Reverted(RevertReason::Unknown(Bytes::new())));
        }
        let block = receipt
            .block_number
            .ok_or_else(|| ChainError::Unexpected("receipt without a block".into()))?;
        Ok(Receipt {
            block,
            gas_used: receipt.gas_used,
            logs: receipt
                .inner
                .logs()
                .iter()
                .map(|log| log.inner.clone())
                .collect(),
            contract_address: receipt.contract_address,
        })
    }
}

impl Backend for RpcBackend {
    fn account(&self) -> Address {
        self.account
    }

    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    async fn block_number(&mut self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(transport)
    }

    fn transact(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send {
        self.submit(TransactionRequest::default().with_to(to).with_input(input))
    }

    fn deploy(
        &mut self,
        init_code: Bytes,
    ) -> impl Future<Output = Result<Receipt, ChainError>> + Send {
        self.submit(TransactionRequest::default().with_deploy_code(init_code))
    }

    fn call(
        &mut self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<Bytes, ChainError>> + Send {
        let tx = TransactionRequest::default().with_to(to).with_input(input);
        async move { self.provider.call(tx).await.map_err(refusal) }
    }

    fn logs(
        &mut self,
        query: &LogQuery,
    ) -> impl Future<Output = Result<Vec<BlockLog>, ChainError>> + Send {
        let mut filter = Filter::new()
            .address(query.addresses.clone())
            .from_block(query.from_block);
        if let Some(to) = query.to_block {
            filter = filter.to_block(to);
        }
        if let Some(topic) = query.topic1 {
            filter = filter.topic1(topic);
        }
        async move {
            let logs = self.provider.get_logs(&filter).await.map_err(transport)?;
            logs.into_iter()
                .map(|log| {
                    let block = log.block_number.ok_or_else(|| {
                        ChainError::Unexpected("log without a block (pending?)".into())
                    })?;
                    Ok(BlockLog {
                        block,
                        log: log.inner,
                    })
                })
                .collect()
        }
    }
}

/// Dev nodes (anvil, hardhat) mine on request.
impl Mine for RpcBackend {
    async fn mine(&mut self, blocks: u64) -> Result<(), ChainError> {
        self.provider
            .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U64::from(blocks),))
            .await
            .map(drop)
            .map_err(transport)
    }
}

fn transport(error: TransportError) -> ChainError {
    ChainError::Transport(error.to_string())
}

/// A node's refusal of a call or gas estimate carries the revert data; anything else is
/// transport trouble.
fn refusal(error: TransportError) -> ChainError {
    match error.as_error_resp().and_then(|e| e.as_revert_data()) {
        Some(data) => ChainError::Reverted(RevertReason::decode(&data)),
        None => transport(error),
    }
}

//! A [`Backend`] on any Ethereum node over JSON-RPC (HTTP), through alloy: transactions are
//! signed locally with the account's key, and a refusal comes back as the revert data of the
//! node's gas estimate.
//!
//! Sending follows [`FeePolicy`]: a transaction that waits too long for a block is sent again
//! with the same nonce and higher fees, until one of its versions is mined. The nonce is the
//! account's mined count, so a transaction an abandoned call left in the pool is replaced by the
//! next one rather than blocking it.

use crate::backend::{Backend, BlockLog, ChainError, LogQuery, Mine, Receipt, RevertReason};
use alloy_network::{EthereumWallet, TransactionBuilder};
use alloy_primitives::{Address, B256, Bytes, U64};
use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use alloy_rpc_types_eth::{Filter, TransactionReceipt, TransactionRequest};
use alloy_signer_local::PrivateKeySigner;
use alloy_transport::TransportError;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// When a transaction waiting for a block is sent again, and how high its fees may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeePolicy {
    /// How long one version of a transaction may wait for a block before it is replaced.
    pub bump_after: Duration,
    /// The most it ever offers per gas, in wei: at this cap it stops bumping and waits.
    pub max_fee_per_gas: u128,
}

impl Default for FeePolicy {
    /// Two Ethereum blocks; 1,000 gwei.
    fn default() -> Self {
        Self {
            bump_after: Duration::from_secs(24),
            max_fee_per_gas: 1_000 * GWEI,
        }
    }
}

/// Wei per gwei.
pub const GWEI: u128 = 1_000_000_000;

/// How often a new nonce is tried when another transaction takes ours (someone else sending
/// from the account) before the call gives up.
const NONCE_ATTEMPTS: usize = 3;

/// The fees one version of a transaction offers (EIP-1559).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fees {
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
}

impl Fees {
    /// The node's estimate, held under the cap.
    fn capped(self, cap: u128) -> Self {
        let max_fee_per_gas = self.max_fee_per_gas.min(cap);
        Self {
            max_fee_per_gas,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas.min(max_fee_per_gas),
        }
    }

    /// A replacement's fees: both at least 12.5% higher (geth asks 10%, other clients up to
    /// 12.5%), at least today's `estimate`, at most `cap`. `None` at the cap: nothing higher
    /// may be offered.
    fn bumped(self, estimate: Self, cap: u128) -> Option<Self> {
        let raise = |fee: u128| fee.saturating_add(fee.div_ceil(8).max(1));
        let max_fee_per_gas = raise(self.max_fee_per_gas)
            .max(estimate.max_fee_per_gas)
            .min(cap);
        let max_priority_fee_per_gas = raise(self.max_priority_fee_per_gas)
            .max(estimate.max_priority_fee_per_gas)
            .min(max_fee_per_gas);
        (max_fee_per_gas > self.max_fee_per_gas
            && max_priority_fee_per_gas > self.max_priority_fee_per_gas)
            .then_some(Self {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            })
    }
}

/// The last version sent of a transaction not known to be mined: a call dropped while waiting
/// (a caller's timeout) leaves it here, and the next call outbids it with the same nonce.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    nonce: u64,
    fees: Fees,
}

/// What a node's refusal of a sent transaction says about the nonce.
enum Refused {
    /// The nonce is used: by a version of ours, or by another transaction.
    NonceUsed,
    /// The pool holds a transaction with this nonce that pays as much or more.
    Underpriced,
    /// The pool already holds this very transaction.
    Known,
    /// Anything else.
    Other,
}

impl Refused {
    /// Node messages differ (geth: "replacement transaction underpriced", "already known";
    /// anvil: "transaction already imported"); these words are common to the clients in use.
    fn classify(error: &TransportError) -> Self {
        let message = error
            .as_error_resp()
            .map(|e| e.message.to_lowercase())
            .unwrap_or_default();
        if message.contains("nonce too low") {
            Self::NonceUsed
        } else if message.contains("underpriced") {
            Self::Underpriced
        } else if message.contains("already") {
            Self::Known
        } else {
            Self::Other
        }
    }
}

/// One account's access to a node at an HTTP JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub struct RpcBackend {
    provider: DynProvider,
    account: Address,
    chain_id: u64,
    fee_policy: FeePolicy,
    in_flight: Option<InFlight>,
}

impl RpcBackend {
    /// Connects to `url` (e.g. `http://127.0.0.1:8545`) as the holder of `signer`; asks the node
    /// for its chain id. Sends follow [`FeePolicy::default`].
    pub async fn connect(url: &str, signer: PrivateKeySigner) -> Result<Self, ChainError> {
        let url = url
            .parse()
            .map_err(|e| ChainError::Transport(format!("bad RPC url {url:?}: {e}")))?;
        let account = signer.address();
        // Gas, fees and nonce are set by `submit` itself: a bump must keep the nonce.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await.map_err(transport)?;
        Ok(Self {
            provider,
            account,
            chain_id,
            fee_policy: FeePolicy::default(),
            in_flight: None,
        })
    }

    /// Sends by `policy` from now on.
    pub fn with_fee_policy(mut self, policy: FeePolicy) -> Self {
        self.fee_policy = policy;
        self
    }

    /// The provider, for calls this crate doesn't wrap.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    async fn submit(&mut self, tx: TransactionRequest) -> Result<Receipt, ChainError> {
        let tx = tx.with_from(self.account).with_chain_id(self.chain_id);
        // A refusal comes from the estimate, before anything is signed.
        let gas = self
            .provider
            .estimate_gas(tx.clone())
            .await
            .map_err(refusal)?;
        let tx = tx.with_gas_limit(gas);
        for _ in 0..NONCE_ATTEMPTS {
            // The mined count, not the pending one: see the module doc.
            let nonce = self
                .provider
                .get_transaction_count(self.account)
                .latest()
                .await
                .map_err(transport)?;
            if let Some(receipt) = self.send_until_mined(tx.clone().with_nonce(nonce)).await? {
                self.in_flight = None;
                return mined(receipt);
            }
        }
        Err(ChainError::Transport(format!(
            "the nonce of {} was taken {NONCE_ATTEMPTS} times by other transactions: is \
             another program sending from this account?",
            self.account
        )))
    }

    /// Sends `tx` (nonce set) and again with higher fees each [`FeePolicy::bump_after`] until a
    /// version is mined; `None` if another transaction took the nonce.
    async fn send_until_mined(
        &mut self,
        tx: TransactionRequest,
    ) -> Result<Option<TransactionReceipt>, ChainError> {
        let nonce = tx.nonce.expect("the caller sets the nonce");
        let cap = self.fee_policy.max_fee_per_gas;
        let estimate = self.fee_estimate().await?;
        let mut fees = match self.in_flight {
            Some(left) if left.nonce == nonce => {
                left.fees.bumped(estimate, cap).unwrap_or(left.fees)
            }
            _ => estimate.capped(cap),
        };
        let mut sent: Vec<B256> = Vec::new();
        loop {
            self.in_flight = Some(InFlight { nonce, fees });
            let version = tx
                .clone()
                .with_max_fee_per_gas(fees.max_fee_per_gas)
                .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
            match self.provider.send_transaction(version).await {
                Ok(pending) => sent.push(*pending.tx_hash()),
                Err(error) => match Refused::classify(&error) {
                    Refused::NonceUsed => return Ok(self.first_mined(&sent).await),
                    Refused::Underpriced => {
                        // An unknown version (ours from before a restart, or a stranger's)
                        // holds the nonce: outbid it now rather than wait.
                        if let Some(higher) = fees.bumped(self.fee_estimate().await?, cap) {
                            fees = higher;
                            continue;
                        }
                    }
                    Refused::Known => {}
                    Refused::Other if sent.is_empty() => return Err(refusal(error)),
                    // A version is out already: a failed resend is no reason to stop waiting.
                    Refused::Other => {}
                },
            }
            let deadline = Instant::now() + self.fee_policy.bump_after;
            loop {
                if let Some(receipt) = self.first_mined(&sent).await {
                    return Ok(Some(receipt));
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let poll = self.provider.client().poll_interval();
                tokio::time::sleep(poll.min(deadline - now)).await;
            }
            if let Some(higher) = fees.bumped(self.fee_estimate().await?, cap) {
                fees = higher;
            }
        }
    }

    /// The receipt of whichever of `sent` was mined. A failed poll counts as not yet: the next
    /// one asks again.
    async fn first_mined(&self, sent: &[B256]) -> Option<TransactionReceipt> {
        for hash in sent {
            if let Ok(Some(receipt)) = self.provider.get_transaction_receipt(*hash).await {
                return Some(receipt);
            }
        }
        None
    }

    async fn fee_estimate(&self) -> Result<Fees, ChainError> {
        let estimate = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(transport)?;
        Ok(Fees {
            max_fee_per_gas: estimate.max_fee_per_gas,
            max_priority_fee_per_gas: estimate.max_priority_fee_per_gas,
        })
    }
}

/// A mined transaction's receipt as [`Receipt`]; a failed one is an error.
fn mined(receipt: TransactionReceipt) -> Result<Receipt, ChainError> {
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

#[cfg(test)]
mod tests {
    use super::{Fees, GWEI};

    fn fees(max_fee_per_gas: u128, max_priority_fee_per_gas: u128) -> Fees {
        Fees {
            max_fee_per_gas,
            max_priority_fee_per_gas,
        }
    }

    #[test]
    fn a_bump_raises_both_fees_by_an_eighth_or_to_the_estimate() {
        let low = fees(0, 0);
        assert_eq!(fees(80, 8).bumped(low, GWEI), Some(fees(90, 9)));
        // Rounded up, and never by less than one wei (a zero tip too).
        assert_eq!(fees(81, 0).bumped(low, GWEI), Some(fees(92, 1)));
        // The estimate wins when the market moved further.
        assert_eq!(fees(80, 8).bumped(fees(500, 20), GWEI), Some(fees(500, 20)));
    }

    #[test]
    fn a_bump_stops_at_the_cap() {
        assert_eq!(fees(80, 8).bumped(fees(0, 0), 85), Some(fees(85, 9)));
        assert_eq!(fees(85, 9).bumped(fees(0, 0), 85), None);
        // Near the cap the raise is what is left, and the tip never exceeds the fee cap.
        assert_eq!(fees(84, 84).bumped(fees(0, 0), 85), Some(fees(85, 85)));
        assert_eq!(fees(2_000, 30).capped(1_000), fees(1_000, 30));
        assert_eq!(fees(2_000, 3_000).capped(1_000), fees(1_000, 1_000));
    }
}

//! The chain over JSON-RPC: a follower that reads the contracts' logs and the head, and a
//! submitter that sends the node's requests from its account, one at a time (one nonce
//! sequence per account).
//!
//! The follower reads only blocks `confirmations` deep, so a reorg of younger blocks never
//! reaches the node; it asks for `eth_getLogs` ranges of at most `max_log_range` blocks,
//! halves the range when the RPC node refuses one (too many results, timeouts) and grows it
//! back after each success. While catching up it sends events range by range and the block
//! only once caught up, so the node never derives duties from a chain it has half read.

use crate::config::ChainSettings;
use crate::store::Checkpoint;
use alloy_primitives::{B256, U256};
use alloy_provider::Provider;
use alloy_rpc_types_eth::BlockNumberOrTag;
use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use hoplite_chain::contracts::TestToken;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::events::ChainEvent;
use hoplite_chain::rpc::{FeePolicy, GWEI, RpcBackend};
use hoplite_chain::{Chain, ChainError};
use hoplite_node::{ChainFailure, ChainRequest, ChainRequestId};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long the submitter waits for a transaction's receipt (bumping its fees meanwhile); the
/// next request outbids what it leaves in the pool.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the chain components tell the node's task.
#[derive(Debug)]
pub enum ChainUpdate {
    /// The events of blocks up to `through`, oldest first; `hash` is block `through`'s.
    Events {
        /// The events.
        events: Vec<ChainEvent>,
        /// Every event up to this block is in.
        through: u64,
        /// Its hash.
        hash: B256,
    },
    /// Every event up to `number` was sent; the follower is caught up.
    Block {
        /// The last confirmed block.
        number: u64,
        /// Its hash.
        hash: B256,
        /// The chain head's timestamp (seconds).
        head_timestamp: u64,
    },
    /// A block the node processed is no longer on the chain: a reorg deeper than the
    /// confirmations. The node's view can't be unwound; the daemon reads the chain again.
    Reorganised {
        /// The block.
        number: u64,
    },
    /// A request the submitter could not get included.
    Failed {
        /// Its id.
        id: ChainRequestId,
        /// The request.
        request: Box<ChainRequest>,
        /// Why.
        failure: ChainFailure,
    },
}

/// The deployment the settings name.
pub fn deployment(settings: &ChainSettings) -> Deployment {
    Deployment {
        token: settings.token,
        secret_registry: settings.secret_registry,
        token_network: settings.token_network,
        block: settings.deployment_block,
    }
}

/// Connects the account `signer` to the RPC node.
pub async fn connect(
    settings: &ChainSettings,
    signer: PrivateKeySigner,
) -> anyhow::Result<Chain<RpcBackend>> {
    let backend = RpcBackend::connect(&settings.rpc_url, signer)
        .await
        .with_context(|| format!("connecting to the chain at {}", settings.rpc_url))?
        .with_fee_policy(FeePolicy {
            bump_after: Duration::from_secs(settings.fee_bump_after_s),
            max_fee_per_gas: u128::from(settings.max_fee_gwei) * GWEI,
        });
    Ok(Chain::new(backend, deployment(settings)))
}

/// Lets the TokenNetwork pull our tokens for deposits, once for all.
pub async fn approve_deposits(chain: &mut Chain<RpcBackend>) -> Result<(), ChainError> {
    let contracts = *chain.contracts();
    let call = TestToken::allowanceCall {
        _0: chain.account(),
        _1: contracts.token_network,
    };
    let allowance = chain.view(contracts.token, &call).await?;
    if allowance < U256::MAX >> 1 {
        chain.approve_deposits(U256::MAX).await?;
        info!(target: "hoplite::chain", token = %contracts.token, "approved deposits");
    }
    Ok(())
}

/// The hash of block `number`; `None` if the chain has no such block.
pub async fn block_hash(
    chain: &Chain<RpcBackend>,
    number: u64,
) -> Result<Option<B256>, ChainError> {
    let block = chain
        .backend()
        .provider()
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .map_err(|e| ChainError::Transport(e.to_string()))?;
    Ok(block.map(|b| b.header.hash))
}

/// Follows the chain after `last` (the last block processed; `None`: from the deployment),
/// for as long as `updates` is open. Before reading further it checks that `last` is still on
/// the chain, and stops with [`ChainUpdate::Reorganised`] when it is not.
pub async fn follow(
    mut chain: Chain<RpcBackend>,
    settings: ChainSettings,
    mut last: Option<Checkpoint>,
    updates: mpsc::Sender<ChainUpdate>,
) {
    let mut next = last.map_or(settings.deployment_block, |(n, _)| n + 1);
    let mut range = settings.max_log_range;
    let mut reported = None;
    let mut poll = tokio::time::interval(Duration::from_millis(settings.poll_interval_ms));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        poll.tick().await;
        let head = match chain
            .backend()
            .provider()
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
        {
            Ok(Some(block)) => block.header,
            Ok(None) => continue,
            Err(error) => {
                warn!(target: "hoplite::chain", %error, "reading the head");
                continue;
            }
        };
        let confirmed = head.number.saturating_sub(settings.confirmations);
        if next <= confirmed
            && let Some((number, hash)) = last
        {
            match block_hash(&chain, number).await {
                Ok(Some(found)) if found == hash => {}
                Ok(Some(found)) => {
                    warn!(target: "hoplite::chain", block = number, expected = %hash, %found, "a processed block left the chain");
                    let _ = updates.send(ChainUpdate::Reorganised { number }).await;
                    return;
                }
                // A lagging RPC node, not a reorg: ask again at the next poll.
                Ok(None) => continue,
                Err(error) => {
                    warn!(target: "hoplite::chain", %error, "reading a block hash");
                    continue;
                }
            }
        }
        while next <= confirmed {
            let to = confirmed.min(next.saturating_add(range - 1));
            // The hash of `to` before and after the logs: equal, the logs are of that chain
            // (a reorg in between: read again).
            let read = async {
                let before = block_hash(&chain, to).await?;
                let events = chain.events(next, Some(to)).await?;
                let after = block_hash(&chain, to).await?;
                Ok::<_, ChainError>((events, before.filter(|h| Some(*h) == after)))
            };
            match read.await {
                Ok((events, Some(hash))) => {
                    debug!(target: "hoplite::chain", from = next, to, events = events.len(), "logs");
                    if !events.is_empty() {
                        let update = ChainUpdate::Events {
                            events,
                            through: to,
                            hash,
                        };
                        if updates.send(update).await.is_err() {
                            return;
                        }
                    }
                    last = Some((to, hash));
                    next = to + 1;
                    range = range.saturating_mul(2).min(settings.max_log_range);
                }
                Ok((_, None)) => break,
                Err(error) => {
                    warn!(target: "hoplite::chain", %error, from = next, to, "eth_getLogs");
                    if range == 1 {
                        break;
                    }
                    range = (range / 2).max(1);
                }
            }
        }
        if let Some((number, hash)) = last
            && next > confirmed
            && reported != Some((number, head.timestamp))
        {
            reported = Some((number, head.timestamp));
            let block = ChainUpdate::Block {
                number,
                hash,
                head_timestamp: head.timestamp,
            };
            if updates.send(block).await.is_err() {
                return;
            }
        }
    }
}

/// Sends the node's requests in order and reports the ones that fail.
pub async fn submit(
    mut chain: Chain<RpcBackend>,
    mut requests: mpsc::UnboundedReceiver<(ChainRequestId, ChainRequest)>,
    updates: mpsc::Sender<ChainUpdate>,
) {
    while let Some((id, request)) = requests.recv().await {
        let kind = request.kind();
        // A transaction that never gets a receipt must not hold back every later one (an
        // answer to a close among them): it is reported as not sent, and the node decides.
        let sent = tokio::time::timeout(RECEIPT_TIMEOUT, request.submit(&mut chain))
            .await
            .unwrap_or_else(|_| {
                Err(ChainError::Transport(format!(
                    "no receipt after {} s",
                    RECEIPT_TIMEOUT.as_secs()
                )))
            });
        match sent {
            Ok(receipt) => {
                info!(target: "hoplite::chain", kind, block = receipt.block, gas = receipt.gas_used, "sent");
            }
            Err(error) => {
                warn!(target: "hoplite::chain", kind, %error, "request failed");
                let failure = ChainFailure::from(&error);
                let failed = ChainUpdate::Failed {
                    id,
                    request: Box::new(request),
                    failure,
                };
                if updates.send(failed).await.is_err() {
                    return;
                }
            }
        }
    }
}

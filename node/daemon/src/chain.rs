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
use alloy_primitives::U256;
use alloy_provider::Provider;
use alloy_rpc_types_eth::BlockNumberOrTag;
use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use hoplite_chain::contracts::TestToken;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::events::ChainEvent;
use hoplite_chain::rpc::RpcBackend;
use hoplite_chain::{Chain, ChainError};
use hoplite_node::{ChainFailure, ChainRequest, ChainRequestId};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long the submitter waits for a transaction's receipt.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the chain components tell the node's task.
#[derive(Debug)]
pub enum ChainUpdate {
    /// Events of the next blocks, oldest first.
    Events(Vec<ChainEvent>),
    /// Every event up to `number` was sent; `timestamp` is the newest block's (seconds).
    Block {
        /// The last confirmed block.
        number: u64,
        /// The chain head's timestamp.
        head_timestamp: u64,
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
        .with_context(|| format!("connecting to the chain at {}", settings.rpc_url))?;
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

/// Follows the chain from block `from` on, for as long as `updates` is open.
pub async fn follow(
    mut chain: Chain<RpcBackend>,
    settings: ChainSettings,
    from: u64,
    updates: mpsc::Sender<ChainUpdate>,
) {
    let mut next = from;
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
        while next <= confirmed {
            let to = confirmed.min(next.saturating_add(range - 1));
            match chain.events(next, Some(to)).await {
                Ok(events) => {
                    debug!(target: "hoplite::chain", from = next, to, events = events.len(), "logs");
                    if !events.is_empty()
                        && updates.send(ChainUpdate::Events(events)).await.is_err()
                    {
                        return;
                    }
                    next = to + 1;
                    range = range.saturating_mul(2).min(settings.max_log_range);
                }
                Err(error) => {
                    warn!(target: "hoplite::chain", %error, from = next, to, "eth_getLogs");
                    if range == 1 {
                        break;
                    }
                    range = (range / 2).max(1);
                }
            }
        }
        if next > confirmed && reported != Some((confirmed, head.timestamp)) {
            reported = Some((confirmed, head.timestamp));
            let block = ChainUpdate::Block {
                number: confirmed,
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

//! What each of our channels needs of the chain, and what the node must keep until the channel
//! settles: a per-channel monitor in the style of LDK's `ChannelMonitor`.
//!
//! Duties are not remembered as "done when sent". On every call the node derives what the chain
//! still expects of it from the channel's on-chain state, the block and what it holds
//! (`onchain.rs`); a duty is done when the chain shows its effect. A request goes out with a
//! [`ChainRequestId`], at most one per channel at a time (two transactions on one channel in one
//! block conflict on the contract; any event of the channel ends the one out), and is sent again
//! while it still matters: `chain_retry_after` blocks after it went out with no effect, the
//! block after it lost a conflict or never reached the chain, later and later after each
//! revert in a row.

use crate::api::ChainRequest;
use hoplite_chain::{
    Backend, Chain, ChainError, Receipt, RevertReason, contracts::TokenNetwork::TokenNetworkErrors,
};
use hoplite_htlc::locks::PendingLocks;
use hoplite_htlc::{Amount, BlockNumber, Lock, Nonce, SecretHash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Names one [`Output::Chain`](crate::Output::Chain) request, so the driver can report its
/// failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChainRequestId(pub u64);

/// Why a chain request did not take effect, sorted by what the node does next (it retries every
/// kind for as long as the duty matters: sooner for a conflict, later and later otherwise).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainFailure {
    /// Another transaction changed the channel first (the contract's `StaleChannelState`):
    /// retried the block after, against the state the chain's events show by then.
    #[error("the channel changed first")]
    StaleState,
    /// The contract refused, with its reason: retried later and later.
    #[error("reverted: {0}")]
    Reverted(String),
    /// It never reached the chain (transport, nonce, funds): retried the block after.
    #[error("not sent: {0}")]
    NotSent(String),
}

impl From<&ChainError> for ChainFailure {
    fn from(error: &ChainError) -> Self {
        match error {
            ChainError::Reverted(RevertReason::TokenNetwork(
                TokenNetworkErrors::StaleChannelState(_),
            )) => Self::StaleState,
            ChainError::Reverted(reason) => Self::Reverted(reason.to_string()),
            ChainError::Halted(e) => Self::Reverted(e.clone()),
            ChainError::Transport(e) | ChainError::Unexpected(e) => Self::NotSent(e.clone()),
        }
    }
}

/// A request out on the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InFlight {
    pub(crate) id: ChainRequestId,
    /// From this block on it may be sent again.
    pub(crate) retry_at: BlockNumber,
    /// How often it reverted in a row.
    pub(crate) failures: u32,
}

impl InFlight {
    /// A request sent at `block` (again, if `before` was out for the same duty: its reverts
    /// count on), to be sent again `retry_after` blocks later if it shows no effect by then.
    pub(crate) fn sent(
        id: ChainRequestId,
        block: BlockNumber,
        retry_after: u64,
        before: Option<InFlight>,
    ) -> Self {
        Self {
            id,
            retry_at: BlockNumber(block.0.saturating_add(retry_after)),
            failures: before.map_or(0, |b| b.failures),
        }
    }

    /// It failed at `block`: a conflict, or a request that never reached the chain (it cost
    /// nothing), is retried the block after; a revert after `retry_after` blocks, doubling
    /// with each revert in a row (up to 32 times as long), so a request the contract keeps
    /// refusing does not burn gas every few blocks.
    pub(crate) fn failed(&mut self, failure: &ChainFailure, block: BlockNumber, retry_after: u64) {
        let wait = match failure {
            ChainFailure::StaleState | ChainFailure::NotSent(_) => 1,
            ChainFailure::Reverted(_) => {
                self.failures = self.failures.saturating_add(1);
                retry_after.saturating_mul(1 << (self.failures.min(6) - 1))
            }
        };
        self.retry_at = BlockNumber(block.0.saturating_add(wait));
    }
}

/// One of our channels' on-chain duties, and what it must keep until its pots are unlocked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelMonitor {
    /// We decided to close unilaterally: from then on we sign nothing more on the channel and
    /// apply nothing new from the partner, so the proof we close with stays its latest.
    pub(crate) closing: bool,
    /// The deposit total the user asked for, until the chain shows it.
    pub(crate) deposit: Option<Amount>,
    /// The transaction out for this channel: at most one, since two on one channel in one
    /// block conflict. Any event of the channel ends it (it landed, or another one did and it
    /// can only revert).
    pub(crate) in_flight: Option<InFlight>,
    /// Once settled with a pot of ours: its locks (replayed once from the lock history).
    pub(crate) our_pot: Option<Vec<Lock>>,
}

/// Whether `in_flight` leaves room to send at `block`: nothing is out, or what is out may be
/// sent again.
pub(crate) fn may_send(in_flight: Option<&InFlight>, block: BlockNumber) -> bool {
    in_flight.is_none_or(|f| block >= f.retry_at)
}

/// How one of our signed states changed our direction's lock set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockChange {
    /// A lock was added (`LockedTransfer`).
    Added(Lock),
    /// The lock with this secret hash was removed (`Unlock`, `LockExpired`).
    Removed(SecretHash),
}

/// Every change of our direction's lock set in one channel, by the nonce of the state that made
/// it, kept until the channel settles: the partner may close with any state of ours it holds,
/// and only the lock set behind that state's root can unlock its pot. One entry per lock added
/// or removed; direct transfers add nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockHistory(BTreeMap<Nonce, LockChange>);

impl LockHistory {
    /// Our state `nonce` made `change` (a later record of the same nonce replaces an earlier
    /// one: a state signed again after a crash that lost it).
    pub(crate) fn record(&mut self, nonce: Nonce, change: LockChange) {
        self.0.insert(nonce, change);
    }

    /// Forgets changes of states after `nonce` (never durable with their channel record).
    pub(crate) fn truncate_after(&mut self, nonce: Nonce) {
        self.0.retain(|n, _| *n <= nonce);
    }

    /// The lock set, in slot order, of our state whose locks root is `root`: replayed from the
    /// first change, so the slots are exactly those the state was signed with.
    pub(crate) fn locks_with_root(&self, root: alloy_primitives::B256) -> Option<Vec<Lock>> {
        let mut set = PendingLocks::new();
        for change in self.0.values() {
            match change {
                LockChange::Added(lock) => set.insert(*lock).ok()?,
                LockChange::Removed(hash) => set.remove(hash)?.0,
            };
            if set.root() == root {
                return Some(set.iter().copied().collect());
            }
        }
        None
    }

    /// How many changes are kept.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl ChainRequest {
    /// The channel the request acts on (none for an open or a secret registration).
    pub fn channel(&self) -> Option<hoplite_htlc::ChannelId> {
        match self {
            Self::OpenChannel { .. } | Self::RegisterSecret { .. } => None,
            Self::Deposit { channel, .. }
            | Self::Close { channel, .. }
            | Self::Settle { channel, .. }
            | Self::CooperativeSettle { channel, .. }
            | Self::Withdraw { channel, .. }
            | Self::UnlockBatch { channel, .. } => Some(*channel),
            Self::UpdateNonClosing { closer_proof } => Some(closer_proof.proof.channel_id),
        }
    }

    /// The request's kind, for accounting (`"open"`, `"deposit"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OpenChannel { .. } => "open",
            Self::Deposit { .. } => "deposit",
            Self::RegisterSecret { .. } => "register_secret",
            Self::Close { .. } => "close",
            Self::UpdateNonClosing { .. } => "update_non_closing",
            Self::Settle { .. } => "settle",
            Self::CooperativeSettle { .. } => "cooperative_settle",
            Self::Withdraw { .. } => "withdraw",
            Self::UnlockBatch { .. } => "unlock_batch",
        }
    }

    /// Sends the request as a transaction from `chain`'s account, and waits for its receipt.
    /// Every driver (the testkit, the simulator, the daemon) submits requests through this.
    pub async fn submit<B: Backend>(&self, chain: &mut Chain<B>) -> Result<Receipt, ChainError> {
        let me = chain.account();
        match self {
            Self::OpenChannel {
                partner,
                settle_timeout,
            } => chain
                .open_channel(*partner, *settle_timeout)
                .await
                .map(|(_, receipt)| receipt),
            Self::Deposit { channel, total } => chain.set_total_deposit(*channel, me, *total).await,
            Self::RegisterSecret { secret } => chain.register_secret(secret).await,
            Self::Close {
                channel,
                partner_proof,
            } => chain.close_channel(*channel, partner_proof.as_ref()).await,
            Self::UpdateNonClosing { closer_proof } => {
                chain
                    .update_non_closing_balance_proof(closer_proof, None)
                    .await
            }
            Self::Settle { channel, balances } => {
                chain.settle_channel(*channel, balances.clone()).await
            }
            Self::CooperativeSettle {
                channel,
                balances,
                signatures,
            } => {
                chain
                    .cooperative_settle(*channel, *balances, [&signatures[0], &signatures[1]])
                    .await
            }
            Self::Withdraw {
                channel,
                total,
                expiry,
                signatures,
            } => {
                chain
                    .set_total_withdraw(
                        *channel,
                        me,
                        *total,
                        expiry.0,
                        [&signatures[0], &signatures[1]],
                    )
                    .await
            }
            Self::UnlockBatch {
                channel,
                sender,
                locks,
            } => chain.unlock_batch(*channel, *sender, locks).await,
        }
    }
}

//! Errors, sorted by what the caller must do: see [`ErrorAction`].

use crate::crypto::SignatureError;
use crate::{Amount, BlockNumber, ChannelId, Nonce, SecretHash, TokenNetwork};
use alloy_primitives::{Address, B256};

/// A protocol rule a proposed state breaks. The same rules bind what we send and what we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A transfer or lock of zero.
    #[error("amount is zero")]
    ZeroAmount,
    /// The sender can't afford it.
    #[error("spendable balance {spendable} is less than {needed}")]
    InsufficientBalance {
        /// What the sender could spend before this change.
        spendable: Amount,
        /// What the change needs.
        needed: Amount,
    },
    /// A total would exceed `uint256`.
    #[error("amount overflows uint256")]
    AmountOverflow,
    /// A new lock must leave the receiver `reveal_timeout` blocks to claim it on-chain, and must
    /// expire within the settle timeout.
    #[error("lock expiration {expiration} outside {earliest}..={latest}")]
    LockExpirationOutOfRange {
        /// The lock's expiration.
        expiration: BlockNumber,
        /// `current_block + reveal_timeout + 1`.
        earliest: BlockNumber,
        /// `current_block + settle_timeout`.
        latest: BlockNumber,
    },
    /// The direction already holds [`crate::locks::MAX_PENDING_LOCKS`] locks.
    #[error("too many pending locks")]
    TooManyLocks,
    /// A pending lock already uses this secret hash.
    #[error("a lock with secret hash {:?} is already pending", .0.0)]
    DuplicateSecretHash(SecretHash),
    /// No pending lock has this secret hash (for an `Unlock`, the secret is wrong).
    #[error("no pending lock with secret hash {:?}", .0.0)]
    UnknownLock(SecretHash),
    /// A `LockExpired` before the current block is past the lock's expiration.
    #[error("lock expires at block {expiration}, current block is {current_block}")]
    LockNotExpired {
        /// The lock's expiration.
        expiration: BlockNumber,
        /// Our view of the current block.
        current_block: BlockNumber,
    },
}

impl Violation {
    /// Whether the rule depends on the current block, which the two sides may see differently.
    fn depends_on_block(&self) -> bool {
        matches!(
            self,
            Self::LockExpirationOutOfRange { .. } | Self::LockNotExpired { .. }
        )
    }
}

/// What the caller of [`crate::Channel::handle_update`] must do about an error.
///
/// | error | caller |
/// |---|---|
/// | [`ReceiveError`] with [`ErrorAction::Ignore`] | nothing: the update was already applied (a resend); acknowledge it again |
/// | [`ReceiveError`] with [`ErrorAction::Reject`] | drop the message, keep the channel: it is not attributable to the partner, is older than what we hold, or may become valid later (out of order, block views differ) |
/// | [`ReceiveError`] with [`ErrorAction::CloseChannel`] | the partner signed a state that breaks the rules; the directions can't be reconciled, close with the latest valid proof |
/// | [`SendError`], [`BalanceError`], [`ConfigError`] | API misuse by the local caller: nothing was signed or changed |
///
/// In every error case the channel is left exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorAction {
    /// Nothing; acknowledge as if accepted.
    Ignore,
    /// Drop the message; the channel stays usable.
    Reject,
    /// Close the channel on-chain.
    CloseChannel,
}

/// Why a received update was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// The exact proof we hold as the latest: a resend.
    #[error("duplicate of the latest proof")]
    Duplicate,
    /// Signed for another chain or contract (a replay).
    #[error("proof is for {got:?}, channel is on {expected:?}")]
    WrongTokenNetwork {
        /// Ours.
        expected: TokenNetwork,
        /// The proof's.
        got: TokenNetwork,
    },
    /// For another channel.
    #[error("proof is for channel {got}, expected {expected}")]
    WrongChannel {
        /// Ours.
        expected: ChannelId,
        /// The proof's.
        got: ChannelId,
    },
    /// The signature is malformed or malleated.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// Signed by someone other than the partner.
    #[error("signed by {got}, expected the partner {expected}")]
    WrongSigner {
        /// The partner.
        expected: Address,
        /// Who signed.
        got: Address,
    },
    /// Not newer than the latest proof we hold (a replay or late resend).
    #[error("nonce {got} is not newer than {latest}")]
    StaleNonce {
        /// The latest nonce we hold.
        latest: Nonce,
        /// The update's.
        got: Nonce,
    },
    /// Skips a nonce: an earlier update has not arrived yet.
    #[error("nonce {got} skips ahead of {latest}")]
    NonceGap {
        /// The latest nonce we hold.
        latest: Nonce,
        /// The update's.
        got: Nonce,
    },
    /// The change breaks a rule.
    #[error(transparent)]
    Rule(#[from] Violation),
    /// The signed `transferredAmount` is not what the change implies.
    #[error("transferred amount {got}, the change implies {expected}")]
    TransferredMismatch {
        /// Implied by the change.
        expected: Amount,
        /// Signed.
        got: Amount,
    },
    /// The signed `lockedAmount` is not the sum of the pending locks after the change.
    #[error("locked amount {got}, the pending locks sum to {expected}")]
    LockedMismatch {
        /// Sum of the pending locks.
        expected: Amount,
        /// Signed.
        got: Amount,
    },
    /// The signed `locksRoot` is not the root of the pending locks after the change.
    #[error("locks root {got}, the pending locks give {expected}")]
    LocksRootMismatch {
        /// Root of the pending locks.
        expected: B256,
        /// Signed.
        got: B256,
    },
}

impl ReceiveError {
    /// What the caller must do.
    pub fn action(&self) -> ErrorAction {
        match self {
            Self::Duplicate => ErrorAction::Ignore,
            Self::WrongTokenNetwork { .. }
            | Self::WrongChannel { .. }
            | Self::BadSignature(_)
            | Self::WrongSigner { .. }
            | Self::StaleNonce { .. }
            | Self::NonceGap { .. } => ErrorAction::Reject,
            Self::Rule(violation) if violation.depends_on_block() => ErrorAction::Reject,
            Self::Rule(_)
            | Self::TransferredMismatch { .. }
            | Self::LockedMismatch { .. }
            | Self::LocksRootMismatch { .. } => ErrorAction::CloseChannel,
        }
    }
}

/// Why we could not sign an update (API misuse: nothing was signed or changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The key is not our participant's.
    #[error("key of {got} does not sign for {expected}")]
    WrongKey {
        /// Our participant.
        expected: Address,
        /// The key's address.
        got: Address,
    },
    /// The change breaks a rule.
    #[error(transparent)]
    Rule(#[from] Violation),
    /// `u64::MAX` proofs were signed in this direction.
    #[error("nonces exhausted")]
    NonceExhausted,
}

/// An on-chain deposit or withdrawal that can't apply to this channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// On-chain totals only grow.
    #[error("total {new} is below the current total {current}")]
    TotalDecreased {
        /// The current total.
        current: Amount,
        /// The rejected total.
        new: Amount,
    },
    /// The withdrawal exceeds what the participant can spend.
    #[error("withdrawing {requested} more exceeds the spendable {spendable}")]
    WithdrawExceedsBalance {
        /// What the participant can spend.
        spendable: Amount,
        /// The increase of the withdrawn total.
        requested: Amount,
    },
    /// A balance would exceed `uint256`.
    #[error("amount overflows uint256")]
    AmountOverflow,
}

/// Channel parameters that can't work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Both participants are the same address.
    #[error("a channel needs two distinct participants")]
    SameParticipant,
    /// `0 < reveal_timeout < settle_timeout` does not hold.
    #[error("need 0 < reveal_timeout ({reveal_timeout}) < settle_timeout ({settle_timeout})")]
    Timeouts {
        /// Blocks.
        reveal_timeout: u64,
        /// Blocks.
        settle_timeout: u64,
    },
}

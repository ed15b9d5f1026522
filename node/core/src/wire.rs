//! The messages peers exchange over their direct, ordered, authenticated connection, and their
//! bounded encoding.
//!
//! Every message but an acknowledgement carries a [`MessageId`] (per sender and receiver,
//! increasing); the receiver acknowledges it once handled and made durable, and the sender
//! resends what is not acknowledged (and, after a crash, what it had not yet recorded as
//! acknowledged). Delivery is therefore at-least-once, and handling is
//! idempotent: a balance update is applied once (a resend is a duplicate of, or older than, the
//! latest proof), and the other messages only move a payment forward from the state they name.

use crate::invoice::PaymentId;
use alloy_primitives::{Address, B256, keccak256};
use hoplite_gossip::ChannelAnnouncement;
use hoplite_htlc::crypto::PublicKey;
use hoplite_htlc::{
    Amount, BalanceChange, BalanceUpdate, BlockNumber, ChannelId, PrivateKey, Secret, SecretHash,
    Signature, TokenNetwork,
};
use serde::{Deserialize, Serialize};

/// The largest encoded [`Envelope`] accepted. A `LockedTransfer` with the longest route
/// ([`MAX_ROUTE_HOPS`] hops), maximal amounts and a keysend secret takes 2,420 bytes.
pub const MAX_MESSAGE_SIZE: usize = 4096;

/// The most hops a route may have (the router's default limit is 20).
pub const MAX_ROUTE_HOPS: usize = 20;

/// A message's sequence number from its sender to its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

/// What travels on a peer connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// A message to handle and acknowledge.
    Message {
        /// Its id.
        id: MessageId,
        /// The message.
        message: Message,
    },
    /// The receiver handled (and persisted) the message with this id.
    Ack(MessageId),
}

/// A protocol message between the two ends of a channel, or between a payee and its payer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A new signed state of the sender's direction of a channel. `onward` is present exactly
    /// when the change is a `LockedTransfer` (a new lock), and says what to do with the lock.
    Update {
        /// The change and the sender's signed proof after it.
        update: Box<BalanceUpdate>,
        /// For a new lock: where the payment goes next.
        onward: Option<Box<Onward>>,
    },
    /// The payee of `payment` holds a lock on `secret_hash` of `amount` and asks the payer for
    /// the secret.
    SecretRequest {
        /// The payment.
        payment: PaymentId,
        /// The lock's secret hash.
        secret_hash: SecretHash,
        /// What the payee's lock carries.
        amount: Amount,
    },
    /// The secret of a lock: to the payee from the payer, and from a lock's receiver back to
    /// its sender, who then unlocks.
    RevealSecret {
        /// The secret.
        secret: Secret,
    },
    /// The lock on `secret_hash` the receiver of this message sent will not be claimed: the
    /// payment failed further on. Travels back hop by hop to the payer; the locks expire.
    Failure {
        /// The lock's secret hash.
        secret_hash: SecretHash,
        /// Where it failed.
        at: FailurePoint,
        /// Why.
        reason: FailureReason,
    },
    /// The sender proposes to settle `channel` at once at `balances` (participant1's,
    /// participant2's, in the contract's order): what it holds now, with no lock pending. It
    /// sends nothing more on the channel until answered. Each proposal is answered once:
    /// `round` grows with every proposal of the sender, and a resend of one already answered
    /// is ignored.
    CloseRequest {
        /// The channel.
        channel: ChannelId,
        /// The proposal's number.
        round: u64,
        /// The final balances.
        balances: [Amount; 2],
    },
    /// The receiver's proposal `round`, signed by the sender (EIP-712 `CooperativeSettle`):
    /// the sender never changes the channel again.
    CloseAccepted {
        /// The channel.
        channel: ChannelId,
        /// The proposal answered.
        round: u64,
        /// The sender's signature of the settlement.
        signature: Signature,
    },
    /// The receiver's proposal `round` is not what the sender holds (or a lock is pending):
    /// the channel goes on.
    CloseRefused {
        /// The channel.
        channel: ChannelId,
        /// The proposal answered.
        round: u64,
    },
    /// The sender asks the receiver to sign its new withdrawn total in `channel`, valid up to
    /// block `expiry`, with no lock pending either way. It sends nothing more on the channel
    /// until answered, and the receiver, once it signs, accepts nothing more until the chain
    /// shows the withdrawal or the expiry passes.
    WithdrawRequest {
        /// The channel.
        channel: ChannelId,
        /// The request's number.
        round: u64,
        /// The sender's new withdrawn total.
        total: Amount,
        /// The last block it may land in.
        expiry: BlockNumber,
    },
    /// The receiver's withdrawal `round`, signed by the sender (EIP-712 `Withdraw`).
    WithdrawAccepted {
        /// The channel.
        channel: ChannelId,
        /// The request answered.
        round: u64,
        /// The sender's signature.
        signature: Signature,
    },
    /// The receiver's withdrawal `round` is more than the sender's view allows (or a lock is
    /// pending, or the channel is busy): the channel goes on.
    WithdrawRefused {
        /// The channel.
        channel: ChannelId,
        /// The request answered.
        round: u64,
    },
    /// The sender's signature of `channel`'s announcement at `capacity` (what the chain
    /// shows after a change of deposits): with both, either participant can announce it.
    AnnouncementSignature {
        /// The channel.
        channel: ChannelId,
        /// Its capacity.
        capacity: Amount,
        /// The sender's signature of the `ChannelAnnouncement`.
        signature: Signature,
    },
}

impl Message {
    /// Whether this message makes `older`, to the same peer and not yet acknowledged, pointless
    /// to deliver: the same request, reveal or failure again, or a later answer (or proposal,
    /// or announcement signature) for the same channel. Balance updates supersede nothing:
    /// each is a state the partner must apply in order.
    pub(crate) fn supersedes(&self, older: &Message) -> bool {
        use Message as M;
        match (self, older) {
            (M::Update { .. }, _) => false,
            (
                M::CloseAccepted { channel, .. } | M::CloseRefused { channel, .. },
                M::CloseAccepted { channel: c, .. } | M::CloseRefused { channel: c, .. },
            )
            | (M::CloseRequest { channel, .. }, M::CloseRequest { channel: c, .. })
            | (
                M::WithdrawAccepted { channel, .. } | M::WithdrawRefused { channel, .. },
                M::WithdrawAccepted { channel: c, .. } | M::WithdrawRefused { channel: c, .. },
            )
            | (M::WithdrawRequest { channel, .. }, M::WithdrawRequest { channel: c, .. })
            | (
                M::AnnouncementSignature { channel, .. },
                M::AnnouncementSignature { channel: c, .. },
            ) => channel == c,
            (M::SecretRequest { secret_hash, .. }, M::SecretRequest { secret_hash: h, .. })
            | (M::Failure { secret_hash, .. }, M::Failure { secret_hash: h, .. }) => {
                secret_hash == h
            }
            (M::RevealSecret { secret }, M::RevealSecret { secret: s }) => secret == s,
            _ => false,
        }
    }

    /// The channel the message is about, if it is about one.
    pub fn channel(&self) -> Option<ChannelId> {
        match self {
            Self::Update { update, .. } => Some(update.proof.proof.channel_id),
            Self::CloseRequest { channel, .. }
            | Self::CloseAccepted { channel, .. }
            | Self::CloseRefused { channel, .. }
            | Self::WithdrawRequest { channel, .. }
            | Self::WithdrawAccepted { channel, .. }
            | Self::WithdrawRefused { channel, .. }
            | Self::AnnouncementSignature { channel, .. } => Some(*channel),
            Self::SecretRequest { .. } | Self::RevealSecret { .. } | Self::Failure { .. } => None,
        }
    }
}

/// Where a payment failed: the node that gave up, and the channel it could not use (`None`
/// when the node itself refused, e.g. the payee).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailurePoint {
    /// The node that reported it.
    pub node: Address,
    /// The channel it could not forward on.
    pub channel: Option<ChannelId>,
}

/// Why a payment failed at a hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FailureReason {
    /// The outgoing channel can't carry the amount now.
    #[error("not enough capacity")]
    InsufficientCapacity,
    /// The incoming lock does not pay the mediator's fee.
    #[error("fee below the policy")]
    FeeInsufficient,
    /// The incoming lock leaves less than the mediator's expiry delta.
    #[error("expiry delta below the policy")]
    ExpiryTooSoon,
    /// The named next channel is not an open channel of the mediator with the named node.
    #[error("unknown next channel")]
    UnknownNextChannel,
    /// The amount is outside the direction's min/max lock, or it does not forward there.
    #[error("amount outside the forwarding policy")]
    PolicyViolation,
    /// The channel refused the new lock (too many pending, expiry range, ...).
    #[error("the channel refused the lock")]
    ChannelRefused,
    /// The payee does not know the payment, it expired, or it was already paid.
    #[error("the payee does not expect this payment")]
    UnknownPayment,
    /// The payee's lock carries less than the invoice asks.
    #[error("the payee's lock is below the invoice amount")]
    AmountTooLow,
    /// The lock's secret is public on-chain already: whoever holds a lock on it can claim it,
    /// so it pays for nothing.
    #[error("the lock's secret is public")]
    SecretPublic,
}

/// The routing data of a new lock: what its receiver does with it. (Not onion-wrapped yet: every
/// hop sees the rest of the route.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onward {
    /// The payment.
    pub payment: PaymentId,
    /// Who pays: the payee asks it for the secret.
    pub payer: Address,
    /// Who is paid.
    pub payee: Address,
    /// What the payee is to receive.
    pub amount: Amount,
    /// The hops after the receiver; empty when the receiver is the payee.
    pub hops: Vec<OnwardHop>,
    /// For a spontaneous payment (no invoice): the payer's secret, encrypted to the payee.
    pub keysend: Option<Keysend>,
}

/// A secret only the payee can read: `secret ⊕ keccak256("hoplite keysend" ‖ ecdh(ephemeral,
/// payee))`, a one-time pad under a key made afresh for each attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keysend {
    /// The sender's one-time public key.
    pub ephemeral: PublicKey,
    /// The encrypted secret.
    pub encrypted_secret: B256,
}

impl Keysend {
    /// Encrypts `secret` to `payee` under the one-time key `ephemeral`; `None` if `payee` is
    /// not a valid public key.
    pub fn seal(secret: Secret, payee: &PublicKey, ephemeral: &PrivateKey) -> Option<Self> {
        let pad = pad(&ephemeral.shared_secret(payee)?);
        Some(Self {
            ephemeral: ephemeral.public_key(),
            encrypted_secret: secret.0 ^ pad,
        })
    }

    /// The secret, read with the payee's key; `None` if the one-time key is not valid.
    pub fn open(&self, payee: &PrivateKey) -> Option<Secret> {
        let pad = pad(&payee.shared_secret(&self.ephemeral)?);
        Some(Secret(self.encrypted_secret ^ pad))
    }
}

fn pad(shared: &B256) -> B256 {
    keccak256([b"hoplite keysend".as_slice(), shared.as_slice()].concat())
}

/// One hop after a lock's receiver: the lock it is to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnwardHop {
    /// The channel to send it on.
    pub channel: ChannelId,
    /// The channel's other end.
    pub to: Address,
    /// The lock's amount.
    pub amount: Amount,
    /// The lock's expiration.
    pub expiration: BlockNumber,
}

/// Bytes from a peer that are not a well-formed [`Envelope`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_SIZE`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLong(usize),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Not a valid encoding.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// A route longer than [`MAX_ROUTE_HOPS`].
    #[error("route of {0} hops exceeds {MAX_ROUTE_HOPS}")]
    RouteTooLong(usize),
    /// `onward` is present on a change that is not a new lock, or missing on one that is.
    #[error("routing data does not match the balance change")]
    OnwardMismatch,
}

impl Envelope {
    /// The wire encoding (postcard).
    pub fn encode(&self) -> Vec<u8> {
        // Room for a new lock's update with its route from the start: from an empty `Vec`
        // postcard grows it by doubling, copying at each step.
        postcard::to_extend(self, Vec::with_capacity(512)).expect("an Envelope always serialises")
    }

    /// Parses [`encode`](Self::encode)'s output and checks its shape. Never panics; the input
    /// is bounded by [`MAX_MESSAGE_SIZE`], so what it can make us allocate is too.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let (envelope, rest): (Self, _) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        if let Self::Message {
            message: Message::Update { update, onward },
            ..
        } = &envelope
        {
            let is_lock = matches!(update.change, BalanceChange::LockedTransfer { .. });
            if is_lock != onward.is_some() {
                return Err(DecodeError::OnwardMismatch);
            }
            if let Some(onward) = onward
                && onward.hops.len() > MAX_ROUTE_HOPS
            {
                return Err(DecodeError::RouteTooLong(onward.hops.len()));
            }
        }
        Ok(envelope)
    }

    /// The signatures its receiver checks, each with its digest, as far as the message, the
    /// token network and its two ends (`[sender, receiver]`) determine them: what a driver can
    /// recover while the message is in flight ([`hoplite_htlc::crypto::Recovered`]). A balance
    /// update's proof; an announcement signature under the channel's `participants` in the
    /// chain's order if the driver knows them, else under both orders of the ends. Those
    /// checked against what the receiver holds (a settlement's, a withdrawal's) are not listed.
    pub fn signatures(
        &self,
        token_network: TokenNetwork,
        ends: [Address; 2],
        participants: Option<[Address; 2]>,
    ) -> Vec<(B256, Signature)> {
        let Self::Message { message, .. } = self else {
            return Vec::new();
        };
        match message {
            Message::Update { update, .. } => {
                let digest = update
                    .proof
                    .proof
                    .signing_hash_with(&token_network.domain_separator());
                vec![(digest, update.proof.signature)]
            }
            Message::AnnouncementSignature {
                channel,
                capacity,
                signature,
            } => participants
                .map_or_else(|| vec![ends, [ends[1], ends[0]]], |known| vec![known])
                .into_iter()
                .map(|participants| {
                    let digest = ChannelAnnouncement::digest(
                        token_network,
                        *channel,
                        participants,
                        *capacity,
                    );
                    (digest, *signature)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

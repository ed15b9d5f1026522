//! What a driver sees of a node: its configuration, the inputs it is fed, the outputs and
//! records it acts on, the events it reports, and the errors sorted by what the caller does.

use crate::invoice::{Invoice, InvoiceError, PaymentId};
use crate::monitor::{ChainFailure, ChainRequestId, LockChange};
use crate::state::{CorruptEntry, EntryKey, EntryValue};
use crate::wire::{DecodeError, Envelope, FailurePoint, FailureReason};
use alloy_primitives::Address;
use hoplite_chain::contracts::TokenNetwork::BalanceData;
use hoplite_chain::events::ChainEvent;
use hoplite_gossip::{
    GossipMessage, GossipParams, MAX_ADDRESS_LEN, MAX_ADDRESSES, MAX_ALIAS_LEN, Rejection, Verdict,
};
use hoplite_htlc::{
    Amount, BlockNumber, Channel, ChannelId, ErrorAction, Lock, Nonce, ReceiveError, Secret,
    SecretHash, SendError, Signature, SignedBalanceProof, TokenNetwork,
};
use hoplite_routing::{Policy, ProbabilisticParams, RouteError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a node behaves.
#[derive(Clone, Debug)]
pub struct Config {
    /// The token network it pays on.
    pub token_network: TokenNetwork,
    /// Blocks a lock's receiver needs to register a secret on-chain: new locks we accept must
    /// expire later than this, and we register a secret on-chain when an incoming lock we can
    /// claim is this close to expiring.
    pub reveal_timeout: u64,
    /// The challenge window of the channels we open, in blocks.
    pub settle_timeout: u32,
    /// Blocks a cooperative close may take: an unanswered proposal is dropped, and a channel
    /// whose settlement we signed but that has not settled is closed unilaterally.
    pub close_timeout: u64,
    /// Our forwarding policy, announced for every channel we have.
    pub policy: Policy,
    /// Blocks the payee's lock has left when we pay (routing's `final_expiry_delta`). As a
    /// payee we accept any lock we could still claim on-chain (more than `reveal_timeout`).
    pub final_expiry_delta: u32,
    /// How long `pay` keeps trying.
    pub payment_timeout: Duration,
    /// How many routes `pay` tries.
    pub max_attempts: usize,
    /// When an unacknowledged message is sent again.
    pub resend_after: Duration,
    /// Gossip limits.
    pub gossip: GossipParams,
    /// The scorer's weights.
    pub scorer: ProbabilisticParams,
    /// A name for people, in our node announcement (at most 32 bytes).
    pub alias: String,
    /// Where peers can reach us (libp2p multiaddrs), in our node announcement (at most 4, of
    /// at most 128 bytes).
    pub addresses: Vec<String>,
    /// Balance updates to one partner that may wait for its acknowledgement: past it we sign
    /// nothing more on its channels (a partner that never acknowledges can't grow our outbox).
    pub max_unacked: usize,
    /// Blocks after which a chain request that shows no effect is sent again (one that lost
    /// a conflict or never reached the chain is sent again the block after; a revert after
    /// this, doubling with each revert in a row). Below `reveal_timeout`, so a registration
    /// that went missing is retried in time.
    pub chain_retry_after: u64,
    /// Seeds every random choice the node makes (secrets, payment ids, the scorer's hasher).
    pub seed: u64,
}

impl Config {
    /// A configuration with sensible defaults on `token_network`.
    pub fn new(token_network: TokenNetwork, seed: u64) -> Self {
        Self {
            token_network,
            reveal_timeout: 10,
            settle_timeout: 500,
            close_timeout: 20,
            policy: Policy {
                base_fee: 1,
                fee_millionths: 1_000,
                expiry_delta: 20,
                min_lock: 1,
                max_lock: u128::MAX,
                enabled: true,
            },
            final_expiry_delta: 20,
            payment_timeout: Duration::from_secs(60),
            max_attempts: 5,
            resend_after: Duration::from_secs(5),
            gossip: GossipParams::default(),
            scorer: ProbabilisticParams::default(),
            alias: String::new(),
            addresses: Vec::new(),
            max_unacked: 1_024,
            chain_retry_after: 3,
            seed,
        }
    }

    /// Whether the configuration is usable: timing that keeps a mediator safe, room for an
    /// update to wait for its acknowledgement, and a node announcement within its bounds.
    pub(crate) fn check(&self) -> Result<(), CommandError> {
        let delta = u64::from(self.policy.expiry_delta);
        // A mediator that learns the secret just before its outgoing lock expires still has
        // `expiry_delta` blocks to claim the incoming one; it needs `reveal_timeout` of them.
        if self.reveal_timeout == 0
            || self.close_timeout == 0
            || self.chain_retry_after == 0
            || self.chain_retry_after >= self.reveal_timeout
            || delta <= self.reveal_timeout
            || u64::from(self.final_expiry_delta) <= self.reveal_timeout
            || u64::from(self.settle_timeout) <= self.reveal_timeout
        {
            return Err(CommandError::Timeouts);
        }
        if self.max_unacked == 0 {
            return Err(CommandError::NoUnackedUpdates);
        }
        if self.alias.len() > MAX_ALIAS_LEN
            || self.addresses.len() > MAX_ADDRESSES
            || self.addresses.iter().any(|a| a.len() > MAX_ADDRESS_LEN)
        {
            return Err(CommandError::AnnouncementTooLong);
        }
        Ok(())
    }
}

/// Something that happened outside the node.
#[derive(Clone, Debug)]
pub enum Input {
    /// A direct connection to a peer is up: unacknowledged messages to it are sent again.
    PeerConnected(Address),
    /// A peer's connection went down.
    PeerDisconnected(Address),
    /// Bytes from a peer's direct connection (an encoded [`Envelope`]).
    PeerMessage {
        /// The authenticated sender.
        from: Address,
        /// What it sent.
        bytes: Vec<u8>,
    },
    /// Bytes from the gossip topic (an encoded [`GossipMessage`]); `id` comes back with the
    /// verdict.
    Gossip {
        /// The peer that relayed it.
        from: Address,
        /// The runtime's handle on the message.
        id: u64,
        /// What it carried.
        bytes: Vec<u8>,
    },
    /// An event of the token network or secret registry, in block order.
    Chain(ChainEvent),
    /// A new block: lock expirations and on-chain deadlines count in blocks.
    Block(BlockNumber),
    /// The records of every [`Output::Persist`] up to `id` are durable.
    Persisted(PersistId),
    /// A chain request failed (reverted or not sent); the node sends it again later if it
    /// still matters (see `Config::chain_retry_after`). A request that succeeded needs no
    /// input: its events show it.
    ChainRequestFailed {
        /// The request's id.
        id: ChainRequestId,
        /// The request.
        request: ChainRequest,
        /// Why.
        failure: ChainFailure,
    },
}

/// Names one [`Output::Persist`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

/// What the node's state needs kept durable; [`Node::restore`](crate::Node::restore) takes it
/// back, in the order they were written. Keep the latest `Channel` record of each channel and
/// the latest `Entry` of each key (each replaces the one before; an `Entry` with no value
/// deletes its key); keep every `Invoice`, `InvoiceRevealed` and `Finished` record (they
/// accumulate, and may be dropped once their invoice expired) and every `LockChange` record
/// (they accumulate; a channel's go with its `Channel` record when `ChannelForgotten` comes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A channel's whole off-chain state: both directions and the partner's latest proof.
    Channel(Box<Channel>),
    /// A channel of ours settled with nothing left to unlock: drop its `Channel` and
    /// `LockChange` records.
    ChannelForgotten(ChannelId),
    /// One entry of what a node must not forget about work in progress (a payment under way,
    /// what a pending lock is for, a secret in use, an unacknowledged message, a request made
    /// on-chain...): keep the latest value of each key; `None` deletes it. Each call writes
    /// only the entries it changed (a message's removal may come with a later call's batch).
    Entry {
        /// Which entry.
        key: EntryKey,
        /// Its value (opaque), or `None`: it is gone.
        value: Option<EntryValue>,
    },
    /// An invoice we made.
    Invoice(Box<Invoice>),
    /// The payer of our invoice `payment` revealed the secret of its lock: the invoice takes
    /// no other payment.
    InvoiceRevealed {
        /// The invoice.
        payment: PaymentId,
        /// The lock being claimed.
        secret_hash: SecretHash,
    },
    /// How our state `nonce` of `channel` changed our lock set: the partner may close with any
    /// state of ours, and unlocking its pot needs that state's locks.
    LockChange {
        /// The channel.
        channel: ChannelId,
        /// Our state that made the change.
        nonce: Nonce,
        /// The change.
        change: LockChange,
    },
    /// A payment we made, or an invoice of ours that was paid: never again until it expires.
    Finished {
        /// The payment.
        payment: PaymentId,
        /// Its invoice's expiry, seconds.
        expires_at: u64,
    },
}

/// A transaction the node wants sent from its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainRequest {
    /// Open a channel with `partner`.
    OpenChannel {
        /// The other participant.
        partner: Address,
        /// Its challenge window.
        settle_timeout: u32,
    },
    /// Raise our total deposit in `channel` to `total`.
    Deposit {
        /// The channel.
        channel: ChannelId,
        /// Our new total.
        total: Amount,
    },
    /// Register a secret in the SecretRegistry, so a lock on it can be claimed on-chain.
    RegisterSecret {
        /// The secret.
        secret: Secret,
    },
    /// Close `channel` with the partner's latest proof (`None`: it never paid us).
    Close {
        /// The channel.
        channel: ChannelId,
        /// The partner's latest proof.
        partner_proof: Option<SignedBalanceProof>,
    },
    /// Submit the closer's newer proof during the challenge window (we are the non-closer).
    UpdateNonClosing {
        /// The closer's latest proof we hold.
        closer_proof: SignedBalanceProof,
    },
    /// Settle after the window with each participant's submitted balance data.
    Settle {
        /// The channel.
        channel: ChannelId,
        /// participant1's, participant2's.
        balances: [BalanceData; 2],
    },
    /// Settle `channel` at once at `balances` (participant1's, participant2's), which both
    /// signed (`signatures` in the same order).
    CooperativeSettle {
        /// The channel.
        channel: ChannelId,
        /// The final balances.
        balances: [Amount; 2],
        /// participant1's, participant2's.
        signatures: [Signature; 2],
    },
    /// Raise our withdrawn total in `channel` to `total`, which both signed (ours first) for
    /// blocks up to `expiry`.
    Withdraw {
        /// The channel.
        channel: ChannelId,
        /// Our new withdrawn total.
        total: Amount,
        /// The last block it may land in.
        expiry: BlockNumber,
        /// Ours, then the partner's.
        signatures: [Signature; 2],
    },
    /// Pay out all of `sender`'s pending locks of a settled channel.
    UnlockBatch {
        /// The channel.
        channel: ChannelId,
        /// Whose pot.
        sender: Address,
        /// Its locks in slot order.
        locks: Vec<Lock>,
    },
}

/// Something the driver must do, or be told.
#[derive(Clone, Debug)]
pub enum Output {
    /// Send to a peer over its direct connection (encode with [`Envelope::encode`]).
    Send {
        /// The peer.
        to: Address,
        /// What to send.
        envelope: Envelope,
    },
    /// Publish on the gossip topic.
    Publish(GossipMessage),
    /// The verdict on [`Input::Gossip`] `id`: relay it only if accepted.
    GossipVerdict {
        /// The runtime's handle on the message.
        id: u64,
        /// Accept, ignore or reject.
        verdict: Verdict,
    },
    /// Send a transaction; report a failure with [`Input::ChainRequestFailed`] and `id`.
    Chain {
        /// Its id.
        id: ChainRequestId,
        /// The transaction.
        request: ChainRequest,
    },
    /// Make `records` durable together (one transaction: all or none), then report
    /// [`Input::Persisted`] with `id`. A batch that can't be written must stop the node:
    /// the next batches carry only what changed after it. What the call that made them output besides (messages,
    /// acknowledgements, events, chain requests) is held back until then.
    Persist {
        /// Its id; ids grow by one with each batch.
        id: PersistId,
        /// What to keep, in order.
        records: Vec<Record>,
    },
    /// Something to tell the user.
    Event(Event),
}

/// What happened, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A channel of ours was opened on-chain.
    ChannelOpened {
        /// The channel.
        channel: ChannelId,
        /// The other participant.
        partner: Address,
    },
    /// A channel of ours was closed on-chain; the challenge window runs.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Who closed it.
        closer: Address,
    },
    /// Our cooperative close did not happen: the partner refused (its view differs, or a lock
    /// is pending), or did not answer within `close_timeout` blocks. The channel goes on; close
    /// it again later, or unilaterally.
    CloseRefused {
        /// The channel.
        channel: ChannelId,
        /// Whether the partner answered (refused) or stayed silent.
        answered: bool,
    },
    /// A channel of ours was settled on-chain.
    ChannelSettled {
        /// The channel.
        channel: ChannelId,
    },
    /// A payment of ours arrived: the payee has the secret and we unlocked.
    PaymentSent {
        /// The payment.
        payment: PaymentId,
        /// What the payee received.
        amount: Amount,
        /// What we paid on top.
        fee: Amount,
        /// The nodes it went through, payee last.
        route: Vec<Address>,
        /// How many routes were tried (this one last).
        attempts: usize,
    },
    /// A payment of ours will not be made.
    PaymentFailed {
        /// The payment.
        payment: PaymentId,
        /// Why.
        reason: PaymentFailure,
        /// The last failure an attempt reported, if any: where and why.
        last_failure: Option<(FailurePoint, FailureReason)>,
        /// How many routes were tried.
        attempts: usize,
    },
    /// We were paid (for an invoice, or spontaneously): the lock's sender unlocked.
    PaymentReceived {
        /// The payment: our invoice's id, or the payer's choice for a spontaneous payment
        /// (which may be any id, an invoice's among them: see `invoice`).
        payment: PaymentId,
        /// What the lock carried.
        amount: Amount,
        /// Whether it paid our invoice `payment` (else it was spontaneous).
        invoice: bool,
    },
    /// Our withdrawal landed: the chain paid it to our account.
    Withdrawn {
        /// The channel.
        channel: ChannelId,
        /// Our withdrawn total now.
        total: Amount,
    },
    /// Our withdrawal will not land: the partner refused it (`refused`), or it expired or
    /// the contract refused it. The channel goes on.
    WithdrawFailed {
        /// The channel.
        channel: ChannelId,
        /// Whether the partner refused to sign.
        refused: bool,
    },
    /// A partner paid us directly.
    DirectTransferReceived {
        /// The channel.
        channel: ChannelId,
        /// What it paid.
        amount: Amount,
    },
    /// We forwarded a payment and were paid for it.
    Forwarded {
        /// The incoming channel.
        channel: ChannelId,
        /// What we kept.
        fee: Amount,
    },
    /// A peer's message was not applied.
    PeerMessageRejected {
        /// The peer.
        from: Address,
        /// Why.
        error: PeerError,
    },
    /// A partner signed a state that breaks the rules: the channel can't go on off-chain.
    ChannelBroken {
        /// The channel.
        channel: ChannelId,
        /// What it did.
        error: ReceiveError,
    },
    /// A gossip message was invalid.
    GossipRejected {
        /// The peer that relayed it.
        from: Address,
        /// Why.
        rejection: Rejection,
    },
    /// A chain request failed (the node retries it while it matters).
    ChainRequestFailed {
        /// The request.
        request: ChainRequest,
        /// Why.
        failure: ChainFailure,
    },
}

/// Why a payment was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentFailure {
    /// More than the router handles (2¹²⁸).
    AmountTooLarge,
    /// No route could carry it.
    NoRoute(RouteError),
    /// Every attempt failed; the last failure is given.
    AttemptsExhausted,
    /// `payment_timeout` passed.
    Timeout,
    /// The payee got the secret but the lock expired unclaimed off-chain.
    Expired,
}

/// A peer message that was not applied, sorted by what the driver should do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The bytes are not a message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A balance update for a channel we don't have.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// A balance update for a channel the sender is not a participant of.
    #[error("{from} is not the partner in channel {channel}")]
    NotPartner {
        /// The channel.
        channel: ChannelId,
        /// Who sent it.
        from: Address,
    },
    /// The channel refused the update.
    #[error(transparent)]
    Update(#[from] ReceiveError),
    /// A balance update for a channel that is no longer open on-chain.
    #[error("channel {0} is closed")]
    ChannelClosed(ChannelId),
    /// A new state for a channel in a cooperative close: it carries none.
    #[error("channel {0} is closing")]
    ChannelClosing(ChannelId),
    /// A signature that is not the partner's.
    #[error("bad signature")]
    BadSignature,
    /// The partner expired a lock to us whose secret the registry shows revealed in time: the
    /// lock is ours on-chain, so the channel is closed to claim it.
    #[error("lock {0:?} was claimed on-chain; it can't expire")]
    LockClaimed(SecretHash),
    /// A secret request, reveal or failure that matches nothing we know.
    #[error("unsolicited {0}")]
    Unsolicited(&'static str),
}

/// What to do about a [`PeerError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Nothing: harmless (a resend, or a message that lost a race).
    Ignore,
    /// Log it; the peer may be buggy.
    Warn,
    /// The peer sends garbage: disconnect it.
    Disconnect,
    /// The partner broke the channel's rules: close it on-chain.
    CloseChannel,
}

impl PeerError {
    /// What the driver should do.
    pub fn action(&self) -> PeerAction {
        match self {
            Self::Decode(_) => PeerAction::Disconnect,
            Self::ChannelClosing(_) => PeerAction::Ignore,
            Self::BadSignature
            | Self::UnknownChannel(_)
            | Self::NotPartner { .. }
            | Self::ChannelClosed(_)
            | Self::Unsolicited(_) => PeerAction::Warn,
            Self::LockClaimed(_) => PeerAction::CloseChannel,
            Self::Update(error) => match error.action() {
                ErrorAction::Ignore => PeerAction::Ignore,
                ErrorAction::Reject => PeerAction::Warn,
                ErrorAction::CloseChannel => PeerAction::CloseChannel,
            },
        }
    }
}

/// A command the node refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The timing parameters can't keep a mediator safe.
    #[error(
        "need 0 < reveal_timeout < expiry_delta, final_expiry_delta and settle_timeout, and 0 < close_timeout"
    )]
    Timeouts,
    /// No such open channel of ours.
    #[error("no open channel {0}")]
    UnknownChannel(ChannelId),
    /// The channel refused.
    #[error(transparent)]
    Channel(#[from] SendError),
    /// The invoice can't be paid.
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    /// This payment was already started.
    #[error("payment {0:?} already started")]
    DuplicatePayment(PaymentId),
    /// A deposit total below the current one, or zero for a new channel.
    #[error("deposit total must grow")]
    DepositTooLow,
    /// Paying ourselves.
    #[error("paying ourselves")]
    OwnInvoice,
    /// A lock is pending in the channel: it can't be closed cooperatively now.
    #[error("locks pending in channel {0}")]
    LocksPending(ChannelId),
    /// The channel is in a cooperative close: it carries no new state.
    #[error("channel {0} is closing")]
    ChannelClosing(ChannelId),
    /// A persisted entry does not decode (restore).
    #[error(transparent)]
    Corrupt(#[from] CorruptEntry),
    /// `max_unacked` is 0: no balance update could ever be sent.
    #[error("max_unacked must be at least 1: with 0 no balance update could be sent")]
    NoUnackedUpdates,
    /// The alias or addresses exceed the node announcement's bounds.
    #[error("alias or addresses too long for a node announcement")]
    AnnouncementTooLong,
    /// `max_unacked` balance updates to this partner wait for its acknowledgement.
    #[error("{0} has not acknowledged our last updates")]
    PeerBacklogged(Address),
    /// No announcement of the payee tells its public key, so a secret can't be encrypted to it.
    #[error("no public key known for {0}")]
    UnknownPayee(Address),
}

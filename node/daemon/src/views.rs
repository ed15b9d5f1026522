//! What the REST API answers, as types: the node's task builds these and the OpenAPI
//! document (`GET /v1/openapi.json`, checked into `node/daemon/openapi.json`) is generated
//! from the same types, so the two can't drift. Amounts are decimal strings (uint256),
//! addresses and hashes `0x` hex.

use crate::history::InvoiceEntry;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error: a stable code for programs and a message for people.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// e.g. `malformed`, `unauthorized`, `unknown_channel`, `insufficient_balance`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// A command was taken; its outcome comes as events.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Accepted {}

/// The node.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// Its Ethereum address.
    #[schema(value_type = String)]
    pub address: Address,
    /// Its alias.
    pub alias: String,
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Where it listens.
    pub listen: Vec<String>,
    /// What it announces.
    pub announced: Vec<String>,
    /// The chain.
    pub chain_id: u64,
    /// The TokenNetwork followed.
    #[schema(value_type = String)]
    pub token_network: Address,
    /// The last block processed.
    pub block: u64,
    /// Whether the chain has been read up to its head.
    pub synced: bool,
    /// Where this run picked the chain up from the store.
    pub resumed: Option<Resumed>,
    /// Channels it holds.
    pub channels: usize,
    /// The newest event's id (0 before any).
    pub last_event: u64,
    /// The store's counters.
    pub store: StoreCounters,
}

/// Where a run resumed the chain.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Resumed {
    /// The stored checkpoint's block.
    pub block: u64,
    /// Stored events fed again.
    pub events: usize,
}

/// The store's writer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct StoreCounters {
    /// Transactions committed (one fsync each).
    pub commits: u64,
    /// The node's batches written.
    pub batches: u64,
}

/// A connected peer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Peer {
    /// Its address (from its key).
    #[schema(value_type = String)]
    pub address: Address,
    /// Its PeerId.
    pub peer_id: String,
}

/// A dial begun.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Dialing {
    /// The multiaddr dialled (and kept).
    pub dialing: String,
}

/// One of our channels.
#[derive(Serialize, Deserialize, ToSchema, PartialEq, Eq, Debug)]
pub struct Channel {
    /// Its id (decimal).
    pub id: String,
    /// The other participant.
    #[schema(value_type = String)]
    pub partner: Address,
    /// `opening`, `open`, `closed` or `settled`.
    pub state: String,
    /// Our total deposit.
    pub our_deposit: String,
    /// The partner's.
    pub partner_deposit: String,
    /// What we withdrew.
    pub our_withdrawn: String,
    /// What the partner withdrew.
    pub partner_withdrawn: String,
    /// What we can send.
    pub our_balance: String,
    /// What the partner can send.
    pub partner_balance: String,
    /// In our pending locks.
    pub our_locked: String,
    /// In the partner's pending locks.
    pub partner_locked: String,
    /// Our pending locks (we pay if revealed).
    pub our_locks: Vec<LockView>,
    /// The partner's pending locks (it pays if revealed).
    pub partner_locks: Vec<LockView>,
}

/// A pending hash-time-lock.
#[derive(Serialize, Deserialize, ToSchema, PartialEq, Eq, Debug)]
pub struct LockView {
    /// What it pays.
    pub amount: String,
    /// The last block a secret registered on-chain still claims it.
    pub expiration: u64,
    /// `sha256(secret)`.
    pub secret_hash: String,
}

/// The network as the node knows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Graph {
    /// Open channels.
    pub channels: Vec<GraphChannel>,
    /// The participants of those channels.
    pub nodes: Vec<GraphNode>,
}

/// An open channel of the network.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GraphChannel {
    /// Its id.
    pub id: String,
    /// participant1, participant2.
    #[schema(value_type = Vec<String>)]
    pub participants: [Address; 2],
    /// What it holds.
    pub capacity: String,
    /// Whether both announced it.
    pub announced: bool,
    /// Each participant's forwarding policy, once it announced one.
    pub policies: [Option<PolicyView>; 2],
}

/// A direction's forwarding policy.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// Fixed fee.
    pub base_fee: String,
    /// Fee in millionths of the amount.
    pub fee_millionths: u32,
    /// Blocks between its incoming and outgoing lock expirations.
    pub expiry_delta: u32,
    /// Whether it forwards.
    pub enabled: bool,
}

/// A node of the network.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GraphNode {
    /// Its address.
    #[schema(value_type = String)]
    pub address: Address,
    /// Its alias, once announced.
    pub alias: Option<String>,
    /// Where to reach it, once announced.
    pub addresses: Vec<String>,
}

/// An invoice of ours, with where it stands.
#[derive(Serialize, ToSchema)]
pub struct InvoiceView {
    /// The invoice.
    #[serde(flatten)]
    pub entry: InvoiceEntry,
    /// `open`, `paid` or `expired`.
    pub status: &'static str,
}

/// An event of the log: its id, and what happened.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventEntry {
    /// Its id (they grow by one); 0 for a notice.
    pub id: u64,
    /// `{"id", "at", "type", ...fields}`: `type` is one of `payment_sent`,
    /// `payment_failed`, `payment_received`, `direct_transfer_received`, `forwarded`,
    /// `channel_opened`, `channel_closed`, `close_refused`, `channel_settled`,
    /// `channel_broken`, `chain_request_failed`; or a notice of id 0: `gap` (events after
    /// `after` were dropped; `oldest` is the oldest kept) or `reset` (`after` is beyond the
    /// newest id, `newest`).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// A backup made.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Backup {
    /// Its file.
    pub file: String,
    /// The database generation it holds.
    pub generation: u64,
}

/// A backup in the backups folder.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BackupFile {
    /// Its name.
    pub name: String,
    /// Its path.
    pub file: String,
    /// Its size.
    pub bytes: u64,
}

//! The node: inputs, commands, outputs and timers, and what it learns from the chain and gossip.

use crate::ahead::{FoundRoute, Instance};
use crate::api::{
    ChainRequest, CommandError, Config, Event, Input, Output, PeerError, PersistId, Record,
};
use crate::gossip::PolicySchedule;
use crate::invoice::{Invoice, PaymentId};
use crate::monitor::{ChainFailure, ChainRequestId, LockChange, LockHistory};
use crate::payments::IncomingInvoice;
use crate::state::{EntryKey, NodeState};
use crate::view::{NetworkView, OwnOpenChannels, SharedView};
use crate::wire::{Envelope, Message, MessageId, Onward};
use alloy_primitives::Address;
use hoplite_chain::contracts::SecretRegistry::SecretRegistryEvents;
use hoplite_chain::contracts::TokenNetwork::TokenNetworkEvents as Tn;
use hoplite_chain::events::{ChainEvent, Event as ContractEvent, OnChainChannel};
use hoplite_htlc::crypto::Recovered;
use hoplite_htlc::{
    Amount, BalanceChange, BlockNumber, Channel, ChannelConfig, ChannelId, ErrorAction, Nonce,
    PrivateKey, ReceiveError, Secret, SecretHash, Side, Signature,
};
use hoplite_routing::ProbabilisticScorer;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::RwLockReadGuard;
use std::time::Duration;

/// What a call made that waits for the call's records to be durable.
#[derive(Clone, Debug)]
enum Outgoing {
    /// The unacknowledged message `id` to this peer.
    Message(Address, MessageId),
    /// An acknowledgement of the peer's message `id`.
    Ack(Address, MessageId),
    /// An event or a chain request: neither may tell of a state a crash could forget.
    Output(Box<Output>),
}

/// A Hoplite node as a state machine: no clock, no socket, no unseeded randomness.
///
/// # Call order
/// Drive it with [`handle_input`](Self::handle_input) for everything that happens outside
/// (peer bytes, gossip, chain events, new blocks, persistence completions, failed chain
/// requests), [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)'s
/// instant has come, and commands ([`open_channel`](Self::open_channel),
/// [`deposit`](Self::deposit), [`create_invoice`](Self::create_invoice), [`pay`](Self::pay),
/// [`send_spontaneous`](Self::send_spontaneous), [`send_direct`](Self::send_direct),
/// [`close_channel`](Self::close_channel), [`set_policy`](Self::set_policy)). After every
/// call, drain [`poll_output`](Self::poll_output) until `None`, then read `poll_timeout`
/// again. A refused command changes nothing and outputs nothing.
///
/// # The chain
/// Feed a block's events ([`Input::Chain`], in log order) before the block itself
/// ([`Input::Block`]): when block `n` comes in, the node takes every event of the blocks
/// before `n` as known, and decides each lock's fate from the registry's reveal block (a
/// lock past its expiration with no reveal seen is expired). Report a chain request that
/// failed with [`Input::ChainRequestFailed`]; nothing needs reporting on success, the events
/// show it. The node derives its on-chain duties anew after every call (but those between a
/// block's events and the block, so never from a half-fed block) and sends each again
/// while it matters, at most one transaction per channel at a time. (It looks only at the
/// channels that may owe something, and between blocks only at those the call changed: a
/// call's work follows its change, not the number of channels.)
///
/// # Persistence
/// Each call that changed what must survive a crash outputs one [`Output::Persist`] batch:
/// write its records in one transaction, then report [`Input::Persisted`] with its id. What
/// the call made besides (messages, acknowledgements, events, chain requests) is held back
/// until then, so a peer never sees a state, and a user or the chain never hears of one, that
/// a crash could make the node forget. A call whose only change is a message leaving the
/// outbox (acknowledged, superseded, or no longer of use) outputs no batch: that record goes
/// with the next one, or with [`Node::flush`]. A node that crashes before then sends the
/// message again after its restart, and the peer handles it as any resend: once.
///
/// # Time
/// `now` is wall-clock time shared by every node (the runtime: time since the UNIX epoch; the
/// simulator: one virtual clock for all), since invoice expiries and gossip timestamps cross
/// nodes; it must not go backwards. Gossip timestamps are its seconds. Blocks, not `now`,
/// count lock expirations and on-chain deadlines.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) key: PrivateKey,
    pub(crate) address: Address,
    pub(crate) now: Duration,
    pub(crate) block: BlockNumber,
    /// The network as the chain and gossip show it: ours alone, or shared with other nodes.
    pub(crate) view: SharedView,
    /// Whether the driver applies chain events to `view` (it is shared), so we don't.
    follows: bool,
    /// Restored to follow this shared view: until the first block we replay our history
    /// into a view of our own (the shared one shows only the present), then follow it.
    follow_after_replay: Option<SharedView>,
    /// Our channels' off-chain state.
    pub(crate) channels: BTreeMap<ChannelId, Channel>,
    /// Which of `channels` the view shows open, as last asked (not persisted: derived).
    pub(crate) own_open: OwnOpenChannels,
    pub(crate) scorer: ProbabilisticScorer,
    /// A route searched ahead for the next payment we start (see [`crate::ahead`]); dropped
    /// when a call ends.
    pub(crate) offered: Option<FoundRoute>,
    /// This instance, as routes searched ahead name it (a restored node is another).
    pub(crate) instance: Instance,
    /// How many payments took the route offered them.
    pub(crate) routes_taken: u64,
    /// The bookkeeping a crash must not lose, persisted entry by entry.
    pub(crate) state: NodeState,
    /// The bookkeeping as last persisted: `finish` writes what differs.
    persisted: NodeState,
    pub(crate) invoices: BTreeMap<PaymentId, IncomingInvoice>,
    /// Payments made and invoices paid, by id, with their invoice's expiry (seconds): kept
    /// until then so neither happens twice.
    pub(crate) finished: BTreeMap<PaymentId, u64>,
    /// Every change of our lock set by channel, until it settles (persisted as `LockChange`
    /// records).
    pub(crate) lock_history: BTreeMap<ChannelId, LockHistory>,
    /// Messages made by the current call, released with its persistence.
    pending: Vec<Outgoing>,
    /// Our channels changed by the current call.
    pub(crate) dirty: BTreeSet<ChannelId>,
    /// Our channels that may owe the chain something: the only ones the duties look at (a
    /// hub's call does not walk its thousands of quiet channels).
    pub(crate) watched: BTreeSet<ChannelId>,
    /// Our channels in which the partner has locks pending (all watched): the locks the
    /// duties may have to claim. With each, the earliest expiration among those locks: while
    /// that one can still be claimed in time, every one can.
    pub(crate) partner_locked: BTreeMap<ChannelId, BlockNumber>,
    /// When our channels' policies are due to be announced again.
    pub(crate) policy_schedule: PolicySchedule,
    /// Our signature of each of our channels' announcement, with the capacity it signs, as
    /// last sent to the partner: the partner's half completes the announcement without a
    /// second signature (a hub signs one per channel and capacity, not two). Not persisted:
    /// a restored node signs again, and gets the same signature (signing is deterministic).
    pub(crate) announcement_signed: BTreeMap<ChannelId, (Amount, Signature, Recovered)>,
    /// Our channels whose capacity changed, with the block of the last change: announced at
    /// the first block after it (see `gossip.rs`). Not persisted: a restored node is fed the
    /// chain again, and its deposits with it.
    pub(crate) capacity_changed: BTreeMap<ChannelId, BlockNumber>,
    /// Channels changed since the duties last decided whether each is watched.
    pub(crate) unsure: BTreeSet<ChannelId>,
    /// A block or a chain event came in since the duties were last derived: they look at
    /// every watched channel, not only the changed ones.
    pub(crate) block_since_duties: bool,
    /// Invoice, Finished and LockChange records made by this call.
    pub(crate) records: Vec<Record>,
    /// Records a restart recovers from losing, held for the next batch instead of making
    /// one of their own (see [`is_deferrable`]).
    deferred: Vec<Record>,
    pub(crate) outputs: VecDeque<Output>,
    /// Between one of a block's events and the block: no duties are derived.
    mid_block: bool,
    /// Message batches waiting for a persist id (and all before it).
    held: VecDeque<(PersistId, Vec<Outgoing>)>,
    next_persist: u64,
    persisted_through: u64,
}

impl Node {
    /// A node with no channels, at `now` and chain height `block`, with a view of the
    /// network of its own.
    pub fn new(
        config: Config,
        key: PrivateKey,
        now: Duration,
        block: BlockNumber,
    ) -> Result<Self, CommandError> {
        // Keyed like the node's random words: nobody else can grind collisions for it.
        let word = key.derive(b"view hash seed");
        let hash_seed = u64::from_le_bytes(word[..8].try_into().expect("8 of 32 bytes"));
        let view = SharedView::new(config.token_network, config.gossip, hash_seed);
        Self::with_view(config, key, now, block, view, false)
    }

    /// A node with no channels that follows `view`, shared with other nodes (of the same token
    /// network). The driver applies every chain event to the view itself
    /// ([`SharedView::apply_chain_event`]) before feeding it to the nodes it concerns: the
    /// channel's participants, and every node for a secret revealed; `Input::Block` goes to
    /// every node. Feed an event to the nodes it concerns before any other call to them: a
    /// node looks again at a channel's on-chain duties when it is told the channel changed.
    /// Gossip is not fed to following nodes: each writes its own announcements into the view
    /// (and a node learns when its own are due again from what it writes).
    pub fn following(
        config: Config,
        key: PrivateKey,
        now: Duration,
        block: BlockNumber,
        view: SharedView,
    ) -> Result<Self, CommandError> {
        Self::with_view(config, key, now, block, view, true)
    }

    fn with_view(
        config: Config,
        key: PrivateKey,
        now: Duration,
        block: BlockNumber,
        view: SharedView,
        follows: bool,
    ) -> Result<Self, CommandError> {
        config.check()?;
        let address = key.address();
        Ok(Self {
            scorer: ProbabilisticScorer::new(config.scorer, config.seed),
            offered: None,
            instance: Instance::default(),
            routes_taken: 0,
            own_open: OwnOpenChannels::default(),
            view,
            follows,
            follow_after_replay: None,
            state: NodeState::default(),
            mid_block: false,
            persisted: NodeState::default(),
            config,
            key,
            address,
            now,
            block,
            channels: BTreeMap::new(),
            invoices: BTreeMap::new(),
            finished: BTreeMap::new(),
            lock_history: BTreeMap::new(),
            pending: Vec::new(),
            dirty: BTreeSet::new(),
            watched: BTreeSet::new(),
            partner_locked: BTreeMap::new(),
            policy_schedule: PolicySchedule::default(),
            announcement_signed: BTreeMap::new(),
            capacity_changed: BTreeMap::new(),
            unsure: BTreeSet::new(),
            block_since_duties: true,
            records: Vec::new(),
            deferred: Vec::new(),
            outputs: VecDeque::new(),
            held: VecDeque::new(),
            next_persist: 0,
            persisted_through: 0,
        })
    }

    /// Our address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The block we believe is the latest.
    pub fn block(&self) -> BlockNumber {
        self.block
    }

    /// One of our channels.
    pub fn channel(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// Our channels.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// A channel of the token network as the chain's events built it.
    pub fn onchain_channel(&self, id: ChannelId) -> Option<OnChainChannel> {
        self.view.read().channel(id).cloned()
    }

    /// The network as we see it: every channel on-chain, the graph, what gossip told us.
    pub fn view(&self) -> RwLockReadGuard<'_, NetworkView> {
        self.view.read()
    }

    /// How many messages to `peer` wait for its acknowledgement.
    pub fn unacknowledged(&self, peer: Address) -> usize {
        self.state.outbox.len(peer)
    }

    /// Outputs the records held for the next batch (see "Persistence" above) as a batch of
    /// their own, if there are any. A runtime calls it before it stops cleanly, so that a
    /// restart sends nothing again.
    pub fn flush(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.deferred);
        self.persist(records, Vec::new());
    }

    /// How many changes of our lock set in `channel` are kept (until it settles).
    pub fn lock_changes_kept(&self, channel: ChannelId) -> usize {
        self.lock_history.get(&channel).map_or(0, LockHistory::len)
    }

    /// The next output to act on.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        let resend = self.state.outbox.next_due(self.config.resend_after);
        let deadline = self
            .state
            .payments
            .values()
            .filter(|payment| payment.is_pending())
            .map(|payment| payment.deadline)
            .min();
        let announce = self.policy_schedule.next();
        debug_assert!(
            self.channels.keys().all(|c| {
                self.partner_of(*c).is_err()
                    || self
                        .announcement_due(*c)
                        .is_none_or(|due| announce.is_some_and(|next| next <= due))
            }),
            "an announcement due before the schedule says"
        );
        resend
            .into_iter()
            .chain(deadline)
            .chain(announce)
            .chain(self.node_announcement_due())
            .min()
    }

    /// Resends unacknowledged messages and gives up payments past their deadline.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance(now);
        for (to, id, message) in self.state.outbox.due(now, self.config.resend_after) {
            let envelope = Envelope::Message { id, message };
            self.outputs.push_back(Output::Send { to, envelope });
        }
        self.expire_payments();
        self.forget_expired();
        self.refresh_gossip();
        self.finish();
    }

    /// Handles one input.
    pub fn handle_input(&mut self, now: Duration, input: Input) {
        self.advance(now);
        // From one of a block's events to the block itself, the duties wait: they are derived
        // from the whole block, never from a half-fed one (nor a half-replayed chain).
        match input {
            Input::Chain(_) => self.mid_block = true,
            Input::Block(_) => self.mid_block = false,
            _ => {}
        }
        if matches!(input, Input::Chain(_) | Input::Block(_)) {
            self.block_since_duties = true;
        }
        match input {
            Input::PeerConnected(peer) => self.resend_all(peer),
            // Resent when it is back, not into the void meanwhile.
            Input::PeerDisconnected(peer) => self.state.outbox.disconnected(peer),
            Input::PeerMessage { from, bytes } => self.handle_peer_bytes(from, &bytes),
            Input::Gossip { from, id, bytes } => self.handle_gossip(from, id, &bytes),
            Input::Chain(event) => self.handle_chain_event(&event),
            Input::Block(block) => {
                if let Some(shared) = self.follow_after_replay.take() {
                    // The replay is over: from now on the shared view is ours.
                    self.view = shared;
                    self.follows = true;
                    self.unsure.extend(self.channels.keys().copied());
                    // Our policies as the network saw them, not as the replay did.
                    let ours: Vec<ChannelId> = self.channels.keys().copied().collect();
                    for channel in ours {
                        let due = self.announcement_due(channel);
                        self.policy_schedule.set(channel, due);
                    }
                }
                self.handle_block(block)
            }
            Input::Persisted(id) => self.handle_persisted(id),
            Input::ChainRequestFailed {
                id,
                request,
                failure,
            } => self.handle_chain_request_failed(id, request, failure),
        }
        self.end_call(!self.mid_block);
    }

    /// Opens a channel with `partner` and deposits `deposit` once it is open.
    pub fn open_channel(
        &mut self,
        now: Duration,
        partner: Address,
        deposit: Amount,
    ) -> Result<(), CommandError> {
        self.advance(now);
        if deposit.is_zero() {
            return Err(CommandError::DepositTooLow);
        }
        self.state.pending_opens.insert(partner, deposit);
        self.send_chain_request(ChainRequest::OpenChannel {
            partner,
            settle_timeout: self.config.settle_timeout,
        });
        self.finish();
        Ok(())
    }

    /// Raises our total deposit in `channel` to `total`.
    pub fn deposit(
        &mut self,
        now: Duration,
        channel: ChannelId,
        total: Amount,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let ours = self
            .channels
            .get(&channel)
            .ok_or(CommandError::UnknownChannel(channel))?;
        if total <= ours.participant(Side::Ours).total_deposit() {
            return Err(CommandError::DepositTooLow);
        }
        // A settlement being signed must add up to what the channel holds.
        if self.is_closing(channel) {
            return Err(CommandError::ChannelClosing(channel));
        }
        // The duties send it, and again until the chain shows it.
        let monitor = self.state.monitors.entry(channel).or_default();
        monitor.deposit = monitor.deposit.max(Some(total));
        self.finish();
        Ok(())
    }

    /// An invoice for `amount`, valid for `valid_for`.
    pub fn create_invoice(
        &mut self,
        now: Duration,
        amount: Amount,
        valid_for: Duration,
    ) -> Invoice {
        self.advance(now);
        let payment = PaymentId(self.random_word());
        let expires_at = now.saturating_add(valid_for).as_secs();
        let invoice = Invoice::sign(
            &self.key,
            self.config.token_network,
            payment,
            amount,
            expires_at,
        );
        self.invoices.insert(payment, IncomingInvoice::new(invoice));
        self.records.push(Record::Invoice(Box::new(invoice)));
        self.finish();
        invoice
    }

    /// Pays `amount` to the partner of `channel` directly (no lock).
    pub fn send_direct(
        &mut self,
        now: Duration,
        channel: ChannelId,
        amount: Amount,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let sent = self.sign_and_send(channel, BalanceChange::DirectTransfer { amount }, None);
        self.finish();
        sent
    }

    /// Signs our next state of `channel` after `change` and queues it to the partner (held back
    /// until persisted). A change of our lock set goes into the channel's lock history: the
    /// partner may close with any state of ours it holds, and its pot unlocks with that
    /// state's locks.
    pub(crate) fn sign_and_send(
        &mut self,
        channel: ChannelId,
        change: BalanceChange,
        onward: Option<Onward>,
    ) -> Result<(), CommandError> {
        let partner = self.partner_of(channel)?;
        if self.is_closing(channel) {
            return Err(CommandError::ChannelClosing(channel));
        }
        // Settling a lock is exempt: it pays the partner what it is owed, and there are no
        // more of them than locks we sent, which the bound stops.
        let settles = matches!(
            change,
            BalanceChange::Unlock { .. } | BalanceChange::LockExpired { .. }
        );
        if !settles && self.backlogged(partner) {
            return Err(CommandError::PeerBacklogged(partner));
        }
        let ours = self
            .channels
            .get_mut(&channel)
            .expect("partner_of found it");
        let update = ours.send(&self.key, change, self.block)?;
        let lock_change = match change {
            BalanceChange::DirectTransfer { .. } => None,
            BalanceChange::LockedTransfer { lock } => Some(LockChange::Added(lock)),
            BalanceChange::Unlock { secret } => Some(LockChange::Removed(secret.hash())),
            BalanceChange::LockExpired { secret_hash } => Some(LockChange::Removed(secret_hash)),
        };
        if let Some(lock_change) = lock_change {
            self.record_lock_change(channel, update.proof.proof.nonce, lock_change);
        }
        self.touch(channel);
        self.send(
            partner,
            Message::Update {
                update: Box::new(update),
                onward: onward.map(Box::new),
            },
        );
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn partner_of(&self, channel: ChannelId) -> Result<Address, CommandError> {
        let open = self.view.read().is_open(channel);
        match self.channels.get(&channel) {
            Some(ours) if open => Ok(ours.participant(Side::Partner).address()),
            _ => Err(CommandError::UnknownChannel(channel)),
        }
    }

    pub(crate) fn advance(&mut self, now: Duration) {
        // Time never runs backwards here, whatever the driver does.
        self.now = self.now.max(now);
        self.scorer.time_passed(self.now);
    }

    pub(crate) fn random_word(&mut self) -> alloy_primitives::B256 {
        self.state.counters.draws += 1;
        let mut input = [0u8; 16];
        input[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        input[8..].copy_from_slice(&self.state.counters.draws.to_le_bytes());
        // Keyed: a payment's secret must not be guessable from the seed alone (a daemon's
        // seed has 64 bits; a simulator's is public).
        self.key.derive(&input)
    }

    /// Reports `event` once this call's records are durable.
    pub(crate) fn event(&mut self, event: Event) {
        self.pending
            .push(Outgoing::Output(Box::new(Output::Event(event))));
    }

    /// Outputs a chain request under a new id.
    pub(crate) fn send_chain_request(&mut self, request: ChainRequest) -> ChainRequestId {
        self.state.counters.chain_requests += 1;
        let id = ChainRequestId(self.state.counters.chain_requests);
        self.pending
            .push(Outgoing::Output(Box::new(Output::Chain { id, request })));
        id
    }

    fn handle_chain_request_failed(
        &mut self,
        id: ChainRequestId,
        request: ChainRequest,
        failure: ChainFailure,
    ) {
        if let ChainRequest::OpenChannel { partner, .. } = request {
            // No channel came of it: its deposit must not go into a later one.
            self.state.pending_opens.remove(&partner);
        }
        if let ChainRequest::Withdraw {
            channel,
            total,
            expiry,
            ..
        } = request
        {
            self.withdrawal_failed(channel, (total, expiry), &failure);
        }
        self.chain_request_failed(id, &failure);
        self.event(Event::ChainRequestFailed { request, failure });
    }

    /// Marks a channel changed: it is persisted before this call's messages go out.
    pub(crate) fn touch(&mut self, channel: ChannelId) {
        self.dirty.insert(channel);
    }

    /// Queues a message to `to`; it goes out when this call's changes are durable. An
    /// unacknowledged message it supersedes is dropped, so a peer that asks again and again
    /// can't grow our outbox.
    pub(crate) fn send(&mut self, to: Address, message: Message) {
        self.state.counters.messages += 1;
        let id = MessageId(self.state.counters.messages);
        self.state.outbox.push(to, id, message);
        self.pending.push(Outgoing::Message(to, id));
    }

    /// Acknowledges the peer's message `id` once this call's changes are durable.
    fn ack(&mut self, to: Address, id: MessageId) {
        self.pending.push(Outgoing::Ack(to, id));
    }

    /// Ends a call: persists what changed and holds this call's messages until it is durable.
    pub(crate) fn finish(&mut self) {
        self.end_call(!self.mid_block);
    }

    /// [`Self::finish`], deriving the chain duties first if `derive`.
    fn end_call(&mut self, derive: bool) {
        self.offered = None;
        if derive {
            self.chain_duties();
        }
        self.forget_unused_secrets();
        // Whether they are watched is decided when the duties are next derived.
        self.unsure.extend(self.dirty.iter().copied());
        self.unsure.extend(self.state.monitors.marked().copied());
        let batch = std::mem::take(&mut self.pending);
        let mut records: Vec<Record> = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.channels.get(&id))
            .map(|channel| Record::Channel(Box::new(channel.clone())))
            .collect();
        records.append(&mut self.records);
        self.persisted.catch_up(&mut self.state, &mut records);
        if records.iter().all(is_deferrable) {
            self.deferred.append(&mut records);
        } else if !self.deferred.is_empty() {
            // Before this call's records, in the order they were made.
            records.splice(0..0, self.deferred.drain(..));
        }
        if records.is_empty() {
            // Nothing to persist, but nothing overtakes a held batch either.
            match self.held.back() {
                Some(&(id, _)) if !batch.is_empty() => self.held.push_back((id, batch)),
                _ => self.release(batch),
            }
            return;
        }
        self.persist(records, batch);
    }

    /// Outputs `records` as the next batch, holding `batch` until it is durable.
    fn persist(&mut self, records: Vec<Record>, batch: Vec<Outgoing>) {
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        self.outputs.push_back(Output::Persist { id, records });
        self.held.push_back((id, batch));
    }

    /// A node from its persisted records (see [`Record`]), at `now` and chain height `block`;
    /// an entry that does not decode is refused. The policy last set with
    /// [`set_policy`](Self::set_policy) replaces `config`'s.
    ///
    /// Then feed it every event of both contracts, the TokenNetwork's and the
    /// SecretRegistry's, from the deployment block on, and only then the current block (its
    /// view of the network and every secret revealed on-chain are rebuilt from them, not
    /// persisted; its own channels keep their persisted state); then report every connected
    /// peer with [`Input::PeerConnected`]: unacknowledged messages go out again. Other nodes'
    /// policies come back with their next announcements.
    pub fn restore(
        config: Config,
        key: PrivateKey,
        records: impl IntoIterator<Item = Record>,
        now: Duration,
        block: BlockNumber,
    ) -> Result<Self, CommandError> {
        let node = Self::new(config, key, now, block)?;
        node.restored(records)
    }

    /// [`Node::restore`] for a node that follows a shared `view` ([`Node::following`]). Feed
    /// it the events that concern it (those of its channels, and every secret revealed) from
    /// the deployment block on, then the current block. It replays them into a view of its
    /// own, so each reacts to the network as it was then (the shared view shows only the
    /// present), and follows the shared view from that block on.
    pub fn restore_following(
        config: Config,
        key: PrivateKey,
        records: impl IntoIterator<Item = Record>,
        now: Duration,
        block: BlockNumber,
        view: SharedView,
    ) -> Result<Self, CommandError> {
        let mut node = Self::new(config, key, now, block)?;
        node.follow_after_replay = Some(view);
        node.restored(records)
    }

    fn restored(mut self, records: impl IntoIterator<Item = Record>) -> Result<Self, CommandError> {
        let (now, block) = (self.now, self.block);
        let node = &mut self;
        for record in records {
            match record {
                Record::Channel(channel) => {
                    node.channels.insert(channel.id(), *channel);
                }
                Record::ChannelForgotten(channel) => {
                    node.channels.remove(&channel);
                    node.lock_history.remove(&channel);
                }
                Record::Invoice(invoice) => {
                    node.invoices
                        .insert(invoice.payment, IncomingInvoice::new(*invoice));
                }
                Record::InvoiceRevealed {
                    payment,
                    secret_hash,
                } => {
                    if let Some(invoice) = node.invoices.get_mut(&payment) {
                        invoice.revealed(secret_hash);
                    }
                }
                Record::Finished {
                    payment,
                    expires_at,
                } => {
                    node.finished.insert(payment, expires_at);
                }
                Record::LockChange {
                    channel,
                    nonce,
                    change,
                } => node
                    .lock_history
                    .entry(channel)
                    .or_default()
                    .record(nonce, change),
                Record::Entry { key, value } => node.state.apply(key, value.as_ref())?,
            }
        }
        if let Some(policy) = node.state.counters.policy {
            node.config.policy = policy;
        }
        (node.state, node.persisted) = std::mem::take(&mut node.state).restored(now);
        // A request may have been durable yet never sent: what is still due goes out at once
        // (a duplicate only reverts).
        for in_flight in node
            .state
            .monitors
            .values_mut()
            .filter_map(|m| m.in_flight.as_mut())
            .chain(node.state.registrations.values_mut())
        {
            in_flight.retry_at = block;
        }
        node.resubmit_withdrawals();
        node.mid_block = true;
        let finished = &node.finished;
        node.invoices.retain(|id, _| !finished.contains_key(id));
        // Changes of states whose channel record never became durable were never sent.
        for (id, history) in &mut node.lock_history {
            let nonce = node
                .channels
                .get(id)
                .map_or(Nonce(0), |c| c.participant(Side::Ours).nonce());
            history.truncate_after(nonce);
        }
        // Each decided at the first duties, once the chain has been replayed.
        node.unsure = node.channels.keys().copied().collect();
        Ok(self)
    }

    fn handle_persisted(&mut self, id: PersistId) {
        // Through `id`: an id we never gave is the driver's bug, not a reason to release.
        if id.0 <= self.persisted_through || id.0 > self.next_persist {
            return;
        }
        self.persisted_through = id.0;
        while self
            .held
            .front()
            .is_some_and(|(id, _)| id.0 <= self.persisted_through)
        {
            let (_, batch) = self.held.pop_front().expect("front exists");
            self.release(batch);
        }
    }

    /// Outputs what a call made once its records are durable.
    fn release(&mut self, batch: Vec<Outgoing>) {
        let now = self.now;
        for outgoing in batch {
            let (to, id) = match outgoing {
                Outgoing::Ack(to, id) => {
                    let envelope = Envelope::Ack(id);
                    self.outputs.push_back(Output::Send { to, envelope });
                    continue;
                }
                Outgoing::Output(output) => {
                    self.outputs.push_back(*output);
                    continue;
                }
                Outgoing::Message(to, id) => (to, id),
            };
            // Gone meanwhile (acknowledged, superseded, or its channel closed): nothing to send.
            let Some(message) = self.state.outbox.mark_sent(to, id, now) else {
                continue;
            };
            let envelope = Envelope::Message {
                id,
                message: message.clone(),
            };
            self.outputs.push_back(Output::Send { to, envelope });
        }
    }

    fn resend_all(&mut self, to: Address) {
        for (id, message) in self.state.outbox.reconnected(to, self.now) {
            let envelope = Envelope::Message { id, message };
            self.outputs.push_back(Output::Send { to, envelope });
        }
    }

    fn handle_peer_bytes(&mut self, from: Address, bytes: &[u8]) {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => return self.reject(from, error.into()),
        };
        match envelope {
            Envelope::Ack(id) => {
                self.state.outbox.acknowledged(from, id);
            }
            Envelope::Message { id, message } => {
                let is_update = matches!(message, Message::Update { .. });
                let handled = match message {
                    Message::Update { update, onward } => {
                        self.handle_update(from, &update, onward.map(|onward| *onward))
                    }
                    Message::SecretRequest {
                        payment,
                        secret_hash,
                        amount,
                    } => self.handle_secret_request(from, payment, secret_hash, amount),
                    Message::RevealSecret { secret } => self.handle_reveal(from, secret),
                    Message::Failure {
                        secret_hash,
                        at,
                        reason,
                    } => self.handle_failure(from, secret_hash, at, reason),
                    Message::CloseRequest {
                        channel,
                        round,
                        balances,
                    } => self.handle_close_request(from, channel, round, balances),
                    Message::CloseAccepted {
                        channel,
                        round,
                        signature,
                    } => self.handle_close_accepted(from, channel, round, signature),
                    Message::CloseRefused { channel, round } => {
                        self.handle_close_refused(from, channel, round)
                    }
                    Message::WithdrawRequest {
                        channel,
                        round,
                        total,
                        expiry,
                    } => self.handle_withdraw_request(from, channel, round, total, expiry),
                    Message::WithdrawAccepted {
                        channel,
                        round,
                        signature,
                    } => self.handle_withdraw_accepted(from, channel, round, signature),
                    Message::WithdrawRefused { channel, round } => {
                        self.handle_withdraw_refused(from, channel, round)
                    }
                    Message::AnnouncementSignature {
                        channel,
                        capacity,
                        signature,
                    } => self.handle_announcement_signature(from, channel, capacity, signature),
                };
                let acknowledge = match handled {
                    Ok(()) => true,
                    Err(error) => {
                        // An acknowledged update is one we hold (the sender forgets older
                        // states of its own on it), so only a resend of one we applied is
                        // acknowledged; refused updates are resent in order until they apply
                        // or their channel closes. Any other message that was refused is
                        // acknowledged: resending it can't help.
                        let acknowledge = match &error {
                            PeerError::Update(e) => {
                                e.action() == ErrorAction::Ignore
                                    || matches!(e, ReceiveError::StaleNonce { .. })
                            }
                            PeerError::UnknownChannel(_)
                            | PeerError::NotPartner { .. }
                            | PeerError::ChannelClosed(_)
                            | PeerError::ChannelClosing(_) => !is_update,
                            PeerError::Decode(_)
                            | PeerError::BadSignature
                            | PeerError::Unsolicited(_) => true,
                            // Not applied, and never will be: the channel closes.
                            PeerError::LockClaimed(_) => false,
                        };
                        self.reject(from, error);
                        acknowledge
                    }
                };
                if acknowledge {
                    self.ack(from, id);
                }
            }
        }
    }

    pub(crate) fn reject(&mut self, from: Address, error: PeerError) {
        if let PeerError::Update(e) = &error
            && e.action() == ErrorAction::Ignore
        {
            return;
        }
        self.event(Event::PeerMessageRejected { from, error });
    }

    fn handle_chain_event(&mut self, event: &ChainEvent) {
        if !self.follows {
            self.view.apply_chain_event(event);
        }
        if let ContractEvent::SecretRegistry(SecretRegistryEvents::SecretRevealed(e)) = &event.event
        {
            return self.handle_secret_revealed(Secret(e.secret));
        }
        if let Some(opened) = OnChainChannel::opened(event) {
            self.channel_opened(&opened);
            return;
        }
        let Some(id) = event.channel_id() else {
            return;
        };
        if self.channels.contains_key(&id) {
            self.unsure.insert(id);
        }
        // Whatever we had out on this channel landed, or can only revert now: the channel's
        // state changed under it.
        if let Some(monitor) = self.state.monitors.get_mut(&id) {
            monitor.in_flight = None;
        }
        let ContractEvent::TokenNetwork(contract_event) = &event.event else {
            return;
        };
        match contract_event {
            Tn::ChannelNewDeposit(e) => {
                if let Some(ours) = self.channels.get_mut(&id) {
                    let side = if e.participant == self.address {
                        Side::Ours
                    } else {
                        Side::Partner
                    };
                    // The chain only raises totals; a refusal here means it overflows.
                    if ours
                        .set_total_deposit(side, Amount::from(e.totalDeposit))
                        .is_ok()
                    {
                        self.dirty.insert(id);
                    }
                    self.capacity_changed(id, BlockNumber(event.block));
                }
            }
            Tn::ChannelWithdraw(e) => {
                self.handle_withdrawn(id, e.participant, Amount::from(e.totalWithdraw));
                self.capacity_changed(id, BlockNumber(event.block));
            }
            Tn::ChannelClosed(e) => {
                self.forget_announcement(id);
                // A withdrawal can't land on a closed channel; the close freezes it anyway.
                self.withdrawal_closed(id);
                self.handle_closed(id, e.closer);
            }
            Tn::LockUnlocked(e) if self.channels.contains_key(&id) => {
                self.handle_pot_paid(id, e.sender, Some(SecretHash(e.secretHash)));
            }
            Tn::LocksUnlocked(e) if self.channels.contains_key(&id) => {
                self.handle_pot_paid(id, e.sender, None);
            }
            Tn::ChannelSettled(_) => {
                self.forget_announcement(id);
                if let Some(ours) = self.channels.get(&id) {
                    // A cooperative settlement ends a channel that was never closed: what is
                    // still unacknowledged on it can never apply.
                    let partner = ours.participant(Side::Partner).address();
                    self.state
                        .outbox
                        .drop_where(partner, |message| message.channel() == Some(id));
                    self.state.closing.remove(&id);
                    self.state.close_answered.remove(&id);
                    self.event(Event::ChannelSettled { channel: id });
                    self.handle_settled(id);
                }
            }
            _ => {}
        }
        self.forget_if_done(id);
    }

    /// A channel settled with nothing left to unlock is done: the network view dropped it,
    /// and so do we if it is ours (a tombstone keeps a restored node from taking it up again
    /// when the chain is replayed to it).
    fn forget_if_done(&mut self, id: ChannelId) {
        if !self.channels.contains_key(&id) || self.view.read().onchain.contains_key(&id) {
            return;
        }
        self.channels.remove(&id);
        self.state.forgotten.insert(id, ());
        self.lock_history.remove(&id);
        self.state.monitors.remove(&id);
        self.state.closing.remove(&id);
        self.state.close_answered.remove(&id);
        self.forget_announcement(id);
        self.state.withdrawing.remove(&id);
        // Nothing of it is pending on-chain any more: a lock of ours still on the books was
        // not paid to its receiver, one to us will never pay.
        let left: Vec<(SecretHash, ChannelId)> = self
            .state
            .sent
            .keys()
            .filter(|(_, c)| *c == id)
            .copied()
            .collect();
        for key in left {
            if let Some(sent) = self.state.sent.remove(&key) {
                self.sent_lock_expired(sent);
            }
        }
        self.state.received.retain(|(_, c), _| *c != id);
        self.records.push(Record::ChannelForgotten(id));
    }

    fn channel_opened(&mut self, opened: &OnChainChannel) {
        let id = opened.id;
        let [one, two] = [opened.state.participant1, opened.state.participant2];
        let settle_timeout = u64::from(opened.state.settleTimeout);
        let partner = match self.address {
            a if a == one => two,
            a if a == two => one,
            _ => return,
        };
        if self.state.forgotten.contains_key(&id) {
            // Settled and forgotten before a restart: the replay shows its history again.
            return;
        }
        if self.channels.contains_key(&id) {
            // Restored from a record: replaying the chain must not reset it.
            self.announce_policy(id);
            self.announce_node();
            return;
        }
        let config = ChannelConfig {
            reveal_timeout: self.config.reveal_timeout,
            settle_timeout,
        };
        // A window too short for our reveal timeout is a channel we can't use safely.
        let Ok(channel) =
            Channel::new(self.config.token_network, id, config, self.address, partner)
        else {
            return;
        };
        self.channels.insert(id, channel);
        self.dirty.insert(id);
        self.event(Event::ChannelOpened {
            channel: id,
            partner,
        });
        // The opener is participant1: only a channel we opened takes the deposit we asked for.
        if one == self.address
            && let Some(deposit) = self.state.pending_opens.remove(&partner)
        {
            self.state.monitors.entry(id).or_default().deposit = Some(deposit);
        }
        self.announce_policy(id);
        self.announce_node();
    }

    fn handle_block(&mut self, block: BlockNumber) {
        if block <= self.block {
            return;
        }
        self.block = block;
        self.expire_locks();
        self.announce_settled_capacities();
        // A secret request, a reveal or a failure expires with its lock: once no lock of ours
        // has its secret hash, it is moot.
        let mut outbox = std::mem::take(&mut self.state.outbox);
        outbox.drop_all_where(|message| match message {
            Message::SecretRequest { secret_hash, .. } | Message::Failure { secret_hash, .. } => {
                !self.has_lock_on(secret_hash)
            }
            Message::RevealSecret { secret } => !self.has_lock_on(&secret.hash()),
            _ => false,
        });
        self.state.outbox = outbox;
    }

    /// Whether `max_unacked` updates to `peer` wait for its acknowledgement.
    pub(crate) fn backlogged(&self, peer: Address) -> bool {
        self.state.outbox.updates(peer) >= self.config.max_unacked
    }

    /// Every peer [`Self::backlogged`] holds for, in one walk over the outbox.
    pub(crate) fn backlogged_peers(&self) -> BTreeSet<Address> {
        self.state
            .outbox
            .peers_with_updates(self.config.max_unacked)
    }
}

/// Whether losing `record` in a crash is harmless, so it need not be durable before anything
/// goes out: a message's removal from the outbox. Delivery is at-least-once and handling
/// idempotent ([`crate::wire`]): a restored node that still holds the message sends it again,
/// and the peer acknowledges it without applying it twice, or refuses what no longer
/// matters (a stale update, a reveal for a lock that is gone). The same held before for a
/// crash between a message's batch and its removal's; now the window lasts until the next
/// batch. Acknowledgements would otherwise cost a write each: 10 of the 24 batches of a
/// payment over 3 hops.
fn is_deferrable(record: &Record) -> bool {
    matches!(
        record,
        Record::Entry {
            key: EntryKey::Message(..),
            value: None,
        }
    )
}

//! The task that owns the [`Node`]: it `select!`s over the swarm, the peers' streams, the
//! chain, the store's commits, API commands and the node's timer, feeds each to the node,
//! and hands every output to its component. Nothing else touches the node.
//!
//! Order it keeps (the node's call contract): outputs drained after every call; a range of
//! chain events before its block; a `Persist` batch written by the store before its
//! `Persisted` comes back (the node holds what depends on it until then); failed chain
//! requests reported. On shutdown it stops taking input, lets the store commit what is
//! queued, and drops the swarm (closing every peer).

use crate::api::{ApiError, Request, invoice_json, payment_json};
use crate::chain::ChainUpdate;
use crate::events::EventLog;
use crate::history::History;
use crate::metrics::{Metrics, tokens};
use crate::network::{BAN, GOSSIP_DEFER_WINDOW, Network, StreamEvent};
use crate::store::{Checkpoint, Committed, Writer};
use crate::views;
use alloy_primitives::{Address, U256};
use hoplite_chain::deploy::Deployment;
use hoplite_chain::events::{ChainEvent, OnChainChannel, Phase};
use hoplite_gossip::{GossipMessage, Verdict};
use hoplite_htlc::{Amount, Side};
use hoplite_node::{
    ChainRequest, ChainRequestId, Close, Event, Input, Node, Output, PeerAction, PeerError,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// A peer that sends more than this many messages it is to blame for (see
/// `count_rejected`) in [`REJECTED_WINDOW`], or one that does not decode, is disconnected and
/// refused for [`BAN`].
const MAX_REJECTED: u32 = 64;
const REJECTED_WINDOW: Duration = Duration::from_secs(60);
/// Peers whose rejections are counted at once (a window's worth is kept beyond).
const MAX_RECORDED_PEERS: usize = 4_096;
/// Ids of stored gossip fed back at start; the network's ids stay below.
const REPLAYED_GOSSIP: u64 = 1 << 63;

/// A block the node processed left the chain: its view can't be unwound, so the daemon
/// starts again and reads the chain from the deployment.
#[derive(Debug, thiserror::Error)]
#[error("block {block} left the chain: a reorg deeper than the confirmations")]
pub struct Reorganised {
    /// The block.
    pub block: u64,
}

/// A command from the API and where its answer goes.
pub struct Command {
    /// What is asked.
    pub request: Request,
    /// The answer.
    pub reply: oneshot::Sender<Result<Value, ApiError>>,
}

/// The node's wall clock: time since the UNIX epoch.
#[allow(clippy::disallowed_methods)] // The daemon is where the clock is read.
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Everything the task holds.
pub struct Runtime {
    /// The node.
    pub node: Node,
    /// Peers.
    pub network: Network,
    /// Frames and stream events from the peers' streams.
    pub streams: mpsc::Receiver<StreamEvent>,
    /// The store's writer.
    pub store: Writer,
    /// What the writer committed.
    pub committed: mpsc::UnboundedReceiver<Committed>,
    /// The chain follower's and submitter's reports.
    pub chain: mpsc::Receiver<ChainUpdate>,
    /// Requests for the submitter.
    pub requests: mpsc::UnboundedSender<(ChainRequestId, ChainRequest)>,
    /// API commands.
    pub commands: mpsc::Receiver<Command>,
    /// Events for the API, published once stored.
    pub events: EventLog,
    /// Events written to the store and not yet committed, oldest first.
    pub unpublished: VecDeque<(u64, String)>,
    /// The last event id given out.
    pub last_event: u64,
    /// Payments and invoices for the API.
    pub history: History,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// Feeding the stored chain events at start.
    pub replaying: bool,
    /// Gossip the store kept, fed once the chain is caught up.
    pub stored_gossip: Vec<Vec<u8>>,
    /// The chain events the store kept and the block they reach, fed first.
    pub stored_chain: (Vec<ChainEvent>, Option<Checkpoint>),
    /// The contracts, to keep the events' logs.
    pub deployment: Deployment,
    /// Where this run picked the chain up from the store: the block and the events fed.
    pub resumed: Option<(u64, usize)>,
    /// Payments are refused while the head is older than this.
    pub max_head_age: Duration,
    /// Our libp2p addresses as announced.
    pub announced: Vec<String>,
    /// Chain id, for `info`.
    pub chain_id: u64,
    /// The chain head's timestamp, once known.
    pub head_timestamp: Option<u64>,
    /// Gossip awaiting a verdict, by id: the peer, the bytes, and when it came.
    pub gossip: BTreeMap<u64, (Address, Vec<u8>, tokio::time::Instant)>,
    /// Gossip judged "ignore" because it names a channel we haven't seen: fed again after
    /// the next block, for [`GOSSIP_DEFER_WINDOW`] after it came.
    pub deferred: Vec<u64>,
    /// Blamable messages rejected per peer in the current window, and when it began.
    pub rejected: BTreeMap<Address, (u32, Duration)>,
}

impl Runtime {
    /// Runs until `shutdown` turns true or a component fails.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut dial = tokio::time::interval(Duration::from_millis(250));
        self.replay_stored_chain();
        let result = loop {
            self.drain();
            let wake = self
                .node
                .poll_timeout()
                .map(|at| tokio::time::Instant::now() + at.saturating_sub(now()));
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.network.next_event() => {
                    if let Some(event) = self.network.handle_swarm_event(event) {
                        self.peer_input(event);
                    }
                }
                Some(event) = self.streams.recv() => {
                    if let Some(event) = self.network.handle_stream_event(event) {
                        self.peer_input(event);
                    }
                }
                Some(update) = self.chain.recv() => {
                    if let ChainUpdate::Reorganised { number } = update {
                        break Err(Reorganised { block: number }.into());
                    }
                    self.chain_update(update);
                }
                committed = self.committed.recv() => match committed {
                    Some(Committed::Group { batch, event }) => {
                        if let Some(id) = batch {
                            self.node.handle_input(now(), Input::Persisted(id));
                        }
                        if let Some(id) = event {
                            self.publish_events(id);
                        }
                    }
                    Some(Committed::Failed(error)) => break Err(anyhow::anyhow!("the store failed: {error}")),
                    // Without a writer nothing the node holds back could ever go out.
                    None => break Err(anyhow::anyhow!("the store's writer stopped")),
                },
                Some(command) = self.commands.recv() => {
                    let answer = self.command(command.request);
                    let _ = command.reply.send(answer);
                }
                () = timer => self.node.handle_timeout(now()),
                _ = dial.tick() => self.network.dial_due(),
                _ = shutdown.changed() => break Ok(()),
            }
        };
        // Outbox removals held for a later batch: written now, a restart resends nothing.
        self.node.flush();
        self.drain();
        info!(target: "hoplite::node", "stopping: committing what is queued");
        let Self {
            store,
            mut committed,
            events,
            mut unpublished,
            ..
        } = self;
        store.close();
        // Whatever the last commits held is durable now.
        while let Ok(done) = committed.try_recv() {
            if let Committed::Group {
                event: Some(id), ..
            } = done
            {
                publish(&mut unpublished, &events, id);
            }
        }
        events.close();
        result
    }

    /// Shows the API's clients the events up to `id`: they are durable.
    fn publish_events(&mut self, id: u64) {
        publish(&mut self.unpublished, &self.events, id);
    }

    /// Feeds what the network heard; gossip is kept until its verdict (it may be judged
    /// again, and accepted gossip is stored).
    fn peer_input(&mut self, input: Input) {
        if let Input::Gossip { from, id, bytes } = &input {
            let came = tokio::time::Instant::now();
            self.gossip.insert(*id, (*from, bytes.clone(), came));
        }
        self.node.handle_input(now(), input);
    }

    fn chain_update(&mut self, update: ChainUpdate) {
        match update {
            ChainUpdate::Events {
                events,
                through,
                hash,
            } => {
                // Kept with their checkpoint in one transaction: a restart replays exactly
                // these and reads on after them.
                let logs = events.iter().map(|e| e.to_log(&self.deployment)).collect();
                self.store.chain_events(logs, (through, hash));
                for event in events {
                    self.node.handle_input(now(), Input::Chain(event));
                    self.drain();
                }
            }
            ChainUpdate::Block {
                number,
                hash,
                head_timestamp,
            } => {
                let first = self.head_timestamp.is_none();
                self.head_timestamp = Some(head_timestamp);
                self.node
                    .handle_input(now(), Input::Block(hoplite_htlc::BlockNumber(number)));
                self.drain();
                self.store.checkpoint((number, hash));
                if first {
                    info!(target: "hoplite::node", block = number, "caught up with the chain");
                    self.replay_stored_gossip();
                    self.keep_partners_connected();
                }
                for id in std::mem::take(&mut self.deferred) {
                    if let Some((from, bytes, _)) = self.gossip.get(&id) {
                        let input = Input::Gossip {
                            from: *from,
                            id,
                            bytes: bytes.clone(),
                        };
                        self.node.handle_input(now(), input);
                        self.drain();
                    }
                }
            }
            ChainUpdate::Reorganised { .. } => {}
            ChainUpdate::Failed {
                id,
                request,
                failure,
            } => self.node.handle_input(
                now(),
                Input::ChainRequestFailed {
                    id,
                    request: *request,
                    failure,
                },
            ),
        }
    }

    /// Feeds the chain events kept from earlier runs, then their last block: the node has
    /// every event from the deployment on, as its restore contract asks, and the follower
    /// goes on after them.
    fn replay_stored_chain(&mut self) {
        let (events, checkpoint) = std::mem::take(&mut self.stored_chain);
        let count = events.len();
        self.replaying = true;
        for event in events {
            self.node.handle_input(now(), Input::Chain(event));
            self.drain();
        }
        if let Some((number, _)) = checkpoint {
            self.node
                .handle_input(now(), Input::Block(hoplite_htlc::BlockNumber(number)));
            self.drain();
            info!(target: "hoplite::chain", events = count, block = number, "replayed the stored chain events");
            self.resumed = Some((number, count));
        }
        self.replaying = false;
    }

    /// Dials every channel partner at its announced addresses and keeps it connected: a
    /// restarted node must reach its partners at once (one holding a lock on us may be
    /// waiting for a secret), and a partner that still holds a dead link to our last run
    /// learns of the new one only when we call.
    fn keep_partners_connected(&mut self) {
        let addresses: Vec<String> = {
            let view = self.node.view();
            self.node
                .channels()
                .filter_map(|c| {
                    view.gossip()
                        .node_announcement(c.participant(Side::Partner).address())
                })
                .flat_map(|a| a.addresses.clone())
                .collect()
        };
        self.network.want(&addresses);
    }

    /// Feeds back the gossip the node had accepted before it stopped (its own address as the
    /// relayer: nobody is blamed, and the verdicts go nowhere).
    fn replay_stored_gossip(&mut self) {
        let me = self.node.address();
        for (n, bytes) in std::mem::take(&mut self.stored_gossip)
            .into_iter()
            .enumerate()
        {
            let id = REPLAYED_GOSSIP | n as u64;
            self.node.handle_input(
                now(),
                Input::Gossip {
                    from: me,
                    id,
                    bytes,
                },
            );
            self.drain();
        }
    }

    /// Hands every output to its component.
    fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { to, envelope } => {
                    if self.network.connected().all(|(peer, _)| *peer != to) {
                        let addresses = self
                            .node
                            .view()
                            .gossip()
                            .node_announcement(to)
                            .map(|a| a.addresses.clone());
                        if let Some(addresses) = addresses {
                            self.network.want(&addresses);
                        }
                    }
                    self.network.send(to, envelope.encode());
                }
                Output::Publish(message) => {
                    let bytes = message.encode();
                    self.store.gossip(bytes.clone());
                    self.network.publish(bytes);
                }
                Output::GossipVerdict { id, verdict } => self.verdict(id, verdict),
                Output::Chain { id, request } => {
                    if self.requests.send((id, request)).is_err() {
                        // The submitter is gone (it only stops with the daemon): the node
                        // sends the request again while it matters.
                        warn!(target: "hoplite::chain", "the submitter stopped: request dropped");
                    }
                }
                Output::Persist { id, records } => self.store.persist(id, records),
                Output::Event(event) => self.event(event),
            }
        }
    }

    fn verdict(&mut self, id: u64, verdict: Verdict) {
        if id & REPLAYED_GOSSIP != 0 {
            return;
        }
        debug!(target: "hoplite::gossip", id, ?verdict, "verdict");
        if verdict == Verdict::Ignore
            && let Some((_, bytes, came)) = self.gossip.get(&id)
            && came.elapsed() < GOSSIP_DEFER_WINDOW
            && awaits_chain(&self.node, bytes)
        {
            self.deferred.push(id);
            return;
        }
        if let Some((_, bytes, _)) = self.gossip.remove(&id)
            && verdict == Verdict::Accept
        {
            self.store.gossip(bytes);
        }
        let name = match verdict {
            Verdict::Accept => "accept",
            Verdict::Ignore => "ignore",
            Verdict::Reject(_) => "reject",
        };
        self.metrics
            .gossip_verdicts
            .get_or_create(&[("verdict", name)])
            .inc();
        self.network.report(id, &verdict);
    }

    fn event(&mut self, event: Event) {
        if let Event::ChannelOpened { partner, .. } = &event {
            let addresses = self
                .node
                .view()
                .gossip()
                .node_announcement(*partner)
                .map(|a| a.addresses.clone());
            self.network.want(&addresses.unwrap_or_default());
        }
        if let Event::PeerMessageRejected { from, error } = &event {
            warn!(target: "hoplite::node", peer = %from, %error, "peer message rejected");
            if error.action() == PeerAction::Disconnect || self.count_rejected(*from, error) {
                warn!(target: "hoplite::net", peer = %from, %error, "peer banned for {} s", BAN.as_secs());
                self.rejected.remove(from);
                self.network.ban(*from, BAN);
            }
        } else {
            info!(target: "hoplite::node", event = ?event, "event");
        }
        // What peers cause at will (and a hostile one at a high rate) goes to the logs and
        // the metrics, not the API's log, where it would push payments out of the window.
        let rejected = match &event {
            Event::PeerMessageRejected { .. } => Some("message"),
            Event::GossipRejected { .. } => Some("gossip"),
            _ => None,
        };
        if let Some(kind) = rejected {
            self.metrics
                .peer_rejections
                .get_or_create(&[("kind", kind)])
                .inc();
            return;
        }
        // The stored chain fed again re-tells what the API's log already holds.
        if self.replaying
            && matches!(
                event,
                Event::ChannelOpened { .. }
                    | Event::ChannelClosed { .. }
                    | Event::ChannelSettled { .. }
            )
        {
            return;
        }
        self.record_history(&event);
        self.last_event += 1;
        let mut body = event_json(&event);
        body["id"] = Value::from(self.last_event);
        body["at"] = Value::from(now().as_secs());
        let body = body.to_string();
        self.store.event(self.last_event, body.clone());
        self.unpublished.push_back((self.last_event, body));
    }

    /// Keeps what an event says of a payment or an invoice, and counts it.
    fn record_history(&mut self, event: &Event) {
        let now = now().as_secs();
        let count = |direction, outcome| {
            self.metrics
                .payments
                .get_or_create(&[("direction", direction), ("outcome", outcome)])
                .inc();
        };
        match event {
            Event::PaymentSent { .. } => count("sent", "succeeded"),
            Event::PaymentFailed { .. } => count("sent", "failed"),
            Event::PaymentReceived { .. } | Event::DirectTransferReceived { .. } => {
                count("received", "succeeded");
            }
            Event::Forwarded { fee, .. } => {
                self.metrics.forwarded.inc();
                self.metrics.forwarded_fees.inc_by(tokens(*fee));
            }
            _ => {}
        }
        let changes = match event {
            Event::PaymentSent {
                payment,
                fee,
                route,
                attempts,
                ..
            } => self
                .history
                .sent(*payment, *fee, route.clone(), *attempts, now)
                .into_iter()
                .collect(),
            Event::PaymentFailed {
                payment,
                reason,
                last_failure,
                attempts,
            } => {
                let failure = match last_failure {
                    Some(last) => format!("{reason:?}; last failure: {last:?}"),
                    None => format!("{reason:?}"),
                };
                self.history
                    .failed(*payment, failure, *attempts, now)
                    .into_iter()
                    .collect()
            }
            Event::PaymentReceived {
                payment,
                amount,
                invoice,
            } => self
                .history
                .received(*payment, *invoice, self.node.address(), *amount, now),
            _ => Vec::new(),
        };
        for change in changes {
            self.store.history(change);
        }
    }

    /// Counts a rejection the sender is to blame for (a signature that is not its, a
    /// channel it is not in); whether it is over [`MAX_REJECTED`] in the window. An honest
    /// partner's refused updates (a stale resend, a gap, a block view a little off) and late
    /// messages are not counted. Counts outlive connections.
    fn count_rejected(&mut self, from: Address, error: &PeerError) -> bool {
        if !matches!(
            error,
            PeerError::BadSignature | PeerError::NotPartner { .. }
        ) {
            return false;
        }
        let now = now();
        if self.rejected.len() >= MAX_RECORDED_PEERS {
            self.rejected
                .retain(|_, (_, since)| now.saturating_sub(*since) <= REJECTED_WINDOW);
        }
        if self.rejected.len() >= MAX_RECORDED_PEERS && !self.rejected.contains_key(&from) {
            return false;
        }
        let (count, since) = self.rejected.entry(from).or_insert((0, now));
        if now.saturating_sub(*since) > REJECTED_WINDOW {
            (*count, *since) = (0, now);
        }
        *count += 1;
        *count > MAX_REJECTED
    }

    fn command(&mut self, request: Request) -> Result<Value, ApiError> {
        let now = now();
        let refused = |e: hoplite_node::CommandError| ApiError::refused(&e);
        let answer = match request {
            Request::Info => Ok(self.info()),
            Request::Channels => Ok(self.channels()),
            Request::Graph => Ok(self.graph()),
            Request::Peers => Ok(to_value(
                &self
                    .network
                    .connected()
                    .map(|(address, peer)| views::Peer {
                        address: *address,
                        peer_id: peer.to_string(),
                    })
                    .collect::<Vec<_>>(),
            )),
            Request::Connect(address) => {
                let dialing = address.to_string();
                if self.network.want(std::slice::from_ref(&dialing)) {
                    Ok(to_value(&views::Dialing { dialing }))
                } else {
                    Err(ApiError::unavailable(
                        "dial_list_full",
                        "the node dials as many addresses as it keeps: disconnect one first",
                    ))
                }
            }
            Request::Disconnect(address) => {
                if self.network.forget(address) {
                    Ok(to_value(&views::Accepted {}))
                } else {
                    Err(ApiError::not_found(
                        "unknown_peer",
                        format!("{address} is neither connected nor dialled"),
                    ))
                }
            }
            Request::Channel(id) => self
                .node
                .channel(id)
                .map(|channel| self.channel_json(channel))
                .ok_or_else(|| {
                    ApiError::not_found("unknown_channel", format!("no channel {id} of ours"))
                }),
            Request::Invoices { limit } => Ok(Value::from(
                self.history
                    .invoices(limit)
                    .map(|i| invoice_json(i, now.as_secs()))
                    .collect::<Vec<_>>(),
            )),
            Request::Invoice(id) => self
                .history
                .invoice(&id)
                .map(|i| invoice_json(i, now.as_secs()))
                .ok_or_else(|| {
                    ApiError::not_found("unknown_invoice", format!("no invoice {} of ours", id.0))
                }),
            Request::Payments { limit } => Ok(Value::from(
                self.history
                    .payments(limit)
                    .into_iter()
                    .map(payment_json)
                    .collect::<Vec<_>>(),
            )),
            Request::Metrics => {
                self.refresh_metrics(now);
                Ok(Value::Null)
            }
            Request::Payment(id) => self.history.payment(&id).map(payment_json).ok_or_else(|| {
                ApiError::not_found("unknown_payment", format!("no payment {} of ours", id.0))
            }),
            Request::OpenChannel { partner, deposit } => self
                .node
                .open_channel(now, partner, deposit)
                .map(|()| to_value(&views::Accepted {}))
                .map_err(refused),
            Request::Deposit { channel, total } => self
                .node
                .deposit(now, channel, total)
                .map(|()| to_value(&views::Accepted {}))
                .map_err(refused),
            Request::Withdraw { channel, amount } => self
                .node
                .withdraw(now, channel, amount)
                .map(|()| to_value(&views::Accepted {}))
                .map_err(refused),
            Request::Close {
                channel,
                cooperative,
            } => {
                let how = if cooperative {
                    Close::Cooperative
                } else {
                    Close::Unilateral
                };
                self.node
                    .close_channel(now, channel, how)
                    .map(|()| to_value(&views::Accepted {}))
                    .map_err(refused)
            }
            Request::CreateInvoice { amount, valid_for } => {
                let invoice = self.node.create_invoice(now, amount, valid_for);
                let change = self.history.invoice_made(&invoice, now.as_secs());
                self.store.history(change);
                let entry = self.history.invoice(&invoice.payment).expect("just made");
                Ok(invoice_json(entry, now.as_secs()))
            }
            Request::Pay { invoice } => self
                .can_pay(now, invoice.amount)
                .and_then(|()| self.node.pay(now, &invoice).map_err(refused))
                .map(|id| self.payment_started(id, invoice.payee, invoice.amount, true, None)),
            Request::Send {
                payee,
                amount,
                idempotency_key,
            } => match idempotency_key
                .as_deref()
                .and_then(|key| self.history.payment_with_key(key))
            {
                // The same request again (a client retrying after a timeout): it pays once.
                Some(earlier) if earlier.payee == payee && earlier.amount == amount.to_string() => {
                    Ok(payment_json(earlier))
                }
                Some(_) => Err(ApiError::conflict(
                    "this idempotency_key was used for another payment",
                )),
                None => self
                    .can_pay(now, amount)
                    .and_then(|()| {
                        self.node
                            .send_spontaneous(now, payee, amount)
                            .map_err(refused)
                    })
                    .map(|id| self.payment_started(id, payee, amount, false, idempotency_key)),
            },
        };
        self.drain();
        answer
    }

    /// Sets the gauges read off the node: balances, locks, peers, the chain.
    fn refresh_metrics(&self, now: Duration) {
        let m = &self.metrics;
        m.channel_balance.clear();
        let mut locks = [(0i64, 0f64); 2];
        for channel in self.node.channels() {
            let id = channel.id().to_string();
            for (side, name, n) in [(Side::Ours, "ours", 0), (Side::Partner, "theirs", 1)] {
                m.channel_balance
                    .get_or_create(&[("channel", id.clone()), ("side", name.into())])
                    .set(tokens(channel.spendable(side)));
                let pending = channel.participant(side).locks();
                locks[n].0 += pending.len() as i64;
                locks[n].1 += tokens(pending.total());
            }
        }
        for (name, (count, total)) in ["ours", "theirs"].into_iter().zip(locks) {
            m.pending_locks.get_or_create(&[("side", name)]).set(count);
            m.pending_locked.get_or_create(&[("side", name)]).set(total);
        }
        m.peers.set(self.network.connected().count() as i64);
        m.chain_block
            .set(i64::try_from(self.node.block().0).unwrap_or(i64::MAX));
        if let Some(head) = self.head_timestamp {
            let age = now.saturating_sub(Duration::from_secs(head)).as_secs();
            m.chain_head_age_seconds
                .set(i64::try_from(age).unwrap_or(i64::MAX));
        }
    }

    /// Keeps a payment we started; its answer.
    fn payment_started(
        &mut self,
        id: hoplite_node::PaymentId,
        payee: Address,
        amount: Amount,
        invoice: bool,
        idempotency_key: Option<String>,
    ) -> Value {
        let change =
            self.history
                .started(id, payee, amount, invoice, idempotency_key, now().as_secs());
        self.store.history(change);
        payment_json(self.history.payment(&id).expect("just started"))
    }

    /// Refuses a payment while the chain is stale, or when it is more than all our open
    /// channels can send (before fees: the router says the rest).
    fn can_pay(&self, now: Duration, amount: Amount) -> Result<(), ApiError> {
        self.fresh_chain(now)?;
        let spendable = self
            .node
            .channels()
            .filter(|c| {
                self.node
                    .onchain_channel(c.id())
                    .is_some_and(|c| c.phase == Phase::Opened)
            })
            .fold(Amount::ZERO, |sum, c| {
                sum.checked_add(c.spendable(Side::Ours)).unwrap_or(sum)
            });
        if amount > spendable {
            return Err(ApiError::insufficient_balance(format!(
                "{amount} is more than the {spendable} our open channels can send"
            )));
        }
        Ok(())
    }

    /// Refuses a payment while the chain head is older than `max_head_age`.
    fn fresh_chain(&self, now: Duration) -> Result<(), ApiError> {
        let age = self
            .head_timestamp
            .map(|t| now.saturating_sub(Duration::from_secs(t)));
        match age {
            None => Err(ApiError::stale_chain(
                "the chain has not been read yet".into(),
            )),
            Some(age) if age > self.max_head_age => Err(ApiError::stale_chain(format!(
                "the chain head is {} s old (limit {} s): a lagging RPC node could hide a close",
                age.as_secs(),
                self.max_head_age.as_secs()
            ))),
            Some(_) => Ok(()),
        }
    }

    fn info(&self) -> Value {
        to_value(&views::Info {
            address: self.node.address(),
            alias: self.node.config().alias.clone(),
            peer_id: self.network.peer_id().to_string(),
            listen: self
                .network
                .listeners()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            announced: self.announced.clone(),
            chain_id: self.chain_id,
            token_network: self.node.config().token_network.address,
            block: self.node.block().0,
            synced: self.head_timestamp.is_some(),
            resumed: self
                .resumed
                .map(|(block, events)| views::Resumed { block, events }),
            channels: self.node.channels().count(),
            last_event: self.events.newest(),
            store: views::StoreCounters {
                commits: self.store.stats().commits.load(Ordering::Relaxed),
                batches: self.store.stats().batches.load(Ordering::Relaxed),
            },
        })
    }

    fn channels(&self) -> Value {
        Value::from(
            self.node
                .channels()
                .map(|channel| self.channel_json(channel))
                .collect::<Vec<_>>(),
        )
    }

    /// A channel: both sides' deposits, withdrawals, spendable balances and pending locks.
    fn channel_json(&self, channel: &hoplite_htlc::Channel) -> Value {
        to_value(&self.channel_view(channel))
    }

    fn channel_view(&self, channel: &hoplite_htlc::Channel) -> views::Channel {
        let id = channel.id();
        let onchain = self.node.onchain_channel(id);
        let ours = channel.participant(Side::Ours);
        let theirs = channel.participant(Side::Partner);
        let locks = |side: &hoplite_htlc::Participant| {
            side.locks()
                .iter()
                .map(|lock| views::LockView {
                    amount: lock.amount.to_string(),
                    expiration: lock.expiration.0,
                    secret_hash: lock.secret_hash.0.to_string(),
                })
                .collect()
        };
        views::Channel {
            id: id.to_string(),
            partner: theirs.address(),
            state: phase_name(onchain.as_ref()).into(),
            our_deposit: ours.total_deposit().to_string(),
            partner_deposit: theirs.total_deposit().to_string(),
            our_withdrawn: ours.total_withdraw().to_string(),
            partner_withdrawn: theirs.total_withdraw().to_string(),
            our_balance: channel.spendable(Side::Ours).to_string(),
            partner_balance: channel.spendable(Side::Partner).to_string(),
            our_locked: ours.locks().total().to_string(),
            partner_locked: theirs.locks().total().to_string(),
            our_locks: locks(ours),
            partner_locks: locks(theirs),
        }
    }

    fn graph(&self) -> Value {
        let view = self.node.view();
        let gossip = view.gossip();
        let mut nodes = std::collections::BTreeSet::new();
        // By id: the view keeps them in no particular order.
        let mut open: Vec<_> = view
            .channels()
            .filter(|c| c.phase == Phase::Opened)
            .collect();
        open.sort_unstable_by_key(|c| c.id);
        let channels: Vec<views::GraphChannel> = open
            .into_iter()
            .map(|c| {
                let participants = [c.state.participant1, c.state.participant2];
                nodes.extend(participants);
                views::GraphChannel {
                    id: c.id.to_string(),
                    participants,
                    capacity: c.available().to_string(),
                    announced: gossip.channel_announcement(c.id).is_some(),
                    policies: participants.map(|p| {
                        gossip.latest(c.id, p).map(|u| views::PolicyView {
                            base_fee: u.policy.base_fee.to_string(),
                            fee_millionths: u.policy.fee_millionths,
                            expiry_delta: u.policy.expiry_delta.into(),
                            enabled: u.policy.enabled,
                        })
                    }),
                }
            })
            .collect();
        let nodes = nodes
            .into_iter()
            .map(|address| {
                let announcement = gossip.node_announcement(address);
                views::GraphNode {
                    address,
                    alias: announcement.map(|a| a.alias.clone()),
                    addresses: announcement.map_or_else(Vec::new, |a| a.addresses.clone()),
                }
            })
            .collect();
        to_value(&views::Graph { channels, nodes })
    }
}

/// A view as the API's JSON.
pub fn to_value(view: &impl serde::Serialize) -> Value {
    serde_json::to_value(view).expect("views serialize")
}

/// Moves the events up to `id` from `unpublished` to `events`.
fn publish(unpublished: &mut VecDeque<(u64, String)>, events: &EventLog, id: u64) {
    while let Some((next, _)) = unpublished.front()
        && *next <= id
    {
        let (next, body) = unpublished.pop_front().expect("just seen");
        events.publish(next, body);
    }
}

/// Whether a gossip message names a channel (or a node with a channel) our chain view does
/// not show yet, or a capacity it does not show yet: the relayer may be a block ahead of us.
fn awaits_chain(node: &Node, bytes: &[u8]) -> bool {
    let view = node.view();
    match GossipMessage::decode(bytes) {
        Ok(GossipMessage::ChannelAnnouncement(a)) => view
            .channel(a.channel)
            .is_none_or(|c| Amount::from(c.available()) != a.capacity),
        Ok(GossipMessage::ChannelUpdate(u)) => view.channel(u.channel).is_none(),
        Ok(GossipMessage::NodeAnnouncement(a)) => !view.has_open_channel(a.node),
        Err(_) => false,
    }
}

fn phase_name(channel: Option<&OnChainChannel>) -> &'static str {
    match channel.map(|c| c.phase) {
        None => "opening",
        Some(Phase::Opened) => "open",
        Some(Phase::Closed) => "closed",
        Some(Phase::Settled { .. }) => "settled",
    }
}

fn amount(amount: &Amount) -> Value {
    Value::from(amount.to_string())
}

/// An event as the API shows it: a `type` and its fields, amounts as decimal strings.
fn event_json(event: &Event) -> Value {
    match event {
        Event::ChannelOpened { channel, partner } => {
            json!({"type": "channel_opened", "channel": channel.to_string(), "partner": partner})
        }
        Event::ChannelClosed { channel, closer } => {
            json!({"type": "channel_closed", "channel": channel.to_string(), "closer": closer})
        }
        Event::CloseRefused { channel, answered } => {
            json!({"type": "close_refused", "channel": channel.to_string(), "answered": answered})
        }
        Event::ChannelSettled { channel } => {
            json!({"type": "channel_settled", "channel": channel.to_string()})
        }
        Event::PaymentSent {
            payment,
            amount: paid,
            fee,
            route,
            attempts,
        } => json!({
            "type": "payment_sent", "payment": payment.0, "amount": amount(paid),
            "fee": amount(fee), "route": route, "attempts": attempts,
        }),
        Event::PaymentFailed {
            payment,
            reason,
            last_failure,
            attempts,
        } => json!({
            "type": "payment_failed", "payment": payment.0, "reason": format!("{reason:?}"),
            "last_failure": last_failure.as_ref().map(|f| format!("{f:?}")), "attempts": attempts,
        }),
        Event::PaymentReceived {
            payment,
            amount: received,
            invoice,
        } => json!({
            "type": "payment_received", "payment": payment.0, "amount": amount(received),
            "invoice": invoice,
        }),
        Event::Withdrawn { channel, total } => json!({
            "type": "withdrawn", "channel": channel.to_string(), "total": amount(total),
        }),
        Event::WithdrawFailed { channel, refused } => json!({
            "type": "withdraw_failed", "channel": channel.to_string(), "refused": refused,
        }),
        Event::DirectTransferReceived {
            channel,
            amount: received,
        } => json!({
            "type": "direct_transfer_received", "channel": channel.to_string(), "amount": amount(received),
        }),
        Event::Forwarded { channel, fee } => {
            json!({"type": "forwarded", "channel": channel.to_string(), "fee": amount(fee)})
        }
        Event::PeerMessageRejected { from, error } => {
            json!({"type": "peer_message_rejected", "from": from, "error": error.to_string()})
        }
        Event::ChannelBroken { channel, error } => {
            json!({"type": "channel_broken", "channel": channel.to_string(), "error": error.to_string()})
        }
        Event::GossipRejected { from, rejection } => {
            json!({"type": "gossip_rejected", "from": from, "rejection": format!("{rejection:?}")})
        }
        Event::ChainRequestFailed { request, failure } => json!({
            "type": "chain_request_failed", "request": request.kind(), "failure": failure.to_string(),
        }),
    }
}

/// Parses a decimal amount (they are uint256).
pub fn parse_amount(text: &str) -> Option<Amount> {
    U256::from_str_radix(text, 10).ok().map(Amount::from)
}

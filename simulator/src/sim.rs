//! The run: every node a real [`Node`], driven on one virtual clock by the event queue, over
//! the simulated network and chain, with the invariants checked as it goes.
//!
//! One call of a node is followed by draining its outputs ([`Simulation::drain`]): a message
//! is encoded and scheduled on its link (or lost), gossip is scheduled to every other node, a
//! chain request waits in the mempool, a persist batch is written to the node's
//! [`MemoryStore`] after the store latency (a crash before then loses it, with everything the
//! batch held back), an event goes to the ledger. Then the node's timer is scheduled. Blocks
//! are mined every `block_time_s`; a block's events are fed to every running node, then the
//! block itself, as the node's docs prescribe.

use crate::ahead::{Search, Searcher};
use crate::chain::{Failed, SimChain};
use crate::config::{Pairs, SimConfig};
use crate::ledger::{Kind, Ledger, Outcome, Violation};
use crate::net::Links;
use crate::presign::{Expected, Presigner};
use crate::queue::Queue;
use crate::recovery::{Pending, Recoverer};
use crate::roles::{self, Role};
use crate::topology::Plan;
use crate::workers::Workers;
use crate::workload::{self, PairPicker};
use alloy_primitives::{Address, U256, keccak256};
use hoplite_chain::contracts::TokenNetwork::TokenNetworkEvents as Tn;
use hoplite_chain::events::{ChainEvent, Event as ChainEventKind, Phase};
use hoplite_gossip::{ChannelUpdate, GossipParams};
use hoplite_htlc::crypto::Recovered;
use hoplite_htlc::{
    Amount, BlockNumber, Channel, ChannelId, PrivateKey, Side, Signature, SignedBalanceProof,
};
use hoplite_node::audit::{self, Imbalance};
use hoplite_node::wire::{Envelope, Message};
use hoplite_node::{ChainRequest, Config, Event, Input, MemoryStore, Node, Output, PersistId};
use hoplite_node::{Invoice, Record, SharedView};
use hoplite_routing::Policy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Blocks over which every node's channels are audited once (see `audit_node`).
const AUDIT_TURNS: u64 = 8;
/// Where virtual time starts (seconds since the UNIX epoch: invoices carry absolute expiries).
const EPOCH: Duration = Duration::from_secs(1_700_000_000);
/// How long a persist batch takes to become durable.
const STORE_LATENCY: Duration = Duration::from_micros(200);
/// Above this many nodes, they share one network view unless the config says otherwise.
const SHARED_VIEW_ABOVE: usize = 250;
/// Blocks the setup may take to open and fund every planned channel.
const SETUP_BLOCKS: u64 = 200;
/// Between two locks of a jammer.
const JAM_INTERVAL: Duration = Duration::from_millis(50);
/// How long invoices stay valid.
const INVOICE_VALIDITY: Duration = Duration::from_secs(3600);
/// Workload payments drawn before they are due, so that their payers' routes are searched
/// by the time they are (arrivals are Poisson: the next one is often due at once).
const PLANNED_AHEAD: usize = 8;

/// Something due at a virtual time.
enum Action {
    /// A message arrives (its signatures recovered meanwhile).
    Deliver {
        from: usize,
        to: usize,
        message: Pending,
    },
    /// A gossip message arrives (its signatures recovered once for every receiver).
    Gossip {
        from: usize,
        to: usize,
        message: Pending,
    },
    /// A node's timer fires (if it is still the one scheduled).
    Timer(usize),
    /// A persist batch of node's `incarnation` becomes durable.
    Stored {
        node: usize,
        incarnation: u32,
        id: PersistId,
        records: Vec<Record>,
    },
    /// The next block.
    Mine,
    /// The next workload payment (the first of `upcoming`).
    Pay,
    /// A metering customer's next payment, `left` to go.
    Meter {
        customer: usize,
        isp: usize,
        left: usize,
    },
    /// A jammer's next lock.
    Jam {
        jammer: usize,
        sink: usize,
        left: usize,
    },
    /// A node's network goes down, or comes back.
    Offline(usize),
    /// See [`Action::Offline`].
    Online(usize),
    /// A node crashes (losing what it had not persisted), or restarts from its store.
    Crash(usize),
    /// See [`Action::Crash`].
    Restart(usize),
    /// Partition `id` cuts `nodes` off, or heals.
    Partition { id: usize, nodes: Vec<usize> },
    /// See [`Action::Partition`].
    Heal(usize),
    /// A stale closer closes one of its channels with the oldest partner proof it kept.
    StaleClose(usize),
}

/// A workload payment, drawn [`PLANNED_AHEAD`] payments before it is due.
struct Planned {
    /// Payer and payee (`None`: nobody can pay).
    pair: Option<(usize, usize)>,
    amount: u64,
    kind: Kind,
    /// The payee's invoice, made when the payment was drawn (`None` for a keysend payment,
    /// or if the payee was down then).
    invoice: Option<InvoiceAhead>,
    /// The payer's route, searched meanwhile.
    search: Option<Search>,
}

/// An invoice made when its payment was drawn.
struct InvoiceAhead {
    invoice: Invoice,
    /// The payee's incarnation that made it: one restarted since may not have stored it.
    incarnation: u32,
    /// Its signature, recovered meanwhile for the payer.
    check: Pending,
}

/// One simulated node and what the simulator keeps for it.
struct Peer {
    node: Node,
    key: PrivateKey,
    config: Config,
    store: MemoryStore,
    role: Role,
    /// Its network is up.
    online: bool,
    /// It is running (not crashed).
    running: bool,
    /// Bumped at each crash: batches of an earlier incarnation are lost.
    incarnation: u32,
    /// The timer scheduled in the queue.
    timer: Option<Duration>,
    /// How many chain events it was fed.
    fed: usize,
    /// For a stale closer: the first partner proof it held on each channel.
    kept_proofs: BTreeMap<ChannelId, SignedBalanceProof>,
}

/// A whole run, from setup to the last block.
pub struct Simulation {
    config: SimConfig,
    rng: StdRng,
    queue: Queue<Action>,
    now: Duration,
    peers: Vec<Peer>,
    index: BTreeMap<Address, usize>,
    chain: SimChain,
    links: Links,
    plan: Plan,
    /// Tokens each node was minted.
    minted: Vec<U256>,
    /// Every node's tokens, in channels and out, at the start.
    pub(crate) ledger: Ledger,
    /// When the workload started (after every channel opened), and when its last payment was
    /// made.
    workload_start: Option<Duration>,
    workload_done: bool,
    /// Workload payments drawn and not yet due, in order.
    upcoming: VecDeque<Planned>,
    /// Workload payments drawn so far.
    drawn: usize,
    /// When the next payment to be drawn arrives.
    next_arrival: Duration,
    /// Metering and jamming streams still paying.
    streams: usize,
    /// Messages, gossip and store writes scheduled and not yet done: the run is not over
    /// while any is (a write holds back its call's events).
    in_flight: usize,
    /// Picks the workload's payers and payees.
    pairs: PairPicker,
    /// Calls made to nodes (inputs, timers, commands).
    calls: u64,
    /// The best-connected node, whose liquidity is sampled every block.
    hub: usize,
    /// The stale closes sent: (closer, channel).
    stale_closed: Vec<(usize, ChannelId)>,
    /// The view the nodes share, in a large run.
    view: Option<SharedView>,
    /// How many chain events were applied to the shared view.
    applied: usize,
    /// Recovers messages' signatures while they are in flight.
    recoverer: Recoverer,
    /// Searches payers' routes a few workload payments ahead (with more than one thread).
    searcher: Searcher,
    /// Signs what the nodes will sign as a block comes in (with more than one thread).
    presigner: Presigner,
    /// Payments that took the route searched ahead.
    routes_taken: u64,
    /// Each planned channel's deposits by (opener, partner).
    planned: BTreeMap<(Address, Address), [u64; 2]>,
    violation: Option<Violation>,
    /// For the checker's own test: a broken transition to plant.
    #[cfg(feature = "test-utils")]
    planted: Option<Plant>,
}

impl Simulation {
    /// Builds the nodes and the chain for `config` and schedules the setup.
    pub fn new(config: SimConfig) -> Result<Self, crate::topology::TopologyError> {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut plan = Plan::build(&config.topology, &config.node, &mut rng)?;
        let roles = roles::assign(&config, &mut plan, &mut rng);
        // Customers are honest: an adversary's filter would skew the metering figures.
        if config.workload.metering.customers > 0 {
            plan.pick_customers(config.workload.metering.customers, |i| roles[i].is_honest());
        }
        let keys: Vec<PrivateKey> = (0..plan.nodes).map(|i| key(config.seed, i)).collect();
        let addresses: Vec<Address> = keys.iter().map(PrivateKey::address).collect();
        let mut funds = vec![0u64; plan.nodes];
        for channel in &plan.channels {
            funds[channel.opener] = funds[channel.opener].saturating_add(channel.deposits[0]);
            funds[channel.partner] = funds[channel.partner].saturating_add(channel.deposits[1]);
        }
        let chain = SimChain::new(&addresses, &funds);
        let block = BlockNumber(chain.block());
        let now = EPOCH;
        // Large runs share one network view (gossip is not simulated message by message).
        let view = config
            .network
            .shared_view
            .unwrap_or(plan.nodes > SHARED_VIEW_ABOVE)
            // Its nodes are all simulated: nobody grinds channel ids against the run's seed.
            .then(|| SharedView::new(chain.token_network(), GossipParams::default(), config.seed));
        let peers = keys
            .into_iter()
            .zip(roles.iter().copied())
            .enumerate()
            .map(|(i, (key, role))| {
                let config = node_config(&config, chain.token_network(), i);
                let node = match &view {
                    Some(view) => {
                        Node::following(config.clone(), key.clone(), now, block, view.clone())
                    }
                    None => Node::new(config.clone(), key.clone(), now, block),
                }
                .expect("the simulator's node config is valid");
                Peer {
                    node,
                    key,
                    config,
                    store: MemoryStore::new(),
                    role,
                    online: true,
                    running: true,
                    incarnation: 0,
                    timer: None,
                    fed: 0,
                    kept_proofs: BTreeMap::new(),
                }
            })
            .collect::<Vec<_>>();
        let index = addresses.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let planned = plan
            .channels
            .iter()
            .map(|c| ((addresses[c.opener], addresses[c.partner]), c.deposits))
            .collect();
        let degrees = plan.degrees();
        let hub = (0..plan.nodes)
            .max_by_key(|&i| (degrees[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        let links = Links::new(config.network.clone());
        let ledger = Ledger::new(roles.clone());
        let token_network = chain.token_network();
        let mut sim = Self {
            rng,
            queue: Queue::default(),
            now,
            peers,
            index,
            chain,
            links,
            minted: funds.into_iter().map(U256::from).collect(),
            ledger,
            workload_start: None,
            workload_done: false,
            upcoming: VecDeque::new(),
            drawn: 0,
            next_arrival: now,
            streams: 0,
            in_flight: 0,
            pairs: PairPicker::new(Pairs::Uniform, &[], |_| false),
            calls: 0,
            hub,
            stale_closed: Vec::new(),
            view,
            applied: 0,
            recoverer: Recoverer::new(token_network, Workers::default()),
            searcher: Searcher::new(Workers::default()),
            presigner: Presigner::default(),
            routes_taken: 0,
            planned,
            violation: None,
            #[cfg(feature = "test-utils")]
            planted: None,
            plan,
            config,
        };
        sim.open_channels();
        sim.queue.push(now + sim.block_time(), Action::Mine);
        Ok(sim)
    }

    /// Runs on `threads` in all, this one included: `threads - 1` workers beside the loop
    /// recover signatures, search payers' routes and sign the setup's announcements ahead.
    /// The results do not depend on it (see [`crate::workers`]).
    pub fn with_threads(mut self, threads: usize) -> Self {
        let workers = Workers::new(threads.saturating_sub(1));
        self.recoverer = Recoverer::new(self.chain.token_network(), workers.clone());
        self.searcher = Searcher::new(workers.clone());
        self.presigner = Presigner::new(workers);
        self
    }

    /// For the invariant checker's own test: plants a broken transition the run must catch.
    #[cfg(feature = "test-utils")]
    pub fn plant_broken_transition(&mut self, plant: Plant) {
        self.planted = Some(plant);
    }

    fn block_time(&self) -> Duration {
        Duration::from_secs(self.config.chain.block_time_s)
    }

    /// Payers' routes searched ahead so far, and taken.
    pub fn routes_ahead(&self) -> crate::report::RoutesAhead {
        crate::report::RoutesAhead {
            searched: self.searcher.submitted,
            taken: self.routes_taken,
        }
    }

    /// Signatures nodes took from those the workers made ahead (see [`crate::presign`]).
    pub fn signatures_taken(&self) -> u64 {
        self.presigner.taken
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.peers.len()
    }

    /// The number of channels planned.
    pub fn channels(&self) -> usize {
        self.plan.channels.len()
    }

    /// Runs until the workload is done and everything it started has resolved (or the drain
    /// limit passed); `progress(done, total)` is called as payments are made. Returns the
    /// first invariant violation, if any.
    pub fn run(&mut self, mut progress: impl FnMut(usize, usize)) -> Result<(), Violation> {
        let total = self.ledger.planned(&self.config);
        let mut reported = 0;
        while let Some((at, action)) = self.next_event() {
            self.now = at;
            // Whether the run is over is asked once a block (it looks at every node).
            let mined = matches!(action, Action::Mine);
            self.act(action);
            if let Some(violation) = self.violation.take() {
                return Err(violation);
            }
            let made = self.ledger.started();
            if made != reported {
                reported = made;
                progress(made, total);
            }
            if mined && self.finished() {
                break;
            }
            if self
                .drain_deadline()
                .is_some_and(|deadline| self.now > deadline)
            {
                let pending = self
                    .ledger
                    .payments
                    .values()
                    .filter(|p| p.outcome == Outcome::Pending)
                    .count();
                let what = format!(
                    "the run did not settle by its drain limit: {pending} payments pending, {} transactions waiting, {} messages or writes in flight",
                    self.chain.waiting(),
                    self.in_flight
                );
                self.violate(Violation::new("drain limit", what));
                return Err(self.violation.take().expect("just set"));
            }
        }
        self.final_checks()
    }

    /// The next event, once the signature jobs it may need are with the workers.
    fn next_event(&mut self) -> Option<(Duration, Action)> {
        if let Some(next) = self.queue.peek_time() {
            self.recoverer.hand_over_due(next);
        }
        self.queue.pop()
    }

    fn act(&mut self, action: Action) {
        if matches!(
            action,
            Action::Deliver { .. } | Action::Gossip { .. } | Action::Stored { .. }
        ) {
            self.in_flight -= 1;
        }
        match action {
            Action::Deliver { from, to, message } => {
                if self.peers[to].running && self.peers[to].online && self.peers[from].online {
                    let from = self.peers[from].node.address();
                    let bytes = message.bytes().to_vec();
                    message
                        .wait()
                        .scope(|| self.input(to, Input::PeerMessage { from, bytes }));
                }
            }
            Action::Gossip { from, to, message } => {
                if self.peers[to].running && self.peers[to].online && self.peers[from].online {
                    let from = self.peers[from].node.address();
                    let (id, bytes) = (self.calls, message.bytes().to_vec());
                    message
                        .wait()
                        .scope(|| self.input(to, Input::Gossip { from, id, bytes }));
                }
            }
            Action::Timer(i) => {
                if self.peers[i].timer == Some(self.now) {
                    self.peers[i].timer = None;
                    if self.peers[i].running {
                        self.calls += 1;
                        self.peers[i].node.handle_timeout(self.now);
                        self.drain(i);
                    }
                }
            }
            Action::Stored {
                node,
                incarnation,
                id,
                records,
            } => {
                if self.peers[node].incarnation == incarnation {
                    self.peers[node].store.write(records);
                    self.input(node, Input::Persisted(id));
                }
            }
            Action::Mine => self.mine(),
            Action::Pay => self.pay(),
            Action::Meter {
                customer,
                isp,
                left,
            } => {
                let amount = self.config.workload.metering.amount;
                self.start_payment(customer, isp, amount, Kind::Metering, None, None);
                if left > 1 {
                    let next = Duration::from_millis(self.config.workload.metering.interval_ms);
                    let action = Action::Meter {
                        customer,
                        isp,
                        left: left - 1,
                    };
                    self.queue.push(self.now + next, action);
                } else {
                    self.streams -= 1;
                }
            }
            Action::Jam { jammer, sink, left } => {
                let amount = self.config.faults.jamming.amount;
                self.start_payment(jammer, sink, amount, Kind::Jam, None, None);
                if left > 1 {
                    let action = Action::Jam {
                        jammer,
                        sink,
                        left: left - 1,
                    };
                    self.queue.push(self.now + JAM_INTERVAL, action);
                } else {
                    self.streams -= 1;
                }
            }
            Action::Offline(i) => self.set_online(i, false),
            Action::Online(i) => self.set_online(i, true),
            Action::Crash(i) => {
                let peer = &mut self.peers[i];
                peer.running = false;
                peer.incarnation += 1;
                peer.timer = None;
                self.ledger.counts.crashes += 1;
                self.set_online(i, false);
            }
            Action::Restart(i) => self.restart(i),
            Action::Partition { id, mut nodes } => {
                nodes.sort_unstable();
                nodes.dedup();
                let members = nodes.clone();
                self.repartition(members, |links| links.partition(id, &nodes));
            }
            Action::Heal(id) => {
                let members = self.links.members(id);
                self.repartition(members, |links| links.heal(id));
            }
            Action::StaleClose(i) => self.stale_close(i),
        }
    }

    /// One input to node `i`, then its outputs.
    fn input(&mut self, i: usize, input: Input) {
        self.calls += 1;
        self.peers[i].node.handle_input(self.now, input);
        self.drain(i);
    }

    /// Acts on node `i`'s outputs until it has none, then schedules its timer.
    fn drain(&mut self, i: usize) {
        while let Some(output) = self.peers[i].node.poll_output() {
            match output {
                Output::Send { to, envelope } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    if !roles::lets_through(self.peers[i].role, &envelope) {
                        self.ledger.counts.withheld += 1;
                        continue;
                    }
                    if !self.peers[i].online || !self.peers[j].online {
                        continue;
                    }
                    let waiting = self.peers[i].node.unacknowledged(to);
                    self.ledger.max_unacknowledged = self.ledger.max_unacknowledged.max(waiting);
                    if let Some(at) = self.links.send(&mut self.rng, self.now, i, j) {
                        let ends = [self.peers[i].node.address(), to];
                        let participants = self.announced_participants(&envelope);
                        let bytes = envelope.encode().into();
                        let message = self.recoverer.submit(bytes, ends, participants, at);
                        self.ledger.counts.messages += 1;
                        self.in_flight += 1;
                        self.queue.push(
                            at,
                            Action::Deliver {
                                from: i,
                                to: j,
                                message,
                            },
                        );
                    }
                }
                Output::Publish(_) if self.view.is_some() => {
                    // The node wrote it into the shared view already.
                    self.ledger.counts.gossip += 1;
                }
                Output::Publish(message) => {
                    let mut deliveries = Vec::new();
                    for j in (0..self.peers.len()).filter(|&j| j != i) {
                        if !self.peers[i].online
                            || !self.peers[j].online
                            || !self.links.connected(i, j)
                        {
                            continue;
                        }
                        deliveries.push((j, self.now + self.links.latency(&mut self.rng)));
                    }
                    if let Some(first) = deliveries.iter().map(|(_, at)| *at).min() {
                        let message = self.recoverer.submit_gossip(message.encode().into(), first);
                        for (j, at) in deliveries {
                            self.in_flight += 1;
                            self.queue.push(
                                at,
                                Action::Gossip {
                                    from: i,
                                    to: j,
                                    message: message.clone(),
                                },
                            );
                        }
                    }
                    self.ledger.counts.gossip += 1;
                }
                Output::GossipVerdict { .. } => {}
                Output::Chain { id, request } => self.chain.submit(i, Some(id), request),
                Output::Persist { id, records } => {
                    self.audit(i, &records);
                    let incarnation = self.peers[i].incarnation;
                    let action = Action::Stored {
                        node: i,
                        incarnation,
                        id,
                        records,
                    };
                    self.in_flight += 1;
                    self.queue.push(self.now + STORE_LATENCY, action);
                }
                Output::Event(event) => self.event(i, event),
            }
        }
        if self.peers[i].role == Role::StaleCloser {
            self.keep_oldest_proofs(i);
        }
        self.schedule_timer(i);
    }

    /// The participants, in the chain's order, of the channel whose announcement `envelope`
    /// signs, if it does: the signature's worker then recovers it once, not under both orders.
    fn announced_participants(&self, envelope: &Envelope) -> Option<[Address; 2]> {
        let Envelope::Message {
            message: Message::AnnouncementSignature { channel, .. },
            ..
        } = envelope
        else {
            return None;
        };
        let state = &self.chain.channel(*channel)?.state;
        Some([state.participant1, state.participant2])
    }

    fn schedule_timer(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        let Some(at) = peer.node.poll_timeout() else {
            return;
        };
        // A timer due now fires at the next instant: a node never waits on itself.
        let at = at.max(self.now + Duration::from_micros(1));
        if peer.timer.is_none_or(|scheduled| at < scheduled) {
            peer.timer = Some(at);
            self.queue.push(at, Action::Timer(i));
        }
    }

    fn event(&mut self, i: usize, event: Event) {
        if let Event::ChannelOpened { channel, partner } = &event {
            self.deposit_planned(i, *channel, *partner);
        }
        if let Err(violation) = self.ledger.record(i, self.now, &event) {
            self.violate(violation);
        }
    }

    fn violate(&mut self, mut violation: Violation) {
        if self.violation.is_none() {
            violation.seed = self.config.seed;
            violation.config = self.config.to_toml();
            violation.at = self.now.saturating_sub(EPOCH);
            self.violation = Some(violation);
        }
    }

    /// Every channel state node `i` persists accounts for its deposits (a call persists each
    /// channel it changed, so this checks every change, at the cost of the change alone);
    /// the most locks pending on a channel direction is taken there too.
    fn audit(&mut self, i: usize, records: &[Record]) {
        let channels = records.iter().filter_map(|record| match record {
            Record::Channel(channel) => Some(&**channel),
            _ => None,
        });
        let found = check_channels(channels);
        self.checked(i, found);
    }

    /// Node `i`'s views of every channel it has account for their deposits. Every node is
    /// audited so at the end, and an eighth of them at each block in turn (a change that was
    /// never persisted is caught here; all of them at each block would cost a large run 8%).
    fn audit_node(&mut self, i: usize) {
        let found = check_channels(self.peers[i].node.channels());
        self.checked(i, found);
    }

    /// What [`check_channels`] found on node `i`.
    fn checked(&mut self, i: usize, (imbalance, locks): (Option<Imbalance>, usize)) {
        self.ledger.max_pending_locks = self.ledger.max_pending_locks.max(locks);
        if let Some(imbalance) = imbalance {
            let what = format!("node {i}: {imbalance}");
            self.violate(Violation::new("conservation", what));
        }
    }

    /// Opens every planned channel: the opener asks, and deposits once it is open.
    fn open_channels(&mut self) {
        for k in 0..self.plan.channels.len() {
            let channel = self.plan.channels[k].clone();
            let partner = self.peers[channel.partner].node.address();
            let deposit = Amount::from(channel.deposits[0]);
            self.calls += 1;
            self.peers[channel.opener]
                .node
                .open_channel(self.now, partner, deposit)
                .expect("a planned channel opens");
            self.drain(channel.opener);
        }
    }

    /// The partner's deposit into a planned channel that opened.
    fn deposit_planned(&mut self, i: usize, channel: ChannelId, partner: Address) {
        let me = self.peers[i].node.address();
        let planned = self.planned.get(&(partner, me)).copied();
        if let Some(deposits) = planned.filter(|d| d[1] > 0) {
            let amount = Amount::from(deposits[1]);
            self.calls += 1;
            if self.peers[i]
                .node
                .deposit(self.now, channel, amount)
                .is_ok()
            {
                self.drain(i);
            }
        }
    }

    fn mine(&mut self) {
        let mut failed: BTreeMap<usize, Vec<Failed>> = BTreeMap::new();
        for failure in self.chain.mine() {
            failed.entry(failure.node).or_default().push(failure);
        }
        let block = BlockNumber(self.chain.block());
        let expected = self.expected_signatures(block);
        match self.presigner.start(expected) {
            Some(ahead) => {
                self.recoverer.signing_ahead(Some(ahead.clone()));
                ahead.scope(|| self.feed_block(block, failed));
                self.recoverer.signing_ahead(None);
                self.presigner.finish(&ahead);
            }
            None => self.feed_block(block, failed),
        }
        let turn = (block.0 % AUDIT_TURNS) as usize;
        for i in (turn..self.peers.len()).step_by(AUDIT_TURNS as usize) {
            self.audit_node(i);
        }
        if let Err((held, owed)) = self.chain.check_contract() {
            let what = format!("the contract holds {held}, its channels owe {owed}");
            self.violate(Violation::new("conservation", what));
        }
        self.sample_hub();
        if self.workload_start.is_none() {
            if self.setup_done() {
                self.start_workload();
            } else if block.0 > SETUP_BLOCKS {
                let what = format!(
                    "after {SETUP_BLOCKS} blocks not every planned channel is open and funded"
                );
                self.violate(Violation::new("setup", what));
            }
        }
        self.queue.push(self.now + self.block_time(), Action::Mine);
    }

    /// Feeds `block`'s events, the requests that `failed` in it and the block itself to the
    /// nodes.
    fn feed_block(&mut self, block: BlockNumber, mut failed: BTreeMap<usize, Vec<Failed>>) {
        // A shared view takes each event once; the nodes it concerns react to it.
        if let Some(view) = self.view.clone() {
            let new = self.chain.events()[self.applied..].to_vec();
            self.applied += new.len();
            for event in new {
                view.apply_chain_event(&event);
                for i in self.concerned(&event) {
                    if self.peers[i].running {
                        self.input(i, Input::Chain(event.clone()));
                    }
                }
            }
        }
        // Per node: the block's events, then what failed in it, then the block (duties are
        // derived once the block is whole).
        for i in 0..self.peers.len() {
            if !self.peers[i].running {
                continue;
            }
            if self.view.is_none() {
                self.feed_events(i);
            }
            for failure in failed.remove(&i).unwrap_or_default() {
                let input = Input::ChainRequestFailed {
                    id: failure.id,
                    request: failure.request,
                    failure: failure.failure,
                };
                self.input(i, input);
            }
            self.input(i, Input::Block(block));
        }
    }

    /// What the nodes will sign as `block` comes in, in the order they will (see
    /// [`crate::presign`]): each end's policy of a channel that opened in it, then, node by
    /// node, each end's half of the announcement of a channel whose capacity last changed in
    /// the block before.
    fn expected_signatures(&self, block: BlockNumber) -> Vec<Expected> {
        if !self.presigner.any() {
            return Vec::new();
        }
        let token_network = self.chain.token_network();
        let events = self.chain.events();
        let this = events.partition_point(|e| e.block < block.0);
        let before = events[..this].partition_point(|e| e.block + 1 < block.0);
        let capacity_changed = |events: &[ChainEvent]| -> BTreeSet<ChannelId> {
            events
                .iter()
                .filter_map(|e| match &e.event {
                    ChainEventKind::TokenNetwork(Tn::ChannelNewDeposit(d)) => {
                        Some(ChannelId(d.channelId))
                    }
                    ChainEventKind::TokenNetwork(Tn::ChannelWithdraw(w)) => {
                        Some(ChannelId(w.channelId))
                    }
                    _ => None,
                })
                .collect()
        };
        let running = |address: &Address| {
            self.index
                .get(address)
                .map(|&i| (i, &self.peers[i]))
                .filter(|(_, peer)| peer.running)
        };
        let mut expected = Vec::new();
        for event in &events[this..] {
            let ChainEventKind::TokenNetwork(Tn::ChannelOpened(opened)) = &event.event else {
                continue;
            };
            for participant in [opened.participant1, opened.participant2] {
                let Some((_, peer)) = running(&participant) else {
                    continue;
                };
                let update = ChannelUpdate {
                    token_network,
                    channel: ChannelId(opened.channelId),
                    participant,
                    timestamp: self.now.as_secs(),
                    policy: peer.config.policy,
                    signature: Signature(Default::default()),
                };
                let key = peer.key.clone();
                expected.push(Expected::Policy { key, update });
            }
        }
        let changed_now = capacity_changed(&events[this..]);
        let mut halves = Vec::new();
        for id in capacity_changed(&events[before..this]).difference(&changed_now) {
            let Some(channel) = self.chain.channel(*id).filter(|c| c.phase == Phase::Opened) else {
                continue;
            };
            let participants = [channel.state.participant1, channel.state.participant2];
            let capacity = Amount::from(channel.available());
            if capacity.is_zero() {
                continue;
            }
            for (i, peer) in participants.iter().filter_map(running) {
                let half = Expected::Announcement {
                    key: peer.key.clone(),
                    token_network,
                    channel: *id,
                    participants,
                    capacity,
                };
                halves.push((i, half));
            }
        }
        // The block goes to the nodes in order of their index.
        halves.sort_by_key(|&(i, _)| i);
        expected.extend(halves.into_iter().map(|(_, half)| half));
        expected
    }

    /// The nodes a chain event concerns when they share a view: a channel's participants,
    /// everyone for a revealed secret.
    fn concerned(&self, event: &hoplite_chain::events::ChainEvent) -> Vec<usize> {
        // The chain's mirror holds every channel whose events are fed (opened ones too).
        let channel = event.channel_id().and_then(|id| self.chain.channel(id));
        match channel {
            Some(c) => [c.state.participant1, c.state.participant2]
                .iter()
                .filter_map(|a| self.index.get(a).copied())
                .collect(),
            None => (0..self.peers.len()).collect(),
        }
    }

    /// Feeds node `i` the chain's events it has not seen, one call each.
    fn feed_events(&mut self, i: usize) {
        let events = self.chain.events();
        let new = events[self.peers[i].fed..].to_vec();
        self.peers[i].fed = events.len();
        for event in new {
            self.input(i, Input::Chain(event));
        }
    }

    /// Every planned channel is open with both deposits.
    fn setup_done(&self) -> bool {
        let funded = self
            .chain
            .channels()
            .filter(|c| {
                let [one, two] = [c.state.participant1, c.state.participant2];
                let planned = self.planned.get(&(one, two));
                planned.is_some_and(|d| {
                    c.side(one).is_some_and(|s| s.deposit == U256::from(d[0]))
                        && c.side(two).is_some_and(|s| s.deposit == U256::from(d[1]))
                })
            })
            .count();
        funded == self.plan.channels.len()
    }

    /// Schedules the payments, metering streams, faults and attacks two blocks' time after
    /// every channel is open and funded: at the first of those blocks each channel's capacity
    /// is announced (a node announces a capacity at the block after its last change), and by
    /// the second, that gossip and the policies' have spread.
    fn start_workload(&mut self) {
        let start = self.now + 2 * self.block_time();
        self.workload_start = Some(start);
        self.ledger.setup_blocks = self.chain.block();
        let w = self.config.workload.clone();
        let degrees = self.plan.degrees();
        self.pairs = PairPicker::new(w.pairs, &degrees, |i| self.peers[i].role.pays());
        if w.payments > 0 {
            self.next_arrival = start;
            for _ in 0..PLANNED_AHEAD {
                self.plan_payment();
            }
        } else {
            self.workload_done = true;
        }
        let span = Duration::from_secs_f64(w.payments as f64 / w.rate_per_s);
        for k in 0..w.metering.customers.min(self.plan.customers.len()) {
            let (customer, isp) = self.plan.customers[k];
            let offset = Duration::from_millis(self.rng.random_range(0..w.metering.interval_ms));
            let left = w.metering.payments_per_customer;
            if left > 0 {
                self.streams += 1;
                self.queue.push(
                    start + offset,
                    Action::Meter {
                        customer,
                        isp,
                        left,
                    },
                );
            }
        }
        for (jammer, sink) in
            roles::jam_pairs(&self.peers.iter().map(|p| p.role).collect::<Vec<_>>())
        {
            let left = self.config.faults.jamming.locks;
            if left == 0 {
                continue;
            }
            self.streams += 1;
            self.queue
                .push(start + span / 4, Action::Jam { jammer, sink, left });
        }
        let span_ms = span.as_millis().max(1) as u64;
        let f = self.config.faults.clone();
        for i in 0..self.peers.len() {
            let at = |rng: &mut StdRng| start + Duration::from_millis(rng.random_range(0..span_ms));
            match self.peers[i].role {
                Role::Offline => {
                    let t = at(&mut self.rng);
                    self.queue.push(t, Action::Offline(i));
                    self.queue.push(
                        t + Duration::from_secs(f.offline.duration_s),
                        Action::Online(i),
                    );
                }
                Role::Crashing => {
                    let t = at(&mut self.rng);
                    self.queue.push(t, Action::Crash(i));
                    self.queue.push(
                        t + Duration::from_secs(f.crashes.duration_s),
                        Action::Restart(i),
                    );
                }
                Role::StaleCloser => {
                    let t = start
                        + span / 2
                        + Duration::from_millis(self.rng.random_range(0..span_ms / 2 + 1));
                    self.queue.push(t, Action::StaleClose(i));
                }
                _ => {}
            }
        }
        for (id, partition) in self
            .config
            .network
            .partitions
            .clone()
            .into_iter()
            .enumerate()
        {
            let count = ((self.peers.len() as f64) * partition.share).round() as usize;
            let mut nodes: Vec<usize> = (0..self.peers.len()).collect();
            for k in 0..count.min(nodes.len()) {
                let pick = self.rng.random_range(k..nodes.len());
                nodes.swap(k, pick);
            }
            nodes.truncate(count);
            let from = start + Duration::from_secs(partition.start_s);
            self.queue
                .push(from, Action::Partition { id: id + 1, nodes });
            self.queue.push(
                from + Duration::from_secs(partition.duration_s),
                Action::Heal(id + 1),
            );
        }
    }

    /// Draws the next workload payment, schedules it, and hands its payer's route search
    /// over; nothing once every payment is drawn.
    fn plan_payment(&mut self) {
        let w = &self.config.workload;
        if self.drawn == w.payments {
            return;
        }
        let at = self.next_arrival;
        self.drawn += 1;
        let amount = workload::amount(&mut self.rng, &w.amount);
        let mut kind = if self.rng.random::<f64>() < w.spontaneous_share {
            Kind::Keysend
        } else {
            Kind::Invoice
        };
        let pair = self.pairs.pick(&mut self.rng);
        // A keysend payee holds the secret from the start: a silent payee is paid by invoice.
        if pair.is_some_and(|(_, payee)| self.peers[payee].role == Role::SilentPayee) {
            kind = Kind::Invoice;
        }
        self.next_arrival = at + workload::interarrival(&mut self.rng, w.rate_per_s);
        let search = match pair {
            Some((payer, payee)) if self.searcher.active() && self.peers[payer].running => {
                let to = self.peers[payee].node.address();
                let query = self.peers[payer]
                    .node
                    .route_query(at, to, Amount::from(amount));
                query.and_then(|query| self.searcher.submit(query))
            }
            _ => None,
        };
        let invoice = match pair {
            Some((_, payee)) if kind == Kind::Invoice && self.peers[payee].running => {
                let invoice = self.create_invoice(payee, amount, at);
                Some(InvoiceAhead {
                    invoice,
                    incarnation: self.peers[payee].incarnation,
                    check: self.recoverer.submit_invoice(invoice, at),
                })
            }
            _ => None,
        };
        self.upcoming.push_back(Planned {
            pair,
            amount,
            kind,
            invoice,
            search,
        });
        self.queue.push(at, Action::Pay);
    }

    /// The next workload payment; the one [`PLANNED_AHEAD`] after it is drawn.
    fn pay(&mut self) {
        let Some(Planned {
            pair,
            amount,
            kind,
            invoice,
            search,
        }) = self.upcoming.pop_front()
        else {
            return;
        };
        if let Some((payer, payee)) = pair {
            self.start_payment(payer, payee, amount, kind, invoice, search);
        }
        #[cfg(feature = "test-utils")]
        {
            let n = self.drawn - self.upcoming.len() - 1;
            if self.planted == Some(Plant::MintIntoContract { after_payments: n }) {
                self.chain.mint_into_contract(U256::from(1u64));
            }
        }
        self.plan_payment();
        if self.upcoming.is_empty() {
            self.workload_done = true;
        }
    }

    /// `payer` starts paying `payee` `amount`: spontaneously, or by `invoice` (made now if
    /// none was made ahead by the payee running now), with the route `search`ed ahead if any.
    fn start_payment(
        &mut self,
        payer: usize,
        payee: usize,
        amount: u64,
        kind: Kind,
        invoice: Option<InvoiceAhead>,
        search: Option<Search>,
    ) {
        if !self.peers[payer].running || !self.peers[payee].running {
            self.ledger.refuse(kind, amount, "an end is down");
            return;
        }
        let amount_in = Amount::from(amount);
        let invoice = match invoice {
            _ if kind == Kind::Keysend => None,
            Some(ahead) if ahead.incarnation == self.peers[payee].incarnation => {
                Some((ahead.invoice, Some(ahead.check)))
            }
            _ => Some((self.create_invoice(payee, amount, self.now), None)),
        };
        self.calls += 1;
        let node = &mut self.peers[payer].node;
        let taken = node.routes_taken();
        if let Some(found) = search.and_then(Search::wait) {
            node.offer_route(found);
        }
        let result = match invoice {
            None => {
                let to = self.peers[payee].node.address();
                let node = &mut self.peers[payer].node;
                node.send_spontaneous(self.now, to, amount_in)
            }
            // The payer checks the invoice's signature, recovered meanwhile if it was made
            // ahead.
            Some((invoice, check)) => {
                let none = Recovered::default();
                let known = check.as_ref().map_or(&none, Pending::wait);
                let now = self.now;
                known.scope(|| node.pay(now, &invoice))
            }
        };
        self.routes_taken += self.peers[payer].node.routes_taken() - taken;
        match result {
            Ok(id) => self
                .ledger
                .started_payment(id, payer, payee, amount, kind, self.now),
            Err(error) => self.ledger.refuse(kind, amount, &error.to_string()),
        }
        self.drain(payer);
    }

    /// Node `payee`'s invoice for `amount`, made now for a payment `due` then: it expires
    /// [`INVOICE_VALIDITY`] after that, however long the payment is drawn ahead.
    fn create_invoice(&mut self, payee: usize, amount: u64, due: Duration) -> Invoice {
        self.calls += 1;
        let validity = INVOICE_VALIDITY + due.saturating_sub(self.now);
        let invoice =
            self.peers[payee]
                .node
                .create_invoice(self.now, Amount::from(amount), validity);
        self.drain(payee);
        invoice
    }

    /// Node `i`'s network goes down or comes back: it and every running, online peer it can
    /// reach learn of it (and resend what waits, when it comes back).
    fn set_online(&mut self, i: usize, online: bool) {
        if online && !self.peers[i].running {
            return;
        }
        self.peers[i].online = online;
        for j in 0..self.peers.len() {
            let reachable = j != i
                && self.peers[j].running
                && self.peers[j].online
                && self.links.connected(i, j);
            if reachable {
                self.link_changed(i, j, online);
            }
        }
    }

    /// Tells `i` and `j` that their connection went up or down.
    fn link_changed(&mut self, i: usize, j: usize, up: bool) {
        let (a, b) = (self.peers[i].node.address(), self.peers[j].node.address());
        let input = |peer| {
            if up {
                Input::PeerConnected(peer)
            } else {
                Input::PeerDisconnected(peer)
            }
        };
        if self.peers[j].running {
            self.input(j, input(a));
        }
        if self.peers[i].running {
            self.input(i, input(b));
        }
    }

    /// Applies a partition change that moves the nodes `moved` (sorted), telling every pair
    /// of online nodes whose reachability changed.
    fn repartition(&mut self, moved: Vec<usize>, change: impl FnOnce(&mut Links)) {
        let n = self.peers.len();
        let before: Vec<Vec<bool>> = moved
            .iter()
            .map(|&i| (0..n).map(|j| self.links.connected(i, j)).collect())
            .collect();
        change(&mut self.links);
        let mut changed = Vec::new();
        for (&i, was) in moved.iter().zip(&before) {
            for (j, &was_connected) in was.iter().enumerate() {
                let now = self.links.connected(i, j);
                let both_moved = moved.binary_search(&j).is_ok();
                let online = self.peers[i].online && self.peers[j].online;
                if i != j && now != was_connected && online && (!both_moved || i < j) {
                    changed.push((i, j, now));
                }
            }
        }
        for (i, j, now) in changed {
            self.link_changed(i, j, now);
        }
    }

    /// Restores node `i` from its store, replays the whole chain to it, and reconnects it.
    fn restart(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        let block = BlockNumber(self.chain.block());
        let (config, key, records) = (peer.config.clone(), peer.key.clone(), peer.store.records());
        let node = match &self.view {
            Some(view) => {
                Node::restore_following(config, key, records, self.now, block, view.clone())
            }
            None => Node::restore(config, key, records, self.now, block),
        };
        match node {
            Ok(node) => {
                peer.node = node;
                peer.running = true;
                peer.fed = 0;
                self.ledger.counts.restarts += 1;
                if self.view.is_some() {
                    let events = self.chain.events().to_vec();
                    for event in events {
                        if self.concerned(&event).contains(&i) {
                            self.input(i, Input::Chain(event));
                        }
                    }
                } else {
                    self.feed_events(i);
                }
                self.input(i, Input::Block(block));
                self.set_online(i, true);
            }
            Err(error) => {
                let what = format!("node {i} does not restore from its records: {error}");
                self.violate(Violation::new("restore", what));
            }
        }
    }

    /// A stale closer keeps the first proof its partner signed on each channel.
    fn keep_oldest_proofs(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        for channel in peer.node.channels() {
            if let Some(proof) = channel
                .participant(hoplite_htlc::Side::Partner)
                .latest_proof()
            {
                peer.kept_proofs.entry(channel.id()).or_insert(*proof);
            }
        }
    }

    /// Node `i` closes the channel where its kept proof has locks pending, or else is furthest
    /// behind, with that proof:
    /// an attacker's transaction, sent behind its node's back.
    fn stale_close(&mut self, i: usize) {
        let peer = &self.peers[i];
        let target = peer
            .kept_proofs
            .iter()
            .filter_map(|(channel, kept)| {
                let current = peer.node.channel(*channel)?;
                let latest = current.participant(hoplite_htlc::Side::Partner).nonce();
                // A proof with locks pending is the most dangerous to submit.
                let locked = !kept.proof.locked_amount.is_zero();
                let behind = (locked, latest.0 - kept.proof.nonce.0);
                (latest > kept.proof.nonce).then_some((behind, *channel, *kept))
            })
            .max_by_key(|(behind, channel, _)| (*behind, *channel));
        if let Some((_, channel, kept)) = target {
            self.stale_closed.push((i, channel));
            let request = ChainRequest::Close {
                channel,
                partner_proof: Some(kept),
            };
            self.chain.submit(i, None, request);
        }
    }

    /// Of the stale closes sent, how many were mined (a `ChannelClosed` by the stale closer on
    /// its channel) and how many the partner answered (`NonClosingBalanceProofUpdated`).
    fn stale_close_outcomes(&self) -> (u64, u64) {
        use hoplite_chain::contracts::TokenNetwork::TokenNetworkEvents as Tn;
        use hoplite_chain::events::Event as ContractEvent;
        let (mut closed, mut answered) = (0, 0);
        for &(i, channel) in &self.stale_closed {
            let closer = self.peers[i].node.address();
            for event in self.chain.events() {
                if event.channel_id() != Some(channel) {
                    continue;
                }
                match &event.event {
                    ContractEvent::TokenNetwork(Tn::ChannelClosed(e)) if e.closer == closer => {
                        closed += 1;
                    }
                    ContractEvent::TokenNetwork(Tn::NonClosingBalanceProofUpdated(_)) => {
                        answered += 1;
                    }
                    _ => {}
                }
            }
        }
        (closed, answered)
    }

    /// Samples the hub's outbound liquidity (what it can spend over all its open channels).
    fn sample_hub(&mut self) {
        let spendable: u128 = self.peers[self.hub]
            .node
            .channels()
            .map(|c| {
                u128::try_from(c.spendable(hoplite_htlc::Side::Ours).to_u256()).unwrap_or(u128::MAX)
            })
            .sum();
        let t = self.now.saturating_sub(EPOCH);
        self.ledger
            .hub_liquidity
            .push((t.as_secs_f64(), spendable as f64));
    }

    /// The workload is done, nothing is in flight or waiting on-chain, every payment
    /// resolved, no lock pending, and every channel that closed settled with its pots paid
    /// out.
    fn finished(&self) -> bool {
        if self.workload_start.is_none()
            || !self.workload_done
            || self.streams > 0
            || self.in_flight > 0
            || self.chain.waiting() > 0
            || !self.ledger.all_resolved()
        {
            return false;
        }
        let idle = |c: &hoplite_htlc::Channel| {
            [hoplite_htlc::Side::Ours, hoplite_htlc::Side::Partner]
                .iter()
                .all(|side| c.participant(*side).locks().is_empty())
        };
        self.peers
            .iter()
            .all(|p| p.running && p.node.channels().all(idle))
            && self.chain.channels().all(|c| match c.phase {
                Phase::Opened => true,
                Phase::Closed => false,
                Phase::Settled { .. } => c.pots == [None, None],
            })
    }

    /// When the run must have finished: the workload's last payment or stream, then
    /// `settle_timeout` plus 400 blocks (every lock expired, every window passed).
    fn drain_deadline(&self) -> Option<Duration> {
        let start = self.workload_start?;
        let w = &self.config.workload;
        let payments = Duration::from_secs_f64(w.payments as f64 / w.rate_per_s);
        let m = &w.metering;
        let metering = Duration::from_millis(
            m.interval_ms
                .saturating_mul(m.payments_per_customer as u64 + 1),
        );
        let locks = u32::try_from(self.config.faults.jamming.locks).unwrap_or(u32::MAX);
        let jamming = payments / 4 + JAM_INTERVAL.saturating_mul(locks);
        let blocks =
            u32::try_from(u64::from(self.config.node.settle_timeout) + 400).unwrap_or(u32::MAX);
        let workload = payments.max(metering).max(jamming);
        Some(start + workload + self.block_time().saturating_mul(blocks))
    }

    /// At the end: every payment resolved all-or-nothing, every honest node holds at least
    /// what its completed payments give it.
    fn final_checks(&mut self) -> Result<(), Violation> {
        let (seed, config, at) = (self.config.seed, self.config.to_toml(), self.elapsed());
        let fail = |what: String| Violation {
            seed,
            config: config.clone(),
            at,
            ..Violation::new("conservation", what)
        };
        for i in 0..self.peers.len() {
            self.audit_node(i);
        }
        if let Some(violation) = self.violation.take() {
            return Err(violation);
        }
        if let Err((held, owed)) = self.chain.check_contract() {
            return Err(fail(format!(
                "the contract holds {held}, its channels owe {owed}"
            )));
        }
        // Every token minted is in a wallet or the contract.
        let wallets: U256 = (0..self.peers.len()).map(|i| self.chain.tokens(i)).sum();
        let contract = self.chain.contract_tokens();
        let minted: U256 = self.minted.iter().copied().sum();
        if wallets + contract != minted {
            return Err(fail(format!(
                "wallets hold {wallets} and the contract {contract}, but {minted} were minted"
            )));
        }
        #[cfg(feature = "test-utils")]
        if self.planted == Some(Plant::Theft) {
            // The first honest node with tokens in its wallet loses them to another node.
            let victim = (0..self.peers.len())
                .find(|&i| self.peers[i].role.is_honest() && self.chain.tokens(i) > U256::ZERO);
            if let Some(victim) = victim {
                let thief = (victim + 1) % self.peers.len();
                let wallet = self.chain.tokens(victim);
                self.chain.transfer(victim, thief, wallet);
            }
        }
        // Both honest ends of every open channel hold the same state of each direction (unless
        // one still has a message for the other to resend).
        for (i, peer) in self.peers.iter().enumerate() {
            if !peer.role.is_honest() {
                continue;
            }
            for channel in peer.node.channels() {
                use hoplite_htlc::Side;
                let partner = channel.participant(Side::Partner).address();
                let Some(&j) = self.index.get(&partner) else {
                    continue;
                };
                let open = self
                    .chain
                    .channel(channel.id())
                    .is_some_and(|c| c.phase == Phase::Opened);
                // A message waiting to be resent may still bring them together.
                let waiting = peer.node.unacknowledged(partner) > 0
                    || self.peers[j].node.unacknowledged(peer.node.address()) > 0;
                if j < i || !open || waiting || !self.peers[j].role.is_honest() {
                    continue;
                }
                let Some(theirs) = self.peers[j].node.channel(channel.id()) else {
                    return Err(fail(format!(
                        "node {j} does not know channel {}",
                        channel.id()
                    )));
                };
                for (mine, seen) in [(Side::Ours, Side::Partner), (Side::Partner, Side::Ours)] {
                    let (a, b) = (channel.participant(mine), theirs.participant(seen));
                    if (a.nonce(), a.transferred_amount(), a.locks().root())
                        != (b.nonce(), b.transferred_amount(), b.locks().root())
                    {
                        return Err(fail(format!(
                            "nodes {i} and {j} hold different states of channel {}",
                            channel.id()
                        )));
                    }
                }
            }
        }
        let (closed, answered) = self.stale_close_outcomes();
        self.ledger.counts.stale_closes = closed;
        self.ledger.counts.stale_closes_answered = answered;
        let mut holdings = Vec::with_capacity(self.peers.len());
        for i in 0..self.peers.len() {
            let tokens = self.chain.tokens(i);
            let mut held = i128::try_from(tokens).unwrap_or(i128::MAX)
                - i128::try_from(self.minted[i]).unwrap_or(i128::MAX);
            for channel in self.peers[i].node.channels() {
                let open = self
                    .chain
                    .channel(channel.id())
                    .is_some_and(|c| c.phase == Phase::Opened);
                if open {
                    let ours = channel.participant(hoplite_htlc::Side::Ours);
                    held += i128::try_from(channel.spendable(hoplite_htlc::Side::Ours).to_u256())
                        .unwrap_or(i128::MAX);
                    held += i128::try_from(ours.locks().total().to_u256()).unwrap_or(i128::MAX);
                }
            }
            holdings.push(held);
        }
        self.ledger.finish(&holdings).map_err(|mut v| {
            v.seed = self.config.seed;
            v.config = self.config.to_toml();
            v.at = self.now.saturating_sub(EPOCH);
            v
        })
    }

    /// The run's figures.
    pub fn report(&self) -> crate::report::Report {
        crate::report::Report::new(self, &self.chain)
    }

    /// The config being run.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_sub(EPOCH)
    }

    /// Blocks mined.
    pub fn blocks(&self) -> u64 {
        self.chain.block()
    }

    /// Calls made to nodes so far (inputs, timers, commands).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Each node's role.
    pub fn roles(&self) -> Vec<Role> {
        self.peers.iter().map(|p| p.role).collect()
    }

    /// The best-connected node (whose liquidity is sampled).
    pub fn hub(&self) -> usize {
        self.hub
    }
}

/// A broken transition planted for the invariant checker's own test.
#[cfg(feature = "test-utils")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// A token minted into the contract behind every channel's back, after this many workload
    /// payments (conservation must catch it).
    MintIntoContract {
        /// When.
        after_payments: usize,
    },
    /// At the end, the tokens in an honest node's wallet given to another node (no honest
    /// loss must catch it).
    Theft,
}

/// Node `i`'s key: keccak256 of the seed and the index, hashed again until valid.
/// The first of `channels` that does not account for its deposits, and the most locks
/// pending on one channel direction among them.
fn check_channels<'a>(
    channels: impl IntoIterator<Item = &'a Channel>,
) -> (Option<Imbalance>, usize) {
    let mut imbalance = None;
    let mut most_locks = 0;
    for channel in channels {
        imbalance = imbalance.or_else(|| audit::check_channel(channel).err());
        for side in [Side::Ours, Side::Partner] {
            most_locks = most_locks.max(channel.participant(side).locks().len());
        }
    }
    (imbalance, most_locks)
}

fn key(seed: u64, i: usize) -> PrivateKey {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..].copy_from_slice(&(i as u64).to_be_bytes());
    let mut candidate = keccak256(bytes);
    loop {
        if let Ok(key) = PrivateKey::from_bytes(&candidate) {
            return key;
        }
        candidate = keccak256(candidate);
    }
}

/// Node `i`'s configuration under the run's node model.
fn node_config(config: &SimConfig, token_network: hoplite_htlc::TokenNetwork, i: usize) -> Config {
    let mut node = Config::new(
        token_network,
        config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
    );
    let m = &config.node;
    node.policy = Policy {
        base_fee: m.base_fee,
        fee_millionths: m.fee_millionths,
        ..node.policy
    };
    node.payment_timeout = Duration::from_secs(m.payment_timeout_s);
    node.max_attempts = m.max_attempts;
    node.settle_timeout = m.settle_timeout;
    node.alias = format!("sim-{i}");
    node
}

//! Many [`Node`]s and the in-process EVM chain in one test, in the style of rust-lightning's
//! functional tests: [`create_network`], [`Network::open_channel`], [`Network::route_payment`],
//! and message delivery under the test's control.
//!
//! Outputs are acted on at once, except messages between peers: they wait in
//! [`Network::in_flight`] until the test delivers them ([`Network::deliver_all`],
//! [`Network::deliver_next`]), drops, delays or reorders them. Chain requests run on the
//! in-process EVM (the real contract bytecode) and every node is fed the resulting events;
//! records are persisted at once. After every delivered message the network checks
//! [`Network::check_conservation`]. A network dropped with undelivered messages fails the test.
//!
//! The chain can be made as hard as a real one: with [`Network::use_mempool`] requests wait
//! for [`Network::mine`], and a second transaction on a channel in one block reverts
//! `StaleChannelState` as on the contract (both were made against the same state);
//! [`Network::fail_chain_requests`] makes requests fail as if never sent.

use crate::api::{ChainRequest, Config, Event, Input, Output, PeerError, PersistId, Record};
use crate::audit;
use crate::invoice::{Invoice, PaymentId};
use crate::monitor::{ChainFailure, ChainRequestId};
use crate::node::Node;
use crate::store::MemoryStore;
use crate::wire::{Envelope, Message, MessageId};
use alloy_primitives::{Address, U256};
use hoplite_chain::Chain;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::events::{ChainEvent, OnChainChannel, Phase};
use hoplite_chain::evm::{EvmBackend, InProcessEvm, SharedEvm, complete};
use hoplite_chain::testing::{CHAIN_ID, DEPLOYER};
use hoplite_gossip::Verdict;
use hoplite_htlc::testing::key;
use hoplite_htlc::{Amount, BlockNumber, Channel, ChannelId, PrivateKey, Side, TokenNetwork};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tokens each node is minted at the start.
pub const START_TOKENS: u64 = 1_000_000_000_000;

/// A message on its way from one node to another.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Sender's index.
    pub from: usize,
    /// Receiver's index.
    pub to: usize,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

impl InFlight {
    /// The envelope it carries.
    pub fn envelope(&self) -> Envelope {
        Envelope::decode(&self.bytes).expect("nodes send well-formed envelopes")
    }

    /// The message it carries, unless it is an acknowledgement.
    pub fn message(&self) -> Option<Message> {
        match self.envelope() {
            Envelope::Message { message, .. } => Some(message),
            Envelope::Ack(_) => None,
        }
    }
}

/// `n` nodes on a fresh in-process chain, with default configuration and seed 1.
pub fn create_network(n: usize) -> Network {
    Network::new(n, 1, |_, _| {})
}

/// Nodes 0 and 1 with a channel (deposits 1,000 and 500) after direct payments both ways,
/// everything delivered and mined: 0 holds 850, 1 holds 650.
pub fn paid_channel() -> (Network, ChannelId) {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 500]);
    let now = net.now();
    net.nodes[0]
        .send_direct(now, channel, Amount::from(300u64))
        .expect("node 0 can pay 300");
    net.nodes[1]
        .send_direct(now, channel, Amount::from(150u64))
        .expect("node 1 can pay 150");
    net.settle();
    net.deliver_all();
    (net, channel)
}

/// Nodes, the chain, and the messages between them.
pub struct Network {
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// Messages sent and not delivered yet, oldest first. Tests may drop, reorder or hold them.
    pub in_flight: VecDeque<InFlight>,
    chains: Vec<Chain<EvmBackend>>,
    evm: SharedEvm,
    contracts: Deployment,
    now: Duration,
    events: Vec<Vec<Event>>,
    /// What each node persisted.
    stores: Vec<MemoryStore>,
    /// Each node's last batch of records made durable.
    last_batch: Vec<Vec<Record>>,
    /// Every batch made durable by the nodes whose batches are recorded, in order.
    recorded: BTreeMap<usize, Vec<(PersistId, Vec<Record>)>>,
    /// Nodes whose storage is stalled: their records wait here, not durable yet.
    stalled: BTreeMap<usize, Vec<(PersistId, Vec<Record>)>>,
    configs: Vec<Config>,
    keys: Vec<PrivateKey>,
    offline: BTreeSet<usize>,
    /// Whether deliveries check conservation and agreement (benchmarks turn it off).
    checks: bool,
    /// The block of the last event fed to the nodes, and how many of that block's were fed.
    fed: (u64, usize),
    /// The chain's channels as its events build them, never late, and the events taken.
    mirror: BTreeMap<ChannelId, OnChainChannel>,
    mirrored: (u64, usize),
    next_gossip_id: u64,
    /// Requests wait for the next block (`None`: each runs at once).
    mempool: Option<Vec<(usize, ChainRequestId, ChainRequest)>>,
    /// Per node: how many more requests matching the rule fail, and the rule.
    failing: BTreeMap<usize, (usize, ChainRule)>,
    /// Requests that fail at random as not sent: per mille, and the generator's state.
    flaky: Option<(u64, u64)>,
    /// How many blocks the nodes' view of the chain lags behind it.
    lag: u64,
    /// The latest block the nodes were shown.
    shown: u64,
}

/// Which chain requests a [`Network::fail_chain_requests`] rule fails.
pub type ChainRule = Box<dyn Fn(&ChainRequest) -> bool>;

impl Network {
    /// `n` nodes (keys from `seed`) on a fresh chain; `configure(i, config)` adjusts node `i`'s
    /// config.
    pub fn new(n: usize, seed: u64, configure: impl Fn(usize, &mut Config)) -> Self {
        assert!(n <= 256, "node keys are indexed by a byte");
        let evm: SharedEvm = Arc::new(Mutex::new(InProcessEvm::new(CHAIN_ID)));
        let mut deployer = EvmBackend::new(evm.clone(), DEPLOYER);
        let contracts =
            complete(Deployment::with_test_token(&mut deployer)).expect("the contracts deploy");
        let keys: Vec<_> = (0..n).map(|i| key(seed, i as u8)).collect();
        let mut chains = Vec::new();
        for k in &keys {
            let mut chain = Chain::new(EvmBackend::new(evm.clone(), k.address()), contracts);
            complete(chain.mint_test_tokens(k.address(), U256::from(START_TOKENS))).expect("mint");
            complete(chain.approve_deposits(U256::MAX)).expect("approve");
            chains.push(chain);
        }
        let token_network = TokenNetwork {
            chain_id: CHAIN_ID,
            address: contracts.token_network,
        };
        let now = Duration::from_secs(1_700_000_000);
        let block = BlockNumber(evm.lock().expect("evm lock").block_number());
        let configs: Vec<Config> = (0..n)
            .map(|i| {
                let mut config = Config::new(token_network, seed.wrapping_mul(1000) + i as u64);
                configure(i, &mut config);
                config
            })
            .collect();
        let nodes = keys
            .iter()
            .zip(&configs)
            .map(|(k, config)| {
                Node::new(config.clone(), k.clone(), now, block).expect("a valid config")
            })
            .collect();
        Self {
            nodes,
            in_flight: VecDeque::new(),
            chains,
            evm,
            contracts,
            now,
            events: vec![Vec::new(); n],
            stores: vec![MemoryStore::new(); n],
            last_batch: vec![Vec::new(); n],
            recorded: BTreeMap::new(),
            stalled: BTreeMap::new(),
            configs,
            keys,
            offline: BTreeSet::new(),
            checks: true,
            fed: (0, 0),
            mirror: BTreeMap::new(),
            mirrored: (0, 0),
            next_gossip_id: 0,
            mempool: None,
            failing: BTreeMap::new(),
            flaky: None,
            lag: 0,
            shown: block.0,
        }
    }

    /// From now on each chain request fails as not sent with probability `per_mille` / 1000,
    /// drawn from `seed`.
    pub fn fail_chain_requests_at_random(&mut self, per_mille: u64, seed: u64) {
        self.flaky = Some((per_mille, seed));
    }

    /// From now on the nodes see the chain `blocks` blocks late: a block and its events reach
    /// them only once `blocks` more have been mined (as from an RPC node that lags), while
    /// their requests land on the chain as it is.
    pub fn lag_chain(&mut self, blocks: u64) {
        self.lag = blocks;
    }

    /// From now on chain requests wait in a mempool for the next [`Self::mine`], which runs
    /// them in order; a second one on the same channel in that block reverts
    /// `StaleChannelState` without running, as it would on the contract.
    pub fn use_mempool(&mut self) {
        self.mempool.get_or_insert_with(Vec::new);
    }

    /// Node `i`'s next `times` chain requests that `rule` picks fail as not sent.
    pub fn fail_chain_requests(
        &mut self,
        i: usize,
        times: usize,
        rule: impl Fn(&ChainRequest) -> bool + 'static,
    ) {
        self.failing.insert(i, (times, Box::new(rule)));
    }

    /// Turns the invariant checks after each delivery on or off (on by default; benchmarks
    /// turn them off, as each costs a chain call).
    pub fn set_invariant_checks(&mut self, on: bool) {
        self.checks = on;
    }

    /// Node `i`'s address.
    pub fn address(&self, i: usize) -> Address {
        self.nodes[i].address()
    }

    /// The current (virtual) time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The current block.
    pub fn block(&self) -> BlockNumber {
        BlockNumber(self.evm.lock().expect("evm lock").block_number())
    }

    /// Opens a channel from `a` to `b`, each depositing its part of `deposits` (0: none), and
    /// delivers everything that follows (policy gossip included). Returns the channel.
    pub fn open_channel(&mut self, a: usize, b: usize, deposits: [u64; 2]) -> ChannelId {
        let partner = self.address(b);
        self.nodes[a]
            .open_channel(self.now, partner, Amount::from(deposits[0]))
            .expect("open_channel");
        self.settle();
        let channel = self.events[a]
            .iter()
            .rev()
            .find_map(|event| match event {
                Event::ChannelOpened {
                    channel,
                    partner: p,
                } if *p == partner => Some(*channel),
                _ => None,
            })
            .expect("the channel opened");
        if deposits[1] > 0 {
            self.nodes[b]
                .deposit(self.now, channel, Amount::from(deposits[1]))
                .expect("deposit");
            self.settle();
        }
        self.deliver_all();
        let onchain = self.nodes[a].onchain_channel(channel).expect("opened");
        let deposited = [a, b].map(|i| {
            onchain
                .side(self.address(i))
                .map(|side| side.deposit)
                .unwrap_or_default()
        });
        assert_eq!(
            deposited,
            deposits.map(U256::from),
            "deposits of channel {channel}; events: {:?} {:?}",
            self.events[a],
            self.events[b]
        );
        channel
    }

    /// `payee` makes an invoice for `amount` and `payer` starts paying it (nothing delivered).
    pub fn send_payment(&mut self, payer: usize, payee: usize, amount: u64) -> PaymentId {
        let invoice = self.invoice(payee, amount);
        let id = self.nodes[payer]
            .pay(self.now, &invoice)
            .expect("pay accepts a valid invoice");
        self.settle();
        id
    }

    /// An invoice of `payee` for `amount`, valid for an hour.
    pub fn invoice(&mut self, payee: usize, amount: u64) -> Invoice {
        let invoice = self.nodes[payee].create_invoice(
            self.now,
            Amount::from(amount),
            Duration::from_secs(3600),
        );
        self.settle();
        invoice
    }

    /// Delivers everything and checks that `payment` from `path[0]` reached `path.last()`
    /// through exactly `path`: the payer got `PaymentSent`, the payee `PaymentReceived`.
    /// Returns the fee paid.
    pub fn claim_payment(&mut self, path: &[usize], payment: PaymentId) -> Amount {
        self.deliver_all();
        let payer = path[0];
        let payee = *path.last().expect("a path has a payee");
        let expected_route: Vec<Address> = path[1..].iter().map(|&i| self.address(i)).collect();
        let sent = self.events[payer].iter().find_map(|event| match event {
            Event::PaymentSent {
                payment: p,
                fee,
                route,
                ..
            } if *p == payment => Some((*fee, route.clone())),
            _ => None,
        });
        let (fee, route) = sent.unwrap_or_else(|| {
            panic!(
                "no PaymentSent at node {payer}; its events: {:?}",
                self.events[payer]
            )
        });
        assert_eq!(route, expected_route, "the payment took another route");
        assert!(
            self.events[payee].iter().any(|event| matches!(
                event,
                Event::PaymentReceived { payment: p, .. } if *p == payment
            )),
            "no PaymentReceived at node {payee}: {:?}",
            self.events[payee]
        );
        fee
    }

    /// Pays `amount` along `path` (which the payer's router must choose) and delivers it all;
    /// returns the fee.
    pub fn route_payment(&mut self, path: &[usize], amount: u64) -> Amount {
        let payee = *path.last().expect("a path has a payee");
        let payment = self.send_payment(path[0], payee, amount);
        self.claim_payment(path, payment)
    }

    /// Node `i`'s events so far, and forgets them.
    pub fn take_events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.events[i])
    }

    /// Node `i`'s events so far.
    pub fn events(&self, i: usize) -> &[Event] {
        &self.events[i]
    }

    /// What node `i` can spend in `channel` as it sees it.
    pub fn spendable(&self, i: usize, channel: ChannelId) -> Amount {
        self.nodes[i]
            .channel(channel)
            .expect("a channel of this node")
            .spendable(Side::Ours)
    }

    /// The records of node `i`'s last batch made durable.
    pub fn last_batch(&self, i: usize) -> &[Record] {
        &self.last_batch[i]
    }

    /// Records every batch node `i` makes durable from now on (a database store's tests
    /// replay them).
    pub fn record_batches(&mut self, i: usize) {
        self.recorded.entry(i).or_default();
    }

    /// The batches recorded for node `i` since [`Self::record_batches`], in order.
    pub fn recorded_batches(&mut self, i: usize) -> Vec<(PersistId, Vec<Record>)> {
        self.recorded
            .get_mut(&i)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What node `i` last persisted for `channel`.
    pub fn persisted(&self, i: usize, channel: ChannelId) -> Option<&Channel> {
        self.stores[i].channel(channel)
    }

    /// Node `i`'s token balance on-chain.
    pub fn tokens(&mut self, i: usize) -> Amount {
        let account = self.address(i);
        complete(self.chains[i].token_balance(account)).expect("balanceOf")
    }

    /// Node `i`'s own access to the chain, to act behind its node's back (an attacker).
    pub fn chain(&mut self, i: usize) -> &mut Chain<EvmBackend> {
        &mut self.chains[i]
    }

    /// Feeds every node the chain's new events (after acting through [`Self::chain`]).
    pub fn sync_chain(&mut self) {
        self.feed_chain_events();
        self.settle();
    }

    /// Mines one block at a time, delivering every message after each, `blocks` times.
    pub fn mine_and_deliver(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.mine(1);
            self.deliver_all();
        }
    }

    /// Takes node `i` offline: messages to it are lost until [`Self::reconnect`].
    pub fn disconnect(&mut self, i: usize) {
        self.offline.insert(i);
        for j in 0..self.nodes.len() {
            if j != i {
                let peer = self.address(i);
                self.nodes[j].handle_input(self.now, Input::PeerDisconnected(peer));
            }
        }
        self.settle();
    }

    /// Brings node `i` back; both sides resend what was not acknowledged.
    pub fn reconnect(&mut self, i: usize) {
        self.offline.remove(&i);
        for j in 0..self.nodes.len() {
            if j != i {
                let (me, peer) = (self.address(j), self.address(i));
                self.nodes[j].handle_input(self.now, Input::PeerConnected(peer));
                self.nodes[i].handle_input(self.now, Input::PeerConnected(me));
            }
        }
        self.settle();
    }

    /// Delivers the oldest message in flight; `false` if there is none. A message to an
    /// offline node is lost.
    pub fn deliver_next(&mut self) -> bool {
        let Some(message) = self.in_flight.pop_front() else {
            return false;
        };
        if !self.offline.contains(&message.to) && !self.offline.contains(&message.from) {
            let from = self.address(message.from);
            self.nodes[message.to].handle_input(
                self.now,
                Input::PeerMessage {
                    from,
                    bytes: message.bytes,
                },
            );
            self.settle();
            if self.checks {
                self.check_conservation();
            }
        }
        true
    }

    /// Delivers messages until none is in flight; then checks that both ends of every channel
    /// agree.
    pub fn deliver_all(&mut self) {
        let mut delivered = 0u64;
        while self.deliver_next() {
            delivered += 1;
            assert!(
                delivered < 100_000,
                "messages never stop: a delivery loop; in flight: {:?}",
                self.in_flight
                    .iter()
                    .take(6)
                    .map(InFlight::message)
                    .collect::<Vec<_>>()
            );
        }
        if self.checks {
            self.check_agreement();
        }
    }

    /// Delivers messages until none is in flight, dropping (losing) those `drop` picks;
    /// returns how many it dropped. Lost messages are not resent unless time moves on.
    pub fn deliver_all_dropping(&mut self, drop: impl Fn(&InFlight) -> bool) -> usize {
        let mut dropped = 0;
        while let Some(next) = self.in_flight.front() {
            if drop(next) {
                self.in_flight.pop_front();
                dropped += 1;
            } else {
                self.deliver_next();
            }
        }
        dropped
    }

    /// Delivers `bytes` to node `to` as if `from` sent them, and returns the events it caused.
    pub fn inject(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> Vec<Event> {
        let before = self.events[to].len();
        let sender = self.address(from);
        self.nodes[to].handle_input(
            self.now,
            Input::PeerMessage {
                from: sender,
                bytes,
            },
        );
        self.settle();
        self.check_conservation();
        self.events[to][before..].to_vec()
    }

    /// Delivers `message` to node `to` as if `from` sent it, and returns the errors it was
    /// rejected with.
    pub fn inject_message(&mut self, from: usize, to: usize, message: Message) -> Vec<PeerError> {
        let envelope = Envelope::Message {
            id: MessageId(u64::MAX),
            message,
        };
        self.inject(from, to, envelope.encode())
            .into_iter()
            .filter_map(|event| match event {
                Event::PeerMessageRejected { error, .. } => Some(error),
                _ => None,
            })
            .collect()
    }

    /// Node `to`'s verdict on gossip `bytes` relayed by node `from` (its other outputs are
    /// acted on as usual).
    pub fn gossip_verdict(&mut self, from: usize, to: usize, bytes: Vec<u8>) -> Option<Verdict> {
        self.next_gossip_id += 1;
        let id = self.next_gossip_id;
        let from = self.address(from);
        self.nodes[to].handle_input(self.now, Input::Gossip { from, id, bytes });
        let mut verdict = None;
        while let Some(output) = self.nodes[to].poll_output() {
            match output {
                Output::GossipVerdict { id: i, verdict: v } if i == id => verdict = Some(v),
                output => self.act(to, output),
            }
        }
        self.settle();
        verdict
    }

    /// Mines `blocks` blocks, telling every node of each one (deadlines fall on single blocks);
    /// with a mempool, each new block first runs the requests that waited for it, so a request
    /// made in block `n` lands in `n + 1`, as on a real chain.
    pub fn mine(&mut self, blocks: u64) {
        for _ in 0..blocks {
            let waiting = self.mempool.as_mut().map(std::mem::take);
            self.evm.lock().expect("evm lock").mine(1);
            if let Some(waiting) = waiting {
                let mut touched = BTreeSet::new();
                for (i, id, request) in waiting {
                    let conflict = request.channel().is_some_and(|c| !touched.insert(c));
                    let result = if conflict {
                        Err(ChainFailure::StaleState)
                    } else {
                        self.execute(i, &request)
                    };
                    self.report(i, id, request, result);
                }
            }
            self.feed_chain_events();
            self.settle();
        }
    }

    /// Moves time on by `by` and fires every timer that is due.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        for node in &mut self.nodes {
            if node.poll_timeout().is_some_and(|at| at <= self.now) {
                node.handle_timeout(self.now);
            }
        }
        self.settle();
    }

    /// Acts on every node's outputs until none has any (messages between peers go in flight).
    pub fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(output) = self.nodes[i].poll_output() {
                    progressed = true;
                    self.act(i, output);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn act(&mut self, i: usize, output: Output) {
        match output {
            Output::Send { to, envelope } => {
                let to = self
                    .nodes
                    .iter()
                    .position(|node| node.address() == to)
                    .expect("nodes only message nodes of the network");
                self.in_flight.push_back(InFlight {
                    from: i,
                    to,
                    bytes: envelope.encode(),
                });
            }
            Output::Publish(message) => {
                let bytes = message.encode();
                let from = self.address(i);
                for j in 0..self.nodes.len() {
                    if j != i {
                        self.next_gossip_id += 1;
                        let input = Input::Gossip {
                            from,
                            id: self.next_gossip_id,
                            bytes: bytes.clone(),
                        };
                        self.nodes[j].handle_input(self.now, input);
                    }
                }
            }
            Output::GossipVerdict { .. } => {}
            Output::Chain { id, request } => {
                if let Some(waiting) = &mut self.mempool {
                    waiting.push((i, id, request));
                    return;
                }
                let result = self.execute(i, &request);
                self.report(i, id, request, result);
                self.feed_chain_events();
            }
            Output::Persist { id, records } => match self.stalled.get_mut(&i) {
                Some(waiting) => waiting.push((id, records)),
                None => self.persist(i, id, records),
            },
            Output::Event(event) => self.events[i].push(event),
        }
    }

    /// Makes a batch durable (all its records at once, as one transaction would).
    fn persist(&mut self, i: usize, id: PersistId, records: Vec<Record>) {
        self.last_batch[i] = records.clone();
        if let Some(recorded) = self.recorded.get_mut(&i) {
            recorded.push((id, records.clone()));
        }
        self.stores[i].write(records);
        self.nodes[i].handle_input(self.now, Input::Persisted(id));
    }

    /// Stalls node `i`'s storage: its records stay pending (and what waits for them, held)
    /// until [`Self::resume_storage`], or are lost if it crashes first.
    pub fn stall_storage(&mut self, i: usize) {
        self.stalled.entry(i).or_default();
    }

    /// Makes node `i`'s pending records durable, in order.
    pub fn resume_storage(&mut self, i: usize) {
        for (id, records) in self.stalled.remove(&i).unwrap_or_default() {
            self.persist(i, id, records);
        }
        self.settle();
    }

    /// Crashes node `i` and starts it again from what it persisted (pending records are lost),
    /// replays the chain to it and reconnects it to its peers.
    pub fn restart(&mut self, i: usize) {
        self.stalled.remove(&i);
        let node = Node::restore(
            self.configs[i].clone(),
            self.keys[i].clone(),
            self.stores[i].records(),
            self.now,
            self.block(),
        )
        .expect("the records restore");
        self.nodes[i] = node;
        let shown = Some(self.shown);
        let events = complete(self.chains[0].events(self.contracts.block, shown)).expect("events");
        for event in events {
            self.nodes[i].handle_input(self.now, Input::Chain(event));
        }
        self.settle();
        self.reconnect(i);
    }

    /// Tells node `i` of its request's failure, if it failed.
    fn report(
        &mut self,
        i: usize,
        id: ChainRequestId,
        request: ChainRequest,
        result: Result<(), ChainFailure>,
    ) {
        if let Err(failure) = result {
            let input = Input::ChainRequestFailed {
                id,
                request,
                failure,
            };
            self.nodes[i].handle_input(self.now, input);
        }
    }

    fn execute(&mut self, i: usize, request: &ChainRequest) -> Result<(), ChainFailure> {
        if let Some((times, rule)) = self.failing.get_mut(&i)
            && *times > 0
            && rule(request)
        {
            *times -= 1;
            return Err(ChainFailure::NotSent("failed by the test".into()));
        }
        if let Some((per_mille, state)) = &mut self.flaky {
            // splitmix64: seeded, so a failing run replays.
            *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            if (z ^ (z >> 31)) % 1000 < *per_mille {
                return Err(ChainFailure::NotSent("failed at random".into()));
            }
        }
        complete(request.submit(&mut self.chains[i]))
            .map(drop)
            .map_err(|e| ChainFailure::from(&e))
    }

    /// The chain's events after `cursor` (the block of the last one taken, and how many of
    /// that block's were taken) up to block `to`, and the cursor after them.
    fn events_after(
        &mut self,
        cursor: (u64, usize),
        to: Option<u64>,
    ) -> (Vec<ChainEvent>, (u64, usize)) {
        let (block, count) = cursor;
        let from = block.max(self.contracts.block);
        let events = complete(self.chains[0].events(from, to)).expect("events");
        let mut skip = if block >= self.contracts.block {
            count
        } else {
            0
        };
        let mut cursor = cursor;
        let mut new = Vec::new();
        for event in events {
            if event.block == block && skip > 0 {
                skip -= 1;
                continue;
            }
            cursor = if event.block == cursor.0 {
                (event.block, cursor.1 + 1)
            } else {
                (event.block, 1)
            };
            new.push(event);
        }
        (new, cursor)
    }

    /// Feeds every node the chain's events it has not seen, in order, up to the block it may
    /// see (`lag_chain`), then that block (a block's events come before the block: the duties
    /// are derived after them). The testkit's own view of the chain is never late.
    fn feed_chain_events(&mut self) {
        let (events, cursor) = self.events_after(self.mirrored, None);
        self.mirrored = cursor;
        for event in &events {
            OnChainChannel::track(&mut self.mirror, event);
        }
        self.shown = self.shown.max(self.block().0.saturating_sub(self.lag));
        let visible = self.shown;
        let (events, cursor) = self.events_after(self.fed, Some(visible));
        self.fed = cursor;
        for event in events {
            for node in &mut self.nodes {
                node.handle_input(self.now, Input::Chain(event.clone()));
            }
        }
        for node in &mut self.nodes {
            node.handle_input(self.now, Input::Block(BlockNumber(visible)));
        }
    }

    /// Checks what no delivery may break: the contract holds every open channel's deposits,
    /// and in every node's view of every channel the deposits equal both balances plus both
    /// sides' pending locks, with no balance negative.
    pub fn check_conservation(&mut self) {
        let network = self.contracts.token_network;
        let held = complete(self.chains[0].token_balance(network))
            .expect("balanceOf")
            .to_u256();
        let owed = audit::contract_owes(self.mirror.values());
        assert_eq!(
            held, owed,
            "the contract holds exactly the open channels' deposits and the settled ones' locks"
        );
        for (i, node) in self.nodes.iter().enumerate() {
            for channel in node.channels() {
                if let Err(imbalance) = audit::check_channel(channel) {
                    panic!("node {i}: {imbalance}");
                }
            }
        }
    }

    /// Both ends of every open channel hold the same state of each direction whose sender has
    /// no unacknowledged message to the other (with nothing in flight, only lost messages can
    /// leave them apart, until resent; a closed channel's states are frozen where they were).
    pub fn check_agreement(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            for channel in node.channels() {
                let partner = channel.participant(Side::Partner).address();
                let j = self
                    .nodes
                    .iter()
                    .position(|n| n.address() == partner)
                    .expect("partners are nodes");
                let open = node
                    .onchain_channel(channel.id())
                    .is_some_and(|c| c.phase == Phase::Opened);
                if !open
                    || self.offline.contains(&i)
                    || self.offline.contains(&j)
                    || node.unacknowledged(partner) > 0
                {
                    continue;
                }
                let theirs = self.nodes[j]
                    .channel(channel.id())
                    .expect("both ends know the channel");
                let (mine, seen) = (
                    channel.participant(Side::Ours),
                    theirs.participant(Side::Partner),
                );
                assert_eq!(
                    (mine.nonce(), mine.transferred_amount(), mine.locks().root()),
                    (seen.nonce(), seen.transferred_amount(), seen.locks().root()),
                    "node {i}'s direction of {} as node {j} holds it",
                    channel.id()
                );
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.in_flight.is_empty() {
            panic!(
                "the test left {} messages undelivered (deliver, drop or clear them)",
                self.in_flight.len()
            );
        }
    }
}

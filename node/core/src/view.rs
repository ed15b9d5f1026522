//! [`NetworkView`]: what every node following one token network knows alike, from the chain's
//! events and accepted gossip: every channel as its events build it, who has channels open,
//! the routing graph, the gossip store and the secrets revealed on-chain.
//!
//! A node owns its view ([`crate::Node::new`]) and applies every chain event and gossip
//! message to it itself. Nodes in one process may instead share one ([`SharedView`],
//! [`crate::Node::following`]): the driver applies each chain event to it once
//! ([`SharedView::apply_chain_event`]) and then feeds the event only to the nodes it concerns;
//! a node still writes its own announcements into it, so the others route with them at once.
//! A follower restored from its records ([`crate::Node::restore_following`]) replays its
//! history into a view of its own, and follows the shared one from the next block. The same
//! node code decides in both cases; only who applies chain events differs.

use alloy_primitives::Address;
use foldhash::fast::FixedState;
use hoplite_chain::contracts::SecretRegistry::SecretRegistryEvents;
use hoplite_chain::contracts::TokenNetwork::TokenNetworkEvents as Tn;
use hoplite_chain::events::{ChainEvent, Event as ContractEvent, OnChainChannel, Phase};
use hoplite_gossip::{GossipParams, GossipStore};
use hoplite_htlc::{BlockNumber, ChannelId, Secret, SecretHash, TokenNetwork};
use hoplite_routing::{NetworkGraph, NodeId, Route, RouteError, RouteParams, Router, Scorer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The network as the chain's events and accepted gossip build it.
#[derive(Debug)]
pub struct NetworkView {
    /// Every channel of the token network, as its events build it (until settled and empty).
    /// Hashed: a node looks its channels up here on every call, in a map as large as the
    /// network, and nothing depends on its order (see [`Self::channels`]). The seed is the
    /// owner's secret: channel ids can be ground (by picking partner addresses) to collide
    /// under a seed everyone knows (under every seed: about 2^64 hashes for two, see
    /// `ChannelId`'s `Hash`).
    pub(crate) onchain: HashMap<ChannelId, OnChainChannel, FixedState>,
    /// The channels `onchain` shows open, apart: `onchain`'s entries are large (about 740
    /// bytes each, so a probe misses the cache on each), this set's are 32. A payer asks it of
    /// each of its channels (a hub has thousands) only when it changed ([`OwnOpenChannels`]).
    open: HashSet<ChannelId, FixedState>,
    /// This view's number in the process, and how many times `open` changed: an answer of
    /// [`Self::is_open`] holds while both do (see [`OwnOpenChannels`]). Not `Clone` for
    /// that: two views must never share a number.
    open_version: (u64, u64),
    /// How many channels each participant has open on-chain (only those with one).
    pub(crate) open_channels_of: BTreeMap<Address, u32>,
    pub(crate) graph: NetworkGraph,
    pub(crate) gossip: GossipStore,
    /// Every secret the registry revealed, with the block.
    pub(crate) revealed: BTreeMap<SecretHash, (BlockNumber, Secret)>,
}

impl NetworkView {
    /// An empty view of `token_network`; `hash_seed` seeds its channel map's hasher (see
    /// `onchain`).
    pub fn new(token_network: TokenNetwork, gossip: GossipParams, hash_seed: u64) -> Self {
        Self {
            onchain: HashMap::with_hasher(FixedState::with_seed(hash_seed)),
            open: HashSet::with_hasher(FixedState::with_seed(hash_seed)),
            open_version: (VIEWS_MADE.fetch_add(1, Ordering::Relaxed), 0),
            open_channels_of: BTreeMap::new(),
            graph: NetworkGraph::new(),
            gossip: GossipStore::new(token_network, gossip),
            revealed: BTreeMap::new(),
        }
    }

    /// A channel as the chain's events built it.
    pub fn channel(&self, id: ChannelId) -> Option<&OnChainChannel> {
        self.onchain.get(&id)
    }

    /// Every channel as the chain's events built them, in no particular order (it depends on
    /// the view's hash seed): sort what is shown.
    pub fn channels(&self) -> impl Iterator<Item = &OnChainChannel> {
        self.onchain.values()
    }

    /// What gossip told: announcements and policies.
    pub fn gossip(&self) -> &GossipStore {
        &self.gossip
    }

    /// The routing graph.
    pub fn graph(&self) -> &NetworkGraph {
        &self.graph
    }

    /// Whether the chain shows `channel` open.
    pub fn is_open(&self, channel: ChannelId) -> bool {
        let open = self.open.contains(&channel);
        debug_assert_eq!(
            open,
            self.onchain
                .get(&channel)
                .is_some_and(|c| c.phase == Phase::Opened),
            "the open set follows the channels"
        );
        open
    }

    /// Whether `node` has a channel open on-chain.
    pub fn has_open_channel(&self, node: Address) -> bool {
        self.open_channels_of.contains_key(&node)
    }

    /// Applies one chain event: channels, open counts, the graph's capacities, what gossip
    /// said of closed channels (and of nodes they leave without one), revealed secrets; a
    /// channel settled with both pots empty is dropped.
    pub fn apply_chain_event(&mut self, event: &ChainEvent) {
        if let ContractEvent::SecretRegistry(SecretRegistryEvents::SecretRevealed(e)) = &event.event
        {
            let secret = Secret(e.secret);
            self.revealed
                .entry(secret.hash())
                .or_insert((BlockNumber(event.block), secret));
            return;
        }
        if let Some(opened) = OnChainChannel::opened(event) {
            let (id, [one, two]) = (
                opened.id,
                [opened.state.participant1, opened.state.participant2],
            );
            self.open_version.1 += u64::from(self.open.insert(id));
            if self.onchain.insert(id, opened).is_none() {
                for node in [one, two] {
                    *self.open_channels_of.entry(node).or_default() += 1;
                }
            }
            let _ = self.graph.add_channel(id, NodeId(one), NodeId(two), 0);
            return;
        }
        let Some(id) = event.channel_id() else {
            return;
        };
        let Some(onchain) = self.onchain.get_mut(&id) else {
            return;
        };
        let was_open = onchain.phase == Phase::Opened;
        onchain.apply(event);
        let participants = [onchain.state.participant1, onchain.state.participant2];
        let available = onchain.available();
        if was_open && onchain.phase != Phase::Opened {
            self.open_version.1 += u64::from(self.open.remove(&id));
            for node in participants {
                if let Some(count) = self.open_channels_of.get_mut(&node) {
                    *count -= 1;
                    if *count == 0 {
                        self.open_channels_of.remove(&node);
                    }
                }
            }
        }
        match &event.event {
            ContractEvent::TokenNetwork(Tn::ChannelNewDeposit(_)) => {
                let capacity = u128::try_from(available).unwrap_or(u128::MAX);
                let _ = self.graph.set_capacity(id, capacity);
            }
            ContractEvent::TokenNetwork(Tn::ChannelClosed(_) | Tn::ChannelSettled(_)) => {
                let _ = self.graph.remove_channel(id);
                self.gossip.forget_channel(id);
                for node in participants {
                    if !self.has_open_channel(node) {
                        self.gossip.forget_node(node);
                    }
                }
            }
            _ => {}
        }
        let done = self
            .onchain
            .get(&id)
            .is_some_and(|c| matches!(c.phase, Phase::Settled { .. }) && c.pots == [None, None]);
        if done {
            self.onchain.remove(&id);
        }
    }
}

/// How many views this process has made: each is numbered, so that what a node keeps of one
/// is never taken for another's (see [`OwnOpenChannels`]).
static VIEWS_MADE: AtomicU64 = AtomicU64::new(0);

/// Which of a node's channels its view showed open when last asked, kept while the view's
/// open set stays as it was: a payer asks whether each of its channels is open at every
/// attempt, a hub has hundreds, and each probe of the view's set (as large as the network)
/// misses the cache, while the set changes only when a channel opens or closes anywhere.
#[derive(Debug, Default)]
pub(crate) struct OwnOpenChannels {
    /// The view's `open_version` and how many channels the node had when `open` was listed
    /// (`None`: never).
    listed_at: Option<((u64, u64), usize)>,
    /// The node's channels the view showed open then, in order.
    open: Vec<ChannelId>,
}

impl OwnOpenChannels {
    /// Lists which of `ours` (a node's channels, in order) `view` shows open, unless that is
    /// what is listed already. Then [`Self::is_open`] answers from the list.
    pub(crate) fn refresh<'a>(
        &mut self,
        view: &NetworkView,
        ours: impl ExactSizeIterator<Item = &'a ChannelId>,
    ) {
        let now = (view.open_version, ours.len());
        if self.listed_at != Some(now) {
            self.open = ours.filter(|c| view.is_open(**c)).copied().collect();
            self.listed_at = Some(now);
        }
    }

    /// Whether `view` shows `channel` open: from the list if it was made from this view with
    /// its open set as it is now, else (and for a channel not listed: one added since, or one
    /// not open, which is rare) from `view`.
    pub(crate) fn is_open(&self, view: &NetworkView, channel: ChannelId) -> bool {
        let listed = self
            .listed_at
            .is_some_and(|(version, _)| version == view.open_version);
        let open = (listed && self.open.binary_search(&channel).is_ok()) || view.is_open(channel);
        debug_assert_eq!(open, view.is_open(channel), "the list follows the view");
        open
    }
}

/// A [`NetworkView`] nodes share (or one node owns): cheap to clone, every clone the same view.
///
/// It also holds the router's working memory (about as large as the graph, and the labels
/// of the largest search so far): nodes sharing a view search it one at a time, so thousands
/// of them don't each keep a copy.
#[derive(Clone, Debug)]
pub struct SharedView {
    view: Arc<RwLock<NetworkView>>,
    router: Arc<Mutex<Router>>,
}

impl SharedView {
    /// A new, empty view of `token_network` (see [`NetworkView::new`] for `hash_seed`).
    pub fn new(token_network: TokenNetwork, gossip: GossipParams, hash_seed: u64) -> Self {
        Self {
            view: Arc::new(RwLock::new(NetworkView::new(
                token_network,
                gossip,
                hash_seed,
            ))),
            router: Arc::new(Mutex::new(Router::default())),
        }
    }

    /// Reads the view. (A node never panics holding it, so a poisoned lock still holds a
    /// whole view.)
    pub fn read(&self) -> RwLockReadGuard<'_, NetworkView> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the view.
    pub fn write(&self) -> RwLockWriteGuard<'_, NetworkView> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `other` is this same view (a clone of one handle), not merely an equal one.
    pub fn is(&self, other: &SharedView) -> bool {
        Arc::ptr_eq(&self.view, &other.view)
    }

    /// The best route in the view's graph (see [`Router::find_route`]).
    pub(crate) fn find_route<S: Scorer + ?Sized>(
        &self,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
    ) -> Result<Route, RouteError> {
        let mut router = self.router.lock().unwrap_or_else(|poisoned| {
            // A search panicked midway: its working memory is not clean; start afresh.
            let mut router = poisoned.into_inner();
            *router = Router::default();
            router
        });
        self.router.clear_poison();
        self.search_in(&mut router, scorer, payer, payee, amount, params)
            .0
    }

    /// The best route in the view's graph, searched in `router`'s working memory, and the
    /// generation of the graph it was searched in.
    pub(crate) fn search_in<S: Scorer + ?Sized>(
        &self,
        router: &mut Router,
        scorer: &S,
        payer: NodeId,
        payee: NodeId,
        amount: u128,
        params: &RouteParams,
    ) -> (Result<Route, RouteError>, u64) {
        let view = self.read();
        let route = router.find_route(&view.graph, scorer, payer, payee, amount, params);
        (route, view.graph.generation())
    }

    /// Applies one chain event (the driver of nodes that follow this view does, once per
    /// event, before feeding it to them).
    pub fn apply_chain_event(&self, event: &ChainEvent) {
        self.write().apply_chain_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoplite_routing::{DirectedChannel, Policy, ZeroPenalty};
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// Panics on its `n`th penalty: a search that dies midway.
    struct PanicsAt(Cell<u32>);

    impl Scorer for PanicsAt {
        fn penalty(&self, _hop: &DirectedChannel, _amount: u128) -> Option<u64> {
            let left = self.0.get() - 1;
            self.0.set(left);
            assert!(left > 0, "the scorer gives up");
            Some(0)
        }

        fn success_probability(&self, _hop: &DirectedChannel, _amount: u128) -> f64 {
            1.0
        }
    }

    #[test]
    fn the_list_of_a_node_s_open_channels_answers_as_the_view_does() {
        use hoplite_chain::contracts::TokenNetwork as Contract;
        let token_network = TokenNetwork {
            chain_id: 1,
            address: Address::repeat_byte(0xee),
        };
        let mut view = NetworkView::new(token_network, GossipParams::default(), 0);
        let (us, partner) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let event = |block, event| ChainEvent {
            block,
            event: ContractEvent::TokenNetwork(event),
        };
        let open = |n: u64| {
            event(
                1,
                Tn::ChannelOpened(Contract::ChannelOpened {
                    channelId: ChannelId::from(n).0,
                    participant1: us,
                    participant2: partner,
                    settleTimeout: 100,
                }),
            )
        };
        for n in 1..=3 {
            view.apply_chain_event(&open(n));
        }
        // Channel 4 is ours but not open (yet).
        let ours: Vec<ChannelId> = (1..=4).map(ChannelId::from).collect();
        let answers = |list: &OwnOpenChannels, view: &NetworkView| -> Vec<bool> {
            ours.iter().map(|c| list.is_open(view, *c)).collect()
        };
        let mut list = OwnOpenChannels::default();
        list.refresh(&view, ours.iter());
        assert_eq!(list.open, ours[..3]);
        assert_eq!(answers(&list, &view), [true, true, true, false]);

        // Channel 2 closes: the list is stale, and no answer comes from it.
        view.apply_chain_event(&event(
            2,
            Tn::ChannelClosed(Contract::ChannelClosed {
                channelId: ChannelId::from(2).0,
                closer: partner,
                nonce: 1,
                balance: Contract::BalanceData::default(),
            }),
        ));
        assert!(!view.is_open(ChannelId::from(2)));
        assert_eq!(answers(&list, &view), [true, false, true, false]);
        list.refresh(&view, ours.iter());
        assert_eq!(list.open, [ours[0], ours[2]]);

        // Channel 4 opens: found in the view though not listed.
        view.apply_chain_event(&open(4));
        assert_eq!(answers(&list, &view), [true, false, true, true]);
        // Another view (a node that follows another one now) that has seen as many changes,
        // none of them to our channels, is not answered from the list.
        list.refresh(&view, ours.iter());
        let mut other = NetworkView::new(token_network, GossipParams::default(), 0);
        for n in 5..10 {
            other.apply_chain_event(&open(n));
        }
        assert_eq!(other.open_version.1, view.open_version.1);
        assert_eq!(answers(&list, &other), [false; 4]);
    }

    #[test]
    fn a_search_that_panicked_leaves_the_shared_router_clean() {
        let token_network = TokenNetwork {
            chain_id: 1,
            address: Address::repeat_byte(0xee),
        };
        let view = SharedView::new(token_network, GossipParams::default(), 0);
        let node = |n: u8| NodeId(Address::repeat_byte(n));
        let policy = Policy {
            base_fee: 1,
            fee_millionths: 0,
            expiry_delta: 10,
            min_lock: 1,
            max_lock: 1_000,
            enabled: true,
        };
        {
            let graph = &mut view.write().graph;
            for n in 1..5u8 {
                let id = ChannelId(alloy_primitives::U256::from(n));
                graph.add_channel(id, node(n), node(n + 1), 1_000).unwrap();
                graph.update_policy(id, node(n), policy).unwrap();
                graph.update_policy(id, node(n + 1), policy).unwrap();
            }
        }
        let params = RouteParams::default();
        let route = |scorer: &dyn Scorer| view.find_route(scorer, node(1), node(5), 10, &params);
        let expected = route(&ZeroPenalty).expect("a line has a route");
        for n in 1..6 {
            let died = catch_unwind(AssertUnwindSafe(|| route(&PanicsAt(Cell::new(n)))));
            assert!(died.is_err(), "the scorer panics on its call {n}");
            assert_eq!(
                route(&ZeroPenalty),
                Ok(expected.clone()),
                "after a panic at {n}"
            );
        }
    }
}

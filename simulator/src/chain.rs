//! The simulated chain: one in-process EVM running the real contracts, blocks mined on virtual
//! time, and a mempool. A request made during block `n` lands in block `n + 1`, in the order
//! sent; a second transaction on one channel in a block loses the conflict (it was made against
//! the state the first one changed, so the contract would revert it `StaleChannelState`). Gas
//! is accounted per node and per kind of request.

use alloy_primitives::{Address, U256};
use hoplite_chain::Chain;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::events::{ChainEvent, OnChainChannel};
use hoplite_chain::evm::{EvmBackend, InProcessEvm, SharedEvm, complete};
use hoplite_htlc::{ChannelId, TokenNetwork};
use hoplite_node::audit;
use hoplite_node::{ChainFailure, ChainRequest, ChainRequestId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// The chain id of the simulated chain.
pub const CHAIN_ID: u64 = 31_337;
/// The account that deploys the contracts.
const DEPLOYER: Address = Address::repeat_byte(0xde);

/// A transaction waiting for the next block.
struct Pending {
    node: usize,
    /// The node's handle on it; `None` for an attacker's own transaction.
    id: Option<ChainRequestId>,
    request: ChainRequest,
}

/// A request that failed in a mined block, to report to its node.
pub struct Failed {
    /// Whose.
    pub node: usize,
    /// Its handle.
    pub id: ChainRequestId,
    /// What it asked.
    pub request: ChainRequest,
    /// Why it failed.
    pub failure: ChainFailure,
}

/// Transactions of one kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct KindStats {
    /// Mined (succeeded).
    pub mined: u64,
    /// Reverted or lost a conflict.
    pub failed: u64,
    /// Gas of the mined ones.
    pub gas: u64,
}

/// The EVM, every node's account on it, the mempool and the events so far.
pub struct SimChain {
    evm: SharedEvm,
    contracts: Deployment,
    accounts: Vec<Chain<EvmBackend>>,
    mempool: Vec<Pending>,
    /// Every event since deployment, in order.
    events: Vec<ChainEvent>,
    /// The chain's channels as its events build them.
    channels: BTreeMap<ChannelId, OnChainChannel>,
    /// By kind of request.
    pub by_kind: BTreeMap<&'static str, KindStats>,
    /// Gas each node's transactions used.
    pub gas_by_node: Vec<u64>,
}

impl SimChain {
    /// Deploys the contracts and gives each account its `funds` in tokens, approved for
    /// deposits.
    pub fn new(accounts: &[Address], funds: &[u64]) -> Self {
        let evm: SharedEvm = Arc::new(Mutex::new(InProcessEvm::new(CHAIN_ID)));
        let mut deployer = EvmBackend::new(evm.clone(), DEPLOYER);
        let contracts = complete(Deployment::with_test_token(&mut deployer))
            .expect("the committed contracts deploy");
        let accounts = accounts
            .iter()
            .zip(funds)
            .map(|(&account, &funds)| {
                let mut chain = Chain::new(EvmBackend::new(evm.clone(), account), contracts);
                complete(chain.mint_test_tokens(account, U256::from(funds)))
                    .expect("the test token mints");
                complete(chain.approve_deposits(U256::MAX)).expect("approve");
                chain
            })
            .collect::<Vec<_>>();
        let n = accounts.len();
        Self {
            evm,
            contracts,
            accounts,
            mempool: Vec::new(),
            events: Vec::new(),
            channels: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            gas_by_node: vec![0; n],
        }
    }

    /// The token network the nodes pay on.
    pub fn token_network(&self) -> TokenNetwork {
        TokenNetwork {
            chain_id: CHAIN_ID,
            address: self.contracts.token_network,
        }
    }

    /// The current block.
    pub fn block(&self) -> u64 {
        self.evm.lock().expect("evm lock").block_number()
    }

    /// Queues node `node`'s request for the next block.
    pub fn submit(&mut self, node: usize, id: Option<ChainRequestId>, request: ChainRequest) {
        self.mempool.push(Pending { node, id, request });
    }

    /// How many transactions wait for the next block.
    pub fn waiting(&self) -> usize {
        self.mempool.len()
    }

    /// Mines the next block with what waits in the mempool, and returns the requests that
    /// failed (to report to their nodes). The block's events are appended to [`Self::events`].
    pub fn mine(&mut self) -> Vec<Failed> {
        self.evm.lock().expect("evm lock").mine(1);
        let block = self.block();
        let mut touched = BTreeSet::new();
        let mut failed = Vec::new();
        for Pending { node, id, request } in std::mem::take(&mut self.mempool) {
            let conflict = request.channel().is_some_and(|c| !touched.insert(c));
            let result = if conflict {
                Err(ChainFailure::StaleState)
            } else {
                complete(request.submit(&mut self.accounts[node]))
                    .map_err(|e| ChainFailure::from(&e))
            };
            let stats = self.by_kind.entry(request.kind()).or_default();
            match result {
                Ok(receipt) => {
                    stats.mined += 1;
                    stats.gas += receipt.gas_used;
                    self.gas_by_node[node] += receipt.gas_used;
                }
                Err(failure) => {
                    stats.failed += 1;
                    if let Some(id) = id {
                        failed.push(Failed {
                            node,
                            id,
                            request,
                            failure,
                        });
                    }
                }
            }
        }
        let new = complete(self.accounts[0].events(block, Some(block))).expect("events");
        for event in &new {
            OnChainChannel::track(&mut self.channels, event);
        }
        self.events.extend(new);
        failed
    }

    /// Every event since deployment, in order.
    pub fn events(&self) -> &[ChainEvent] {
        &self.events
    }

    /// A channel as the chain's events built it.
    pub fn channel(&self, id: ChannelId) -> Option<&OnChainChannel> {
        self.channels.get(&id)
    }

    /// Every channel as the chain's events built them.
    pub fn channels(&self) -> impl Iterator<Item = &OnChainChannel> {
        self.channels.values()
    }

    /// `node`'s tokens outside the channels.
    pub fn tokens(&mut self, node: usize) -> U256 {
        let account = self.accounts[node].account();
        complete(self.accounts[node].token_balance(account))
            .expect("balanceOf")
            .to_u256()
    }

    /// Mints `amount` tokens straight into the contract: a broken transition, for the
    /// invariant checker's own test.
    #[cfg(feature = "test-utils")]
    pub fn mint_into_contract(&mut self, amount: U256) {
        let contract = self.contracts.token_network;
        complete(self.accounts[0].mint_test_tokens(contract, amount))
            .expect("the test token mints");
    }

    /// Moves `amount` of `from`'s tokens to `to` behind every node's back: a broken
    /// transition, for the invariant checker's own test.
    #[cfg(feature = "test-utils")]
    pub fn transfer(&mut self, from: usize, to: usize, amount: U256) {
        use alloy_sol_types::SolCall;
        use hoplite_chain::Backend;
        use hoplite_chain::contracts::TestToken;
        let call = TestToken::transferCall {
            to: self.accounts[to].account(),
            amount,
        };
        complete(
            self.accounts[from]
                .backend_mut()
                .transact(self.contracts.token, call.abi_encode().into()),
        )
        .expect("the test token transfers");
    }

    /// The contract's tokens.
    pub fn contract_tokens(&mut self) -> U256 {
        let network = self.contracts.token_network;
        complete(self.accounts[0].token_balance(network))
            .expect("balanceOf")
            .to_u256()
    }

    /// Checks that the contract holds exactly what its channels owe (open and closed ones'
    /// deposits, settled ones' pots); returns both sides if not.
    pub fn check_contract(&mut self) -> Result<(), (U256, U256)> {
        let held = self.contract_tokens();
        let owed = audit::contract_owes(self.channels.values());
        if held == owed {
            Ok(())
        } else {
            Err((held, owed))
        }
    }
}

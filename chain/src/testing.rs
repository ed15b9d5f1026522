//! A token network with three funded parties on either backend, for tests, examples and
//! benchmarks (feature `test-utils`). Alice (0) and Bob (1) hold channels; Carol (2) is a third
//! party: a watchtower, a settler, or an intruder. [`Anvil`] runs a local anvil node for the
//! JSON-RPC backend.

use crate::backend::Mine;
use crate::client::Chain;
use crate::contracts::TokenNetwork;
use crate::deploy::Deployment;
use crate::events::ChainEvent;
use crate::evm::{EvmBackend, InProcessEvm, SharedEvm};
use alloy_primitives::{Address, B256, U256, address};
use alloy_sol_types::{SolCall, SolStruct};
use hoplite_htlc::eip712::BalanceProofUpdate;
use hoplite_htlc::testing::key;
use hoplite_htlc::{
    Amount, BalanceProof, ChannelId, Nonce, PrivateKey, Signature, SignedBalanceProof,
    TokenNetwork as Domain,
};
use std::sync::{Arc, Mutex};

#[cfg(feature = "rpc")]
mod anvil;
#[cfg(feature = "rpc")]
pub use anvil::{Anvil, DEPLOYER_KEY};

/// The chain id of every test network.
pub const CHAIN_ID: u64 = 1337;
/// Deploys the contracts: anvil's first dev account.
pub const DEPLOYER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// The challenge window of test channels, in blocks.
pub const SETTLE_TIMEOUT: u32 = 40;
/// Party indices.
pub const ALICE: usize = 0;
/// Party indices.
pub const BOB: usize = 1;
/// Party indices.
pub const CAROL: usize = 2;
/// Tokens each party starts with.
pub const START_TOKENS: u64 = 1000;

/// `n` token units.
pub fn tokens(n: u64) -> U256 {
    U256::from(n)
}

/// Balance data as a participant signs it for its own direction.
pub fn balance(transferred: u64, locked: u64, locks_root: B256) -> TokenNetwork::BalanceData {
    TokenNetwork::BalanceData {
        transferredAmount: tokens(transferred),
        lockedAmount: tokens(locked),
        locksRoot: locks_root,
    }
}

/// The state of a direction nobody paid in.
pub fn nothing() -> TokenNetwork::BalanceData {
    TokenNetwork::BalanceData::default()
}

/// The party keys: the same on every backend.
pub(crate) fn party_key(who: usize) -> PrivateKey {
    key(9, who as u8)
}

/// The contracts and three parties with [`START_TOKENS`] each, all approved for deposits.
pub struct TestNet<B> {
    /// Alice's, Bob's and Carol's access to the chain.
    pub parties: [Chain<B>; 3],
    /// Their keys.
    pub keys: [PrivateKey; 3],
}

impl TestNet<EvmBackend> {
    /// A fresh network on the in-process EVM.
    pub async fn in_process() -> Self {
        let evm: SharedEvm = Arc::new(Mutex::new(InProcessEvm::new(CHAIN_ID)));
        let backends =
            [ALICE, BOB, CAROL].map(|who| EvmBackend::new(evm.clone(), party_key(who).address()));
        Self::deploy(EvmBackend::new(evm, DEPLOYER), backends).await
    }

    /// The in-process chain.
    pub fn evm(&self) -> std::sync::MutexGuard<'_, InProcessEvm> {
        self.parties[ALICE].backend().evm()
    }
}

impl<B: Mine> TestNet<B> {
    /// Deploys the contracts from `deployer`, mints and approves for each party.
    async fn deploy(mut deployer: B, backends: [B; 3]) -> Self {
        let contracts = Deployment::with_test_token(&mut deployer)
            .await
            .expect("the committed bytecode deploys");
        let mut parties = backends.map(|backend| Chain::new(backend, contracts));
        for chain in &mut parties {
            let account = chain.account();
            chain
                .mint_test_tokens(account, tokens(START_TOKENS))
                .await
                .expect("mint");
            chain.approve_deposits(U256::MAX).await.expect("approve");
        }
        Self {
            parties,
            keys: [ALICE, BOB, CAROL].map(party_key),
        }
    }

    /// A party's access to the chain.
    pub fn chain(&mut self, who: usize) -> &mut Chain<B> {
        &mut self.parties[who]
    }

    /// A party's address.
    pub fn address(&self, who: usize) -> Address {
        self.keys[who].address()
    }

    /// The EIP-712 domain of the TokenNetwork.
    pub fn domain(&self) -> Domain {
        self.parties[ALICE].domain()
    }

    /// Token balance of a party.
    pub async fn tokens_of(&mut self, who: usize) -> U256 {
        let account = self.address(who);
        self.parties[CAROL]
            .token_balance(account)
            .await
            .expect("balanceOf")
            .to_u256()
    }

    /// Tokens the TokenNetwork holds.
    pub async fn held_by_contract(&mut self) -> U256 {
        let network = self.parties[CAROL].contracts().token_network;
        self.parties[CAROL]
            .token_balance(network)
            .await
            .expect("balanceOf")
            .to_u256()
    }

    /// Alice opens a channel with Bob, and each deposits its part of `deposits` (if not 0).
    pub async fn open(&mut self, deposits: [u64; 2]) -> ChannelId {
        let bob = self.address(BOB);
        let (id, _) = self.parties[ALICE]
            .open_channel(bob, SETTLE_TIMEOUT)
            .await
            .expect("open");
        for who in [ALICE, BOB] {
            if deposits[who] > 0 {
                let me = self.address(who);
                self.parties[who]
                    .set_total_deposit(id, me, Amount::from(deposits[who]))
                    .await
                    .expect("deposit");
            }
        }
        self.assert_state_rebuilt(id).await;
        id
    }

    /// Checks that the state rebuilt from events hashes to what the contract stores.
    pub async fn assert_state_rebuilt(&mut self, id: ChannelId) {
        let chain = &mut self.parties[CAROL];
        let channel = chain.channel(id).await.expect("events").expect("opened");
        let network = chain.contracts().token_network;
        let stored = chain
            .view(network, &TokenNetwork::channelHashCall::new((id.0,)))
            .await
            .expect("channelHash");
        assert_eq!(
            stored,
            channel.stored_word(),
            "state rebuilt from events of {id:?}"
        );
        // Every event so far comes back from the log it gives (what a follower keeps).
        let contracts = *chain.contracts();
        for event in chain.events(contracts.block, None).await.expect("events") {
            let log = event.to_log(&contracts);
            assert_eq!(ChainEvent::decode(&contracts, &log), Ok(Some(event)));
        }
    }

    /// `signer`'s balance proof `nonce` over `balance`.
    pub fn proof(
        &self,
        signer: usize,
        id: ChannelId,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> SignedBalanceProof {
        self.proof_on(self.domain(), signer, id, nonce, balance)
    }

    /// The same, under another domain (another chain or contract).
    pub fn proof_on(
        &self,
        domain: Domain,
        signer: usize,
        id: ChannelId,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> SignedBalanceProof {
        let proof = BalanceProof {
            token_network: domain,
            channel_id: id,
            nonce: Nonce(nonce),
            transferred_amount: Amount::from(balance.transferredAmount),
            locked_amount: Amount::from(balance.lockedAmount),
            locks_root: balance.locksRoot,
        };
        proof.sign(&self.keys[signer], &domain.domain_separator())
    }

    /// `signer`'s signature of any EIP-712 message under the TokenNetwork's domain.
    pub fn sign_typed<T: SolStruct>(&self, signer: usize, value: &T) -> Signature {
        self.keys[signer].sign_digest(&self.domain().typed_digest(value))
    }

    /// `signer`'s consent that anyone may submit `proof` for it (what a watchtower holds).
    pub fn consent(&self, signer: usize, proof: &SignedBalanceProof) -> Signature {
        let update = BalanceProofUpdate {
            channelId: proof.proof.channel_id.0,
            balanceProof: proof.proof.signing_hash(),
        };
        self.sign_typed(signer, &update)
    }

    /// Mines `blocks` blocks.
    pub async fn mine(&mut self, blocks: u64) {
        self.parties[CAROL]
            .backend_mut()
            .mine(blocks)
            .await
            .expect("mine");
    }

    /// Mines until the challenge window of a channel closed now is over.
    pub async fn mine_past_window(&mut self) {
        self.mine(u64::from(SETTLE_TIMEOUT) + 1).await;
    }
}

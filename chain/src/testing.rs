//! A token network on the in-process EVM with three funded parties, for tests, examples and
//! benchmarks (feature `test-utils`). Alice (0) and Bob (1) hold channels; Carol (2) is a third
//! party: a watchtower, a settler, or an intruder.

use crate::contracts::{TestToken, TokenNetwork};
use crate::deploy::Deployment;
use crate::evm::{EvmError, InProcessEvm, Receipt};
use alloy_primitives::{Address, B256, Bytes, U256, address};
use alloy_sol_types::{SolCall, SolStruct};
use hoplite_htlc::eip712::{BalanceProofUpdate, CooperativeSettle, Withdraw};
use hoplite_htlc::locks::PendingLocks;
use hoplite_htlc::testing::key;
use hoplite_htlc::{
    Amount, BalanceProof, ChannelId, Lock, Nonce, PrivateKey, TokenNetwork as Domain,
};

/// The chain id of every test network.
pub const CHAIN_ID: u64 = 1337;
/// Deploys the contracts (anvil's first account).
pub const DEPLOYER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// The challenge window of test channels, in blocks.
pub const SETTLE_TIMEOUT: u32 = 40;
/// Party indices.
pub const ALICE: usize = 0;
/// Party indices.
pub const BOB: usize = 1;
/// Party indices.
pub const CAROL: usize = 2;

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
    balance(0, 0, B256::ZERO)
}

/// The contracts on an in-process chain, and three parties with 1000 tokens each, all approved.
pub struct TestNet {
    /// The chain.
    pub evm: InProcessEvm,
    /// Where the contracts are.
    pub contracts: Deployment,
    /// Alice, Bob, Carol.
    pub keys: [PrivateKey; 3],
}

impl TestNet {
    /// A fresh network.
    pub fn new() -> Self {
        let mut evm = InProcessEvm::new(CHAIN_ID);
        let contracts = Deployment::with_test_token(&mut evm, DEPLOYER)
            .expect("the committed bytecode deploys");
        let keys = [key(9, 0), key(9, 1), key(9, 2)];
        let mut net = Self {
            evm,
            contracts,
            keys,
        };
        for who in [ALICE, BOB, CAROL] {
            let me = net.address(who);
            let (token, spender) = (contracts.token, contracts.token_network);
            net.evm
                .transact_sol(
                    me,
                    token,
                    &TestToken::mintCall {
                        to: me,
                        amount: tokens(1000),
                    },
                )
                .expect("mint");
            net.evm
                .transact_sol(
                    me,
                    token,
                    &TestToken::approveCall {
                        spender,
                        amount: U256::MAX,
                    },
                )
                .expect("approve");
        }
        net
    }

    /// A party's address.
    pub fn address(&self, who: usize) -> Address {
        self.keys[who].address()
    }

    /// The EIP-712 domain of the TokenNetwork.
    pub fn domain(&self) -> Domain {
        Domain {
            chain_id: CHAIN_ID,
            address: self.contracts.token_network,
        }
    }

    /// Token balance of `account`.
    pub fn tokens_of(&mut self, account: Address) -> U256 {
        self.evm
            .call_sol(
                self.contracts.token,
                &TestToken::balanceOfCall::new((account,)),
            )
            .expect("balanceOf")
    }

    /// Tokens the TokenNetwork holds.
    pub fn held_by_contract(&mut self) -> U256 {
        let network = self.contracts.token_network;
        self.tokens_of(network)
    }

    /// `who` sends `call` to the TokenNetwork.
    pub fn send<C: SolCall>(
        &mut self,
        who: usize,
        call: &C,
    ) -> Result<(C::Return, Receipt), EvmError> {
        let from = self.address(who);
        self.evm
            .transact_sol(from, self.contracts.token_network, call)
    }

    /// Reads from the TokenNetwork.
    pub fn view<C: SolCall>(&mut self, call: &C) -> C::Return {
        self.evm
            .call_sol(self.contracts.token_network, call)
            .expect("view call")
    }

    /// `signer`'s signature of its balance proof.
    pub fn sign_proof(
        &self,
        signer: usize,
        id: U256,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> Bytes {
        self.sign_proof_on(self.domain(), signer, id, nonce, balance)
    }

    /// The same, under another domain (another chain or contract).
    pub fn sign_proof_on(
        &self,
        domain: Domain,
        signer: usize,
        id: U256,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> Bytes {
        let proof = BalanceProof {
            token_network: domain,
            channel_id: ChannelId(id),
            nonce: Nonce(nonce),
            transferred_amount: Amount::from(balance.transferredAmount),
            locked_amount: Amount::from(balance.lockedAmount),
            locks_root: balance.locksRoot,
        };
        proof
            .sign(&self.keys[signer], &domain.domain_separator())
            .signature
            .0
            .to_vec()
            .into()
    }

    /// `signer`'s signature of any EIP-712 message under the TokenNetwork's domain.
    pub fn sign_typed<T: SolStruct>(&self, signer: usize, value: &T) -> Bytes {
        self.keys[signer]
            .sign_digest(&self.domain().typed_digest(value))
            .0
            .to_vec()
            .into()
    }

    /// Alice opens a channel with Bob; returns its id.
    pub fn open(&mut self) -> Result<(U256, Receipt), EvmError> {
        let partner = self.address(BOB);
        self.send(
            ALICE,
            &TokenNetwork::openChannelCall {
                partner,
                settleTimeout: SETTLE_TIMEOUT,
            },
        )
    }

    /// `who` raises its own deposit to `total`.
    pub fn deposit(&mut self, who: usize, id: U256, total: u64) -> Result<Receipt, EvmError> {
        let participant = self.address(who);
        let call = TokenNetwork::setTotalDepositCall {
            channelId: id,
            participant,
            totalDeposit: tokens(total),
        };
        self.send(who, &call).map(|(_, receipt)| receipt)
    }

    /// `closer` closes with its partner's proof `nonce` (0: none).
    pub fn close(
        &mut self,
        closer: usize,
        id: U256,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> Result<Receipt, EvmError> {
        let partner = 1 - closer;
        let partner_signature = if nonce == 0 {
            Bytes::new()
        } else {
            self.sign_proof(partner, id, nonce, balance)
        };
        let call = TokenNetwork::closeChannelCall {
            channelId: id,
            partner: self.address(partner),
            nonce,
            balance: balance.clone(),
            partnerSignature: partner_signature,
        };
        self.send(closer, &call).map(|(_, receipt)| receipt)
    }

    /// `caller` submits the closer's proof `nonce` with the non-closer's consent.
    pub fn update(
        &mut self,
        caller: usize,
        closer: usize,
        id: U256,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> Result<Receipt, EvmError> {
        let closer_signature = self.sign_proof(closer, id, nonce, balance);
        let digest = self.view(&TokenNetwork::balanceProofDigestCall {
            channelId: id,
            nonce,
            transferredAmount: balance.transferredAmount,
            lockedAmount: balance.lockedAmount,
            locksRoot: balance.locksRoot,
        });
        let consent = self.sign_typed(
            1 - closer,
            &BalanceProofUpdate {
                channelId: id,
                balanceProof: digest,
            },
        );
        let call = TokenNetwork::updateNonClosingBalanceProofCall {
            channelId: id,
            closer: self.address(closer),
            nonce,
            balance: balance.clone(),
            closerSignature: closer_signature,
            nonClosingSignature: consent,
        };
        self.send(caller, &call).map(|(_, receipt)| receipt)
    }

    /// Carol settles Alice and Bob's channel with the balance data they submitted.
    pub fn settle(
        &mut self,
        id: U256,
        alice: &TokenNetwork::BalanceData,
        bob: &TokenNetwork::BalanceData,
    ) -> Result<Receipt, EvmError> {
        let call = TokenNetwork::settleChannelCall {
            channelId: id,
            participant1: self.address(ALICE),
            balance1: alice.clone(),
            participant2: self.address(BOB),
            balance2: bob.clone(),
        };
        self.send(CAROL, &call).map(|(_, receipt)| receipt)
    }

    /// `who`'s withdrawal up to `total`, valid until block `expiry`, signed by `signers`
    /// (in the participant's and the partner's place).
    pub fn withdraw_call(
        &self,
        id: U256,
        who: usize,
        total: u64,
        expiry: u64,
        signers: [usize; 2],
    ) -> TokenNetwork::setTotalWithdrawCall {
        let participant = self.address(who);
        let (total, expiry) = (tokens(total), U256::from(expiry));
        let request = Withdraw {
            channelId: id,
            participant,
            totalWithdraw: total,
            expiry,
        };
        TokenNetwork::setTotalWithdrawCall {
            channelId: id,
            participant,
            totalWithdraw: total,
            expiry,
            participantSignature: self.sign_typed(signers[0], &request),
            partnerSignature: self.sign_typed(signers[1], &request),
        }
    }

    /// Alice and Bob settling at `balances`, signed by `signers` (in Alice's and Bob's place).
    pub fn cooperative_settle_call(
        &self,
        id: U256,
        balances: [u64; 2],
        signers: [usize; 2],
    ) -> TokenNetwork::cooperativeSettleCall {
        let (participant1, participant2) = (self.address(ALICE), self.address(BOB));
        let (balance1, balance2) = (tokens(balances[0]), tokens(balances[1]));
        let agreed = CooperativeSettle {
            channelId: id,
            participant1,
            balance1,
            participant2,
            balance2,
        };
        TokenNetwork::cooperativeSettleCall {
            channelId: id,
            participant1,
            balance1,
            participant2,
            balance2,
            signature1: self.sign_typed(signers[0], &agreed),
            signature2: self.sign_typed(signers[1], &agreed),
        }
    }

    /// Unlocking one of Alice's pending locks towards Bob, with its membership proof in `pending`.
    pub fn unlock_call(
        &self,
        id: U256,
        pending: &PendingLocks,
        lock: &Lock,
    ) -> TokenNetwork::unlockCall {
        let proof = pending
            .proof(&lock.secret_hash)
            .expect("the lock is pending");
        TokenNetwork::unlockCall {
            channelId: id,
            sender: self.address(ALICE),
            receiver: self.address(BOB),
            lock: TokenNetwork::Lock::from(lock),
            index: U256::from(proof.index),
            siblings: proof.siblings,
        }
    }

    /// Mines until the challenge window of a channel closed now is over.
    pub fn mine_past_window(&mut self) {
        self.evm.mine(u64::from(SETTLE_TIMEOUT) + 1);
    }
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

//! [`Chain`]: everything a node or a tool does with a token network, on any [`Backend`].

use crate::backend::{Backend, BlockLog, ChainError, LogQuery, Receipt};
use crate::contracts::{SecretRegistry, TestToken, TokenNetwork};
use crate::deploy::Deployment;
use crate::events::{ChainEvent, OnChainChannel};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use hoplite_htlc::locks::LockProof;
use hoplite_htlc::{
    Amount, ChannelId, Lock, Secret, SecretHash, Signature, SignedBalanceProof,
    TokenNetwork as Domain,
};

/// One account's access to one token network (its TokenNetwork, SecretRegistry and token).
///
/// Every transaction is sent from [`Chain::account`] and awaited until mined; a refusal is
/// [`ChainError::Reverted`] with the contract's error decoded. Operations on a channel first
/// rebuild its state from its events ([`Chain::channel`]) because the contract takes the state
/// in calldata; two transactions on the same channel in the same block therefore conflict, and
/// the second fails with `StaleChannelState` (read again and retry).
#[derive(Debug)]
pub struct Chain<B> {
    backend: B,
    contracts: Deployment,
}

impl<B: Backend> Chain<B> {
    /// `backend`'s account on the token network at `contracts`.
    pub fn new(backend: B, contracts: Deployment) -> Self {
        Self { backend, contracts }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to send what this type doesn't wrap.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The account transactions come from.
    pub fn account(&self) -> Address {
        self.backend.account()
    }

    /// Where the contracts are.
    pub fn contracts(&self) -> &Deployment {
        &self.contracts
    }

    /// The EIP-712 domain balance proofs of this token network are signed under.
    pub fn domain(&self) -> Domain {
        Domain {
            chain_id: self.backend.chain_id(),
            address: self.contracts.token_network,
        }
    }

    /// The latest block.
    pub async fn block_number(&mut self) -> Result<u64, ChainError> {
        self.backend.block_number().await
    }

    /// Opens a channel with `partner`; returns its id and the receipt.
    pub async fn open_channel(
        &mut self,
        partner: Address,
        settle_timeout: u32,
    ) -> Result<(ChannelId, Receipt), ChainError> {
        let call = TokenNetwork::openChannelCall {
            partner,
            settleTimeout: settle_timeout,
        };
        let receipt = self.send(&call).await?;
        let opened = receipt
            .logs
            .iter()
            .filter_map(|log| {
                let entry = BlockLog {
                    block: receipt.block,
                    log: log.clone(),
                };
                ChainEvent::decode(&self.contracts, &entry).ok().flatten()
            })
            .find_map(|event| OnChainChannel::opened(&event));
        opened
            .map(|channel| (channel.id, receipt))
            .ok_or_else(|| ChainError::Unexpected("openChannel emitted no ChannelOpened".into()))
    }

    /// A channel as the contract knows it, rebuilt from its events; `None` if it never existed.
    pub async fn channel(&mut self, id: ChannelId) -> Result<Option<OnChainChannel>, ChainError> {
        let query = LogQuery {
            addresses: vec![self.contracts.token_network],
            topic1: Some(B256::from(id.0)),
            from_block: self.contracts.block,
            to_block: None,
        };
        let mut channel: Option<OnChainChannel> = None;
        for entry in self.backend.logs(&query).await? {
            let Some(event) = ChainEvent::decode(&self.contracts, &entry)? else {
                continue;
            };
            match &mut channel {
                Some(channel) => channel.apply(&event),
                None => channel = OnChainChannel::opened(&event),
            }
        }
        Ok(channel)
    }

    /// Events of the token network and the secret registry in blocks `from..=to` (`to`: `None`
    /// for up to the newest), oldest first.
    pub async fn events(
        &mut self,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<ChainEvent>, ChainError> {
        let query = LogQuery {
            addresses: vec![self.contracts.token_network, self.contracts.secret_registry],
            topic1: None,
            from_block: from,
            to_block: to,
        };
        let mut events = Vec::new();
        for entry in self.backend.logs(&query).await? {
            events.extend(ChainEvent::decode(&self.contracts, &entry)?);
        }
        Ok(events)
    }

    /// Allows the TokenNetwork to pull up to `amount` of our tokens (deposits need it).
    pub async fn approve_deposits(&mut self, amount: U256) -> Result<Receipt, ChainError> {
        let call = TestToken::approveCall {
            spender: self.contracts.token_network,
            amount,
        };
        let token = self.contracts.token;
        self.backend.transact(token, call.abi_encode().into()).await
    }

    /// Mints `amount` of the test token to `to` (the `TestToken` of dev chains: anyone may
    /// mint).
    pub async fn mint_test_tokens(
        &mut self,
        to: Address,
        amount: U256,
    ) -> Result<Receipt, ChainError> {
        let call = TestToken::mintCall { to, amount };
        let token = self.contracts.token;
        self.backend.transact(token, call.abi_encode().into()).await
    }

    /// `account`'s token balance.
    pub async fn token_balance(&mut self, account: Address) -> Result<Amount, ChainError> {
        let token = self.contracts.token;
        let balance = self
            .view(token, &TestToken::balanceOfCall::new((account,)))
            .await?;
        Ok(Amount::from(balance))
    }

    /// Raises `participant`'s total deposit to `total`, paid from our account.
    pub async fn set_total_deposit(
        &mut self,
        id: ChannelId,
        participant: Address,
        total: Amount,
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::setTotalDepositCall {
            channelId: id.0,
            channel: channel.state,
            participant,
            totalDeposit: total.to_u256(),
        })
        .await
    }

    /// Pays `participant` up to a total of `total`, as both signed (`signatures`: the
    /// participant's, then its partner's, over [`hoplite_htlc::eip712::Withdraw`]).
    pub async fn set_total_withdraw(
        &mut self,
        id: ChannelId,
        participant: Address,
        total: Amount,
        expiry: u64,
        signatures: [&Signature; 2],
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::setTotalWithdrawCall {
            channelId: id.0,
            channel: channel.state,
            participant,
            totalWithdraw: total.to_u256(),
            expiry: U256::from(expiry),
            participantSignature: bytes(signatures[0]),
            partnerSignature: bytes(signatures[1]),
        })
        .await
    }

    /// Settles at once at `balances` (participant1's, participant2's), which both signed
    /// (`signatures` in the same order, over [`hoplite_htlc::eip712::CooperativeSettle`]).
    pub async fn cooperative_settle(
        &mut self,
        id: ChannelId,
        balances: [Amount; 2],
        signatures: [&Signature; 2],
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::cooperativeSettleCall {
            channelId: id.0,
            channel: channel.state,
            balance1: balances[0].to_u256(),
            balance2: balances[1].to_u256(),
            signature1: bytes(signatures[0]),
            signature2: bytes(signatures[1]),
        })
        .await
    }

    /// Closes with the partner's latest balance proof (`None`: the partner never paid us).
    pub async fn close_channel(
        &mut self,
        id: ChannelId,
        partner_proof: Option<&SignedBalanceProof>,
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        let (nonce, balance, signature) = match partner_proof {
            Some(signed) => (
                signed.proof.nonce.0,
                TokenNetwork::BalanceData::from(&signed.proof),
                bytes(&signed.signature),
            ),
            None => (0, TokenNetwork::BalanceData::default(), Bytes::new()),
        };
        self.send(&TokenNetwork::closeChannelCall {
            channelId: id.0,
            channel: channel.state,
            nonce,
            balance,
            partnerSignature: signature,
        })
        .await
    }

    /// Submits the closer's newer proof during the challenge window. `consent` is the
    /// non-closer's signature over [`hoplite_htlc::eip712::BalanceProofUpdate`]; it is needed
    /// unless we are the non-closer (a watchtower holds one).
    pub async fn update_non_closing_balance_proof(
        &mut self,
        closer_proof: &SignedBalanceProof,
        consent: Option<&Signature>,
    ) -> Result<Receipt, ChainError> {
        let id = closer_proof.proof.channel_id;
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::updateNonClosingBalanceProofCall {
            channelId: id.0,
            channel: channel.state,
            nonce: closer_proof.proof.nonce.0,
            balance: TokenNetwork::BalanceData::from(&closer_proof.proof),
            closerSignature: bytes(&closer_proof.signature),
            nonClosingSignature: consent.map(bytes).unwrap_or_default(),
        })
        .await
    }

    /// After the window, pays out from the balance data each participant's submitted proof
    /// carried (participant1's, participant2's; the default for a side with none).
    pub async fn settle_channel(
        &mut self,
        id: ChannelId,
        balances: [TokenNetwork::BalanceData; 2],
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        let [balance1, balance2] = balances;
        self.send(&TokenNetwork::settleChannelCall {
            channelId: id.0,
            channel: channel.state,
            balance1,
            balance2,
        })
        .await
    }

    /// After settlement, pays out one of `sender`'s pending locks with its membership proof.
    pub async fn unlock(
        &mut self,
        id: ChannelId,
        sender: Address,
        lock: &Lock,
        proof: &LockProof,
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::unlockCall {
            channelId: id.0,
            settled: channel.settled(),
            sender,
            lock: lock.into(),
            index: U256::from(proof.index),
            siblings: proof.siblings.clone(),
        })
        .await
    }

    /// After settlement, pays out all of `sender`'s pending locks (`locks` in slot order, as
    /// the locks root commits to them) and closes its pot.
    pub async fn unlock_batch(
        &mut self,
        id: ChannelId,
        sender: Address,
        locks: &[Lock],
    ) -> Result<Receipt, ChainError> {
        let channel = self.current(id).await?;
        self.send(&TokenNetwork::unlockBatchCall {
            channelId: id.0,
            settled: channel.settled(),
            sender,
            locks: locks.iter().map(TokenNetwork::Lock::from).collect(),
        })
        .await
    }

    /// Reveals `secret` on-chain, for every channel with a lock on its hash.
    pub async fn register_secret(&mut self, secret: &Secret) -> Result<Receipt, ChainError> {
        let call = SecretRegistry::registerSecretCall { secret: secret.0 };
        let registry = self.contracts.secret_registry;
        self.backend
            .transact(registry, call.abi_encode().into())
            .await
    }

    /// The block a secret was registered in, if it was.
    pub async fn secret_reveal_block(
        &mut self,
        hash: &SecretHash,
    ) -> Result<Option<u64>, ChainError> {
        let registry = self.contracts.secret_registry;
        let block = self
            .view(
                registry,
                &SecretRegistry::getSecretRevealBlockHeightCall { secretHash: hash.0 },
            )
            .await?;
        Ok((!block.is_zero()).then(|| block.saturating_to()))
    }

    /// A call to the TokenNetwork from our account.
    pub async fn send<C: SolCall>(&mut self, call: &C) -> Result<Receipt, ChainError> {
        let to = self.contracts.token_network;
        self.backend.transact(to, call.abi_encode().into()).await
    }

    /// A read-only call to `to`, decoded.
    pub async fn view<C: SolCall>(
        &mut self,
        to: Address,
        call: &C,
    ) -> Result<C::Return, ChainError> {
        let output = self.backend.call(to, call.abi_encode().into()).await?;
        C::abi_decode_returns(&output).map_err(|e| ChainError::Unexpected(e.to_string()))
    }

    async fn current(&mut self, id: ChannelId) -> Result<OnChainChannel, ChainError> {
        // A channel we can't find gets the contract's own verdict: the call reverts with
        // NoSuchChannel.
        Ok(self.channel(id).await?.unwrap_or_else(|| OnChainChannel {
            id,
            state: TokenNetwork::Channel::default(),
            phase: crate::events::Phase::Opened,
            pots: [None, None],
            submitted: Default::default(),
        }))
    }
}

fn bytes(signature: &Signature) -> Bytes {
    Bytes::copy_from_slice(signature.0.as_slice())
}

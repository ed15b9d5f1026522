//! Contract events decoded from logs, and a channel's on-chain state rebuilt from them.
//!
//! The TokenNetwork stores only a hash of each channel's state; whoever acts on a channel passes
//! the full state in calldata. [`OnChainChannel::apply`] rebuilds that state from the channel's
//! events, exactly as the contract changes it (the chain tests check the rebuilt state hashes to
//! what the contract stores after every step). Pure: no I/O, so the node can follow the chain
//! with it too.

use crate::backend::{BlockLog, ChainError};
use crate::contracts::{SecretRegistry, TokenNetwork};
use crate::deploy::Deployment;
use TokenNetwork::TokenNetworkEvents as Tn;
use alloy_primitives::{Address, B256, IntoLogData, Log, U256, keccak256};
use alloy_sol_types::{SolEventInterface, SolValue};
use hoplite_htlc::ChannelId;
use std::collections::BTreeMap;

/// An event of one of the Hoplite contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Emitted by the TokenNetwork.
    TokenNetwork(TokenNetwork::TokenNetworkEvents),
    /// Emitted by the SecretRegistry.
    SecretRegistry(SecretRegistry::SecretRegistryEvents),
}

/// An event and the block that included it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEvent {
    /// Block number.
    pub block: u64,
    /// The event.
    pub event: Event,
}

impl ChainEvent {
    /// Decodes a log of `contracts`; `None` for another contract's log. A log of ours that
    /// doesn't decode is an error: the deployment is not what we think it is.
    pub fn decode(contracts: &Deployment, entry: &BlockLog) -> Result<Option<Self>, ChainError> {
        let log = &entry.log;
        let undecodable = |e: alloy_sol_types::Error| {
            ChainError::Unexpected(format!("log of {}: {e}", log.address))
        };
        let event = if log.address == contracts.token_network {
            Event::TokenNetwork(
                Tn::decode_raw_log(log.topics(), &log.data.data).map_err(undecodable)?,
            )
        } else if log.address == contracts.secret_registry {
            Event::SecretRegistry(
                SecretRegistry::SecretRegistryEvents::decode_raw_log(log.topics(), &log.data.data)
                    .map_err(undecodable)?,
            )
        } else {
            return Ok(None);
        };
        Ok(Some(Self {
            block: entry.block,
            event,
        }))
    }

    /// The log this event decodes from: [`ChainEvent::decode`] gives the event back. A
    /// follower keeps these so a restart need not read the chain again.
    pub fn to_log(&self, contracts: &Deployment) -> BlockLog {
        let (address, data) = match &self.event {
            Event::TokenNetwork(e) => (contracts.token_network, e.to_log_data()),
            Event::SecretRegistry(e) => (contracts.secret_registry, e.to_log_data()),
        };
        BlockLog {
            block: self.block,
            log: Log { address, data },
        }
    }

    /// The channel a TokenNetwork event is about.
    pub fn channel_id(&self) -> Option<ChannelId> {
        let Event::TokenNetwork(event) = &self.event else {
            return None;
        };
        let id = match event {
            Tn::ChannelOpened(e) => e.channelId,
            Tn::ChannelNewDeposit(e) => e.channelId,
            Tn::ChannelWithdraw(e) => e.channelId,
            Tn::ChannelClosed(e) => e.channelId,
            Tn::NonClosingBalanceProofUpdated(e) => e.channelId,
            Tn::ChannelSettled(e) => e.channelId,
            Tn::LockUnlocked(e) => e.channelId,
            Tn::LocksUnlocked(e) => e.channelId,
        };
        Some(ChannelId(id))
    }
}

/// Where a channel is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Deposits, withdrawals and a cooperative settle are possible; either side may close.
    Opened,
    /// The challenge window runs until `settleBlock` (inclusive); then anyone may settle.
    Closed,
    /// Paid out; only pending locks (`pots`) remain.
    Settled {
        /// By `cooperativeSettle` (which leaves no locks).
        cooperatively: bool,
    },
}

/// A channel as the TokenNetwork knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnChainChannel {
    /// Its id.
    pub id: ChannelId,
    /// The state whose hash the contract stores (meaningless once settled).
    pub state: TokenNetwork::Channel,
    /// Where it is in its life.
    pub phase: Phase,
    /// After settlement: the pending locks of participant1 (towards participant2) and of
    /// participant2 (towards participant1) not yet unlocked.
    pub pots: [Option<TokenNetwork::LockPot>; 2],
    /// Once closed: the balance data of participant1's and participant2's submitted proofs
    /// (zero where none was), as the close and update events carry it. What `settleChannel`
    /// takes, so settlement never depends on data a node kept off-chain.
    pub submitted: [TokenNetwork::BalanceData; 2],
}

impl OnChainChannel {
    /// Applies `event` to `channels` (every channel by id): a `ChannelOpened` adds one, a
    /// later event of a known channel updates it; others change nothing.
    pub fn track(channels: &mut BTreeMap<ChannelId, Self>, event: &ChainEvent) {
        match Self::opened(event) {
            Some(opened) => {
                channels.insert(opened.id, opened);
            }
            None => {
                if let Some(channel) = event.channel_id().and_then(|id| channels.get_mut(&id)) {
                    channel.apply(event);
                }
            }
        }
    }

    /// The channel a `ChannelOpened` event created; `None` for any other event.
    pub fn opened(event: &ChainEvent) -> Option<Self> {
        let Event::TokenNetwork(Tn::ChannelOpened(e)) = &event.event else {
            return None;
        };
        Some(Self {
            id: ChannelId(e.channelId),
            state: TokenNetwork::Channel {
                participant1: e.participant1,
                participant2: e.participant2,
                settleTimeout: e.settleTimeout,
                settleBlock: 0,
                closer: Address::ZERO,
                side1: empty_side(),
                side2: empty_side(),
            },
            phase: Phase::Opened,
            pots: [None, None],
            submitted: Default::default(),
        })
    }

    /// Applies one of this channel's later events.
    pub fn apply(&mut self, event: &ChainEvent) {
        let Event::TokenNetwork(e) = &event.event else {
            return;
        };
        if event.channel_id() != Some(self.id) {
            return;
        }
        match e {
            Tn::ChannelOpened(_) => {}
            Tn::ChannelNewDeposit(e) => {
                if let Some(side) = self.side_mut(e.participant) {
                    side.deposit = e.totalDeposit;
                }
            }
            Tn::ChannelWithdraw(e) => {
                if let Some(side) = self.side_mut(e.participant) {
                    side.withdrawn = e.totalWithdraw;
                }
            }
            Tn::ChannelClosed(e) => {
                self.phase = Phase::Closed;
                self.state.closer = e.closer;
                self.state.settleBlock = event.block + u64::from(self.state.settleTimeout);
                if e.nonce > 0
                    && let Some(partner) = self.partner_of(e.closer)
                {
                    self.submit(partner, e.nonce, &e.balance);
                }
            }
            Tn::NonClosingBalanceProofUpdated(e) => self.submit(e.closer, e.nonce, &e.balance),
            Tn::ChannelSettled(e) => {
                self.phase = Phase::Settled {
                    cooperatively: self.phase == Phase::Opened,
                };
                // What each pot held less than its locks add up to (the contract's shortfall).
                let pot = |root: B256, locked: U256, submitted: &TokenNetwork::BalanceData| {
                    (!locked.is_zero()).then_some(TokenNetwork::LockPot {
                        locksRoot: root,
                        remaining: locked,
                        shortfall: submitted.lockedAmount.saturating_sub(locked),
                    })
                };
                self.pots = [
                    pot(e.locksRoot1, e.locked1, &self.submitted[0]),
                    pot(e.locksRoot2, e.locked2, &self.submitted[1]),
                ];
            }
            Tn::LockUnlocked(e) => {
                if let Some(slot) = self.pot_mut(e.sender)
                    && let Some(pot) = slot
                {
                    pot.remaining = pot
                        .remaining
                        .saturating_sub(e.toReceiver)
                        .saturating_sub(e.toSender);
                    pot.shortfall = e.shortfall;
                    if pot.remaining.is_zero() {
                        *slot = None;
                    }
                }
            }
            Tn::LocksUnlocked(e) => {
                if let Some(slot) = self.pot_mut(e.sender) {
                    *slot = None;
                }
            }
        }
    }

    /// The word the contract stores for this channel: the hash of [`Self::state`] until
    /// settlement; then the hash of [`Self::settled`] while locks are pending, zero once none
    /// are; a tombstone after a cooperative settle.
    pub fn stored_word(&self) -> B256 {
        match self.phase {
            Phase::Opened | Phase::Closed => keccak256(self.state.abi_encode()),
            Phase::Settled {
                cooperatively: true,
            } => B256::with_last_byte(1),
            Phase::Settled { .. } if self.pots == [None, None] => B256::ZERO,
            Phase::Settled { .. } => keccak256(self.settled().abi_encode()),
        }
    }

    /// What a settled channel holds for unlock, as the contract takes it in calldata.
    pub fn settled(&self) -> TokenNetwork::Settled {
        TokenNetwork::Settled {
            participant1: self.state.participant1,
            pot1: self.pots[0].clone().unwrap_or_default(),
            participant2: self.state.participant2,
            pot2: self.pots[1].clone().unwrap_or_default(),
        }
    }

    /// The other participant.
    pub fn partner_of(&self, participant: Address) -> Option<Address> {
        let s = &self.state;
        match participant {
            p if p == s.participant1 => Some(s.participant2),
            p if p == s.participant2 => Some(s.participant1),
            _ => None,
        }
    }

    /// `participant`'s side.
    pub fn side(&self, participant: Address) -> Option<&TokenNetwork::Side> {
        let s = &self.state;
        match participant {
            p if p == s.participant1 => Some(&s.side1),
            p if p == s.participant2 => Some(&s.side2),
            _ => None,
        }
    }

    /// What `sender` still has locked towards its partner after settlement.
    pub fn pot(&self, sender: Address) -> Option<&TokenNetwork::LockPot> {
        let s = &self.state;
        match sender {
            p if p == s.participant1 => self.pots[0].as_ref(),
            p if p == s.participant2 => self.pots[1].as_ref(),
            _ => None,
        }
    }

    /// Deposits minus withdrawals of both sides: what the channel holds before settlement.
    pub fn available(&self) -> U256 {
        let s = &self.state;
        (s.side1.deposit + s.side2.deposit) - (s.side1.withdrawn + s.side2.withdrawn)
    }

    /// `signer`'s proof with `nonce` and `balance` was submitted.
    fn submit(&mut self, signer: Address, nonce: u64, balance: &TokenNetwork::BalanceData) {
        let index = match signer {
            p if p == self.state.participant1 => 0,
            p if p == self.state.participant2 => 1,
            _ => return,
        };
        let side = if index == 0 {
            &mut self.state.side1
        } else {
            &mut self.state.side2
        };
        side.nonce = nonce;
        side.balanceHash = keccak256(balance.abi_encode());
        self.submitted[index] = balance.clone();
    }

    fn side_mut(&mut self, participant: Address) -> Option<&mut TokenNetwork::Side> {
        let s = &mut self.state;
        match participant {
            p if p == s.participant1 => Some(&mut s.side1),
            p if p == s.participant2 => Some(&mut s.side2),
            _ => None,
        }
    }

    fn pot_mut(&mut self, sender: Address) -> Option<&mut Option<TokenNetwork::LockPot>> {
        let s = &self.state;
        match sender {
            p if p == s.participant1 => Some(&mut self.pots[0]),
            p if p == s.participant2 => Some(&mut self.pots[1]),
            _ => None,
        }
    }
}

fn empty_side() -> TokenNetwork::Side {
    TokenNetwork::Side {
        deposit: U256::ZERO,
        withdrawn: U256::ZERO,
        nonce: 0,
        balanceHash: B256::ZERO,
    }
}

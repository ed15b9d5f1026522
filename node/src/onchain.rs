//! Duties on-chain: answering a partner's close, settling, unlocking, and registering secrets
//! that are about to be lost (closing the channel to claim them).
//!
//! The node acts on what the contract's events tell it (the same `OnChainChannel` the contract's
//! stored hash commits to) and on new blocks:
//! - the partner closed: submit its latest proof (`updateNonClosingBalanceProof`) if the close
//!   left an older one, and register every secret we know of its locks to us (it will not unlock
//!   them off-chain any more);
//! - an incoming lock we can claim is `reveal_timeout` blocks from expiring and the partner has
//!   not unlocked it: register the secret and close;
//! - the window is over: settle, with both sides' submitted balance data (when we hold both);
//! - settled with locks pending, and every one of them past its expiration (so the outcome is
//!   final): `unlockBatch` the pots we are owed from.

use crate::node::{ChainRequest, Event, Node};
use alloy_primitives::{Address, keccak256};
use alloy_sol_types::SolValue;
use hoplite_chain::contracts::TokenNetwork::{BalanceData, Side as OnChainSide};
use hoplite_chain::events::Phase;
use hoplite_htlc::{
    BlockNumber, ChannelId, Lock, Nonce, Secret, SecretHash, Side, SignedBalanceProof,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What we asked of the chain for one channel, so each request goes out once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Duties {
    close: bool,
    update: bool,
    settle: bool,
    /// Pots (by sender) we asked to unlock.
    unlocks: BTreeSet<Address>,
}

/// The balance data a proof commits to on-chain; none submitted is all zeros.
fn balance_data(proof: Option<&SignedBalanceProof>) -> BalanceData {
    proof.map_or_else(BalanceData::default, |p| BalanceData::from(&p.proof))
}

/// Whether `data` is what a side's submitted proof committed to.
fn matches(side: &OnChainSide, data: &BalanceData) -> bool {
    if side.nonce == 0 {
        return *data == BalanceData::default();
    }
    keccak256(data.abi_encode()) == side.balanceHash
}

impl Node {
    pub(crate) fn request_close(&mut self, channel: ChannelId) {
        let duties = self.duties.entry(channel).or_default();
        if duties.close {
            return;
        }
        duties.close = true;
        let partner_proof = self
            .channels
            .get(&channel)
            .and_then(|c| c.participant(Side::Partner).latest_proof().copied());
        self.chain_request(ChainRequest::Close {
            channel,
            partner_proof,
        });
    }

    /// Our channel was closed (by `closer`).
    pub(crate) fn handle_closed(&mut self, channel: ChannelId, closer: Address) {
        let Some(ours) = self.channels.get(&channel) else {
            return;
        };
        let latest = ours.participant(Side::Partner).latest_proof().copied();
        let partner = ours.participant(Side::Partner).address();
        // Nobody unlocks off-chain any more: make every lock to us we can claim claimable.
        let claimable: Vec<Secret> = ours
            .participant(Side::Partner)
            .locks()
            .iter()
            .filter(|lock| lock.expiration >= self.block)
            .filter_map(|lock| self.secrets.get(&lock.secret_hash).copied())
            .collect();
        self.event(Event::ChannelClosed { channel, closer });
        // Updates of this channel still unacknowledged can never apply now.
        if let Some(peer) = self.peers.get_mut(&partner) {
            peer.forget_channel(channel);
            self.state_changed = true;
        }
        if closer != self.address {
            let submitted = self
                .onchain
                .get(&channel)
                .and_then(|c| c.side(closer))
                .map_or(0, |side| side.nonce);
            if let Some(proof) = latest
                && proof.proof.nonce.0 > submitted
            {
                let duties = self.duties.entry(channel).or_default();
                if !duties.update {
                    duties.update = true;
                    self.chain_request(ChainRequest::UpdateNonClosing {
                        closer_proof: proof,
                    });
                }
            }
        }
        for secret in claimable {
            self.register_secret(secret);
        }
    }

    pub(crate) fn register_secret(&mut self, secret: Secret) {
        if self.registered.insert(secret.hash()) {
            self.chain_request(ChainRequest::RegisterSecret { secret });
        }
    }

    /// A secret became public on-chain: whoever holds our lock on it can claim it, so it is
    /// paid; claim what it pays us.
    pub(crate) fn handle_secret_revealed(&mut self, secret: Secret, block: BlockNumber) {
        let secret_hash = secret.hash();
        self.registered.insert(secret_hash);
        self.revealed_onchain.entry(secret_hash).or_insert(block);
        self.secrets.insert(secret_hash, secret);
        let receivers: Vec<Address> = self
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter_map(|((_, channel), _)| self.partner_of(*channel).ok())
            .collect();
        for receiver in receivers {
            // As if the receiver told us: unlock off-chain while the channel is open, and
            // pass the secret upstream.
            let _ = self.handle_reveal(receiver, secret);
        }
        // Locks sent on channels that closed meanwhile are paid on-chain if registered by
        // their expiration; a payment they belong to has reached its payee.
        let closed: Vec<(SecretHash, ChannelId)> = self
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter(|(_, sent)| block <= sent.expiration)
            .map(|(key, _)| *key)
            .collect();
        for key in closed {
            if let Some(sent) = self.sent.remove(&key) {
                self.sent_lock_claimed(sent, secret);
            }
        }
    }

    /// Our channel settled: a lock of ours that the state the partner submitted doesn't hold
    /// (it never received it) went back to us with the settlement.
    pub(crate) fn handle_settled(&mut self, channel: ChannelId) {
        let pot_locks = self.our_pot_locks(channel).unwrap_or_default();
        let void: Vec<(SecretHash, ChannelId)> = self
            .sent
            .keys()
            .filter(|(hash, id)| {
                *id == channel && !pot_locks.iter().any(|l| l.secret_hash == *hash)
            })
            .copied()
            .collect();
        for key in void {
            if let Some(sent) = self.sent.remove(&key) {
                self.sent_lock_expired(sent);
            }
        }
    }

    /// The locks of our pot in a settled channel: those of the state of ours the partner
    /// submitted (`None` if we don't know that state).
    fn our_pot_locks(&self, channel: ChannelId) -> Option<Vec<Lock>> {
        let ours = self.channels.get(&channel)?.participant(Side::Ours);
        let Some(pot) = self.onchain.get(&channel)?.pot(self.address) else {
            return Some(Vec::new());
        };
        if ours.locks().root() == pot.locksRoot {
            return Some(ours.locks().iter().copied().collect());
        }
        self.own_states
            .get(&channel)?
            .values()
            .find_map(|(proof, locks)| (proof.locks_root == pot.locksRoot).then(|| locks.clone()))
    }

    /// A pot of a settled channel of ours was paid out: each of its locks went to the receiver
    /// if its secret was registered by its expiration, else back to the sender. Close the books
    /// on them: payments received or forwarded, attempts paid or failed.
    pub(crate) fn handle_pot_paid(&mut self, channel: ChannelId, sender: Address) {
        let Some(ours) = self.channels.get(&channel) else {
            return;
        };
        if sender == self.address {
            // Locks of ours whose secret was registered in time were settled when it was
            // (`handle_secret_revealed`); the rest came back.
            let returned: Vec<(SecretHash, ChannelId)> = self
                .sent
                .keys()
                .filter(|(_, id)| *id == channel)
                .copied()
                .collect();
            for key in returned {
                if let Some(sent) = self.sent.remove(&key) {
                    self.sent_lock_expired(sent);
                }
            }
            return;
        }
        let paid: Vec<(SecretHash, bool)> = ours
            .participant(Side::Partner)
            .locks()
            .iter()
            .map(|lock| {
                let claimed = self
                    .revealed_onchain
                    .get(&lock.secret_hash)
                    .is_some_and(|block| *block <= lock.expiration);
                (lock.secret_hash, claimed)
            })
            .collect();
        for (secret_hash, claimed) in paid {
            if claimed {
                self.handle_unlocked(channel, secret_hash);
            } else {
                self.received.remove(&(secret_hash, channel));
            }
        }
    }

    /// Everything the chain expects of us by this block.
    pub(crate) fn chain_duties(&mut self) {
        let ours: Vec<ChannelId> = self.channels.keys().copied().collect();
        for channel in ours {
            let Some(onchain) = self.onchain.get(&channel) else {
                continue;
            };
            match onchain.phase {
                Phase::Opened => {}
                Phase::Closed => {
                    if self.block.0 > onchain.state.settleBlock {
                        self.settle(channel);
                    }
                }
                Phase::Settled { .. } => self.unlock_pots(channel),
            }
        }
        self.claim_locks_in_danger();
        self.give_up_slow_closes();
    }

    fn settle(&mut self, channel: ChannelId) {
        if self.duties.get(&channel).is_some_and(|d| d.settle) {
            return;
        }
        let (Some(ours), Some(onchain)) = (self.channels.get(&channel), self.onchain.get(&channel))
        else {
            return;
        };
        let state = &onchain.state;
        let data_of = |address: Address, side: &OnChainSide| {
            if address != self.address {
                return balance_data(ours.participant(Side::Partner).latest_proof());
            }
            // Ours as the partner submitted it: none, or any state of ours it may have held.
            if side.nonce == 0 {
                return BalanceData::default();
            }
            self.own_states
                .get(&channel)
                .and_then(|states| states.get(&Nonce(side.nonce)))
                .map_or_else(
                    || balance_data(ours.participant(Side::Ours).latest_proof()),
                    |(proof, _)| BalanceData::from(proof),
                )
        };
        let balances = [
            data_of(state.participant1, &state.side1),
            data_of(state.participant2, &state.side2),
        ];
        // A close with an older proof than our latest: the closer knows its data and settles.
        if !matches(&state.side1, &balances[0]) || !matches(&state.side2, &balances[1]) {
            return;
        }
        self.duties.entry(channel).or_default().settle = true;
        self.chain_request(ChainRequest::Settle { channel, balances });
    }

    fn unlock_pots(&mut self, channel: ChannelId) {
        let (Some(ours), Some(onchain)) = (self.channels.get(&channel), self.onchain.get(&channel))
        else {
            return;
        };
        let mut requests = Vec::new();
        for side in [Side::Ours, Side::Partner] {
            let participant = ours.participant(side);
            let sender = participant.address();
            let Some(pot) = onchain.pot(sender) else {
                continue;
            };
            // Only the lock set the pot commits to can be unlocked: for our pot, that of the
            // state of ours the partner submitted.
            let locks: Option<Vec<Lock>> = match side {
                Side::Ours => self.our_pot_locks(channel),
                Side::Partner => (participant.locks().root() == pot.locksRoot)
                    .then(|| participant.locks().iter().copied().collect()),
            };
            // And only once every lock's fate is sealed (past its expiration) is one batch final.
            let Some(locks) =
                locks.filter(|locks| locks.iter().all(|lock| lock.expiration < self.block))
            else {
                continue;
            };
            // Owed something: a lock to us whose secret is public, or ours whose isn't.
            let owed = locks.iter().any(|lock| {
                let public = self.registered.contains(&lock.secret_hash);
                (side == Side::Partner) == public
            });
            if owed
                && !self
                    .duties
                    .get(&channel)
                    .is_some_and(|d| d.unlocks.contains(&sender))
            {
                requests.push((sender, locks));
            }
        }
        for (sender, locks) in requests {
            self.duties
                .entry(channel)
                .or_default()
                .unlocks
                .insert(sender);
            self.chain_request(ChainRequest::UnlockBatch {
                channel,
                sender,
                locks,
            });
        }
    }

    /// Incoming locks we can claim, about to expire, not unlocked: register and close.
    pub(crate) fn claim_locks_in_danger(&mut self) {
        let horizon = self.block.0.saturating_add(self.config.reveal_timeout);
        let mut due = Vec::new();
        for (channel, ours) in &self.channels {
            if self.partner_of(*channel).is_err() {
                continue;
            }
            for lock in ours.participant(Side::Partner).locks().iter() {
                if let Some(secret) = self.secrets.get(&lock.secret_hash)
                    && lock.expiration.0 <= horizon
                    && lock.expiration >= self.block
                {
                    due.push((*channel, *secret));
                }
            }
        }
        for (channel, secret) in due {
            self.register_secret(secret);
            self.request_close(channel);
        }
    }
}

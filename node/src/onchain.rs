//! Duties on-chain, derived at the end of every call from what the chain shows (the contract's
//! events, which build the same `OnChainChannel` its stored hash commits to), the block, and
//! what we hold (see `monitor.rs` for how requests go out and are retried):
//! - we decided to close (the user, a lock in danger, a partner that broke the rules, a
//!   cooperative close that stalled): close with the partner's latest proof;
//! - a deposit the user asked for that the chain does not show yet;
//! - the partner closed with an older proof of its own than the one we hold: submit ours
//!   (`updateNonClosingBalanceProof`) while the window is open;
//! - the window is over: settle with the balance data the close and update events carried,
//!   whatever we kept;
//! - settled with locks pending, and every lock of a pot past its expiration (its fate sealed):
//!   `unlockBatch` a pot we are owed from, one at a time;
//! - a lock to us whose secret we hold, on a channel we no longer expect to be unlocked
//!   off-chain (closing or closed) or about to expire: register the secret before its
//!   expiration; on an open channel, also close.
//!
//! A lock's fate is decided by the chain alone: it pays its receiver if the SecretRegistry
//! shows its secret revealed at or before its expiration ([`Node::claimed_onchain`]), else it
//! returns to its sender. The driver feeds a block's events before the block itself, so when
//! a block past a lock's expiration comes in, every reveal that could claim it is known.

use crate::monitor::{Duty, InFlight, may_send};
use crate::node::{ChainRequest, Event, Node};
use alloy_primitives::Address;
use hoplite_chain::events::{OnChainChannel, Phase};
use hoplite_htlc::{BlockNumber, Channel, ChannelId, Lock, Secret, SecretHash, Side};
use std::collections::BTreeSet;

impl Node {
    /// Decides to close `channel` unilaterally. From now on it carries no new state either way
    /// (what we close with stays the partner's latest proof), and the duties close it.
    pub(crate) fn request_close(&mut self, channel: ChannelId) {
        let monitor = self.monitors.entry(channel).or_default();
        if monitor.closing {
            return;
        }
        monitor.closing = true;
        self.state_changed = true;
        self.announce_policy(channel);
    }

    /// Whether the chain shows `secret_hash` revealed in time for a lock expiring at
    /// `expiration`: the contract's rule (registered at or before the expiration), the one
    /// the node uses everywhere for "claimed on-chain".
    pub(crate) fn claimed_onchain(
        &self,
        secret_hash: &SecretHash,
        expiration: BlockNumber,
    ) -> bool {
        self.revealed_onchain
            .get(secret_hash)
            .is_some_and(|block| *block <= expiration)
    }

    /// Whether the receiver of a lock expiring at `expiration` who learns its secret now has
    /// more than `reveal_timeout` blocks to register it: the one rule for accepting,
    /// forwarding and revealing. A lock to us that fails it, whose secret we hold, is in danger.
    pub(crate) fn claimable_in_time(&self, expiration: BlockNumber) -> bool {
        expiration.0 > self.block.0.saturating_add(self.config.reveal_timeout)
    }

    /// Our channel was closed (by `closer`): the duties take it from here.
    pub(crate) fn handle_closed(&mut self, channel: ChannelId, closer: Address) {
        let Some(ours) = self.channels.get(&channel) else {
            return;
        };
        let partner = ours.participant(Side::Partner).address();
        self.event(Event::ChannelClosed { channel, closer });
        // Updates of this channel still unacknowledged can never apply now.
        if let Some(peer) = self.peers.get_mut(&partner) {
            peer.forget_channel(channel);
            self.state_changed = true;
        }
    }

    /// A secret became public on-chain: whoever holds our lock on it can claim it, so it is
    /// paid; claim what it pays us. Only secrets of our locks are kept: anyone may register
    /// any number of secrets.
    pub(crate) fn handle_secret_revealed(&mut self, secret: Secret, block: BlockNumber) {
        let secret_hash = secret.hash();
        if !self.has_lock_on(&secret_hash) {
            return;
        }
        self.revealed_onchain.entry(secret_hash).or_insert(block);
        self.secrets.insert(secret_hash, secret);
        self.state_changed = true;
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
        // Locks sent on channels that closed meanwhile are paid on-chain if revealed in time;
        // a payment they belong to has reached its payee.
        let closed: Vec<(SecretHash, ChannelId)> = self
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter(|(_, sent)| self.claimed_onchain(&secret_hash, sent.expiration))
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
        if self
            .onchain
            .get(&channel)
            .is_some_and(|c| c.pot(self.address).is_none())
        {
            // Nothing of ours is left to unlock: no older state of ours can matter now.
            self.lock_history.remove(&channel);
        }
    }

    /// The locks of our pot in a settled channel: those of the state of ours the partner
    /// submitted (`None` if no state we signed has its root).
    fn our_pot_locks(&self, channel: ChannelId) -> Option<Vec<Lock>> {
        let ours = self.channels.get(&channel)?.participant(Side::Ours);
        let Some(pot) = self.onchain.get(&channel)?.pot(self.address) else {
            return Some(Vec::new());
        };
        if ours.locks().root() == pot.locksRoot {
            return Some(ours.locks().iter().copied().collect());
        }
        self.lock_history
            .get(&channel)
            .and_then(|history| history.locks_with_root(pot.locksRoot))
    }

    /// A pot of a settled channel of ours was paid out: each of its locks went to the receiver
    /// if its secret was revealed on-chain in time, else back to the sender. Close the books
    /// on them: payments received or forwarded, attempts paid or failed.
    pub(crate) fn handle_pot_paid(&mut self, channel: ChannelId, sender: Address) {
        let Some(ours) = self.channels.get(&channel) else {
            return;
        };
        if sender == self.address {
            // Locks of ours claimed on-chain were settled when their secret was revealed
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
            self.lock_history.remove(&channel);
            return;
        }
        let paid: Vec<(SecretHash, bool)> = ours
            .participant(Side::Partner)
            .locks()
            .iter()
            .map(|lock| {
                let claimed = self.claimed_onchain(&lock.secret_hash, lock.expiration);
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

    /// Derives what the chain expects of us now and sends what is due (called at the end of
    /// every call).
    pub(crate) fn chain_duties(&mut self) {
        self.claim_locks_in_danger();
        self.give_up_slow_closes();
        let block = self.block;
        let ours: Vec<ChannelId> = self.channels.keys().copied().collect();
        for channel in ours {
            let needed = self.channel_duty(channel);
            let settled = self
                .onchain
                .get(&channel)
                .is_some_and(|c| matches!(c.phase, Phase::Settled { .. }));
            let Some((duty, request)) = needed else {
                // Done (the chain shows it) or moot. A settled channel owes nothing more, so
                // its monitor goes; it comes back if a pot becomes ours to unlock.
                if settled {
                    if self.monitors.remove(&channel).is_some() {
                        self.state_changed = true;
                    }
                } else if let Some(monitor) = self.monitors.get_mut(&channel)
                    && monitor.in_flight.take().is_some()
                {
                    self.state_changed = true;
                }
                continue;
            };
            let in_flight = self.monitors.get(&channel).and_then(|m| m.in_flight);
            if !may_send(in_flight.as_ref(), duty, block) {
                continue;
            }
            let id = self.send_chain_request(request);
            let retry_at = self.retry_block();
            self.monitors.entry(channel).or_default().in_flight =
                Some(InFlight { id, duty, retry_at });
        }
        self.register_secrets();
    }

    /// The block from which a request sent now may be sent again.
    fn retry_block(&self) -> BlockNumber {
        BlockNumber(self.block.0.saturating_add(self.config.chain_retry_after))
    }

    /// What `channel` needs of the chain now, if anything.
    fn channel_duty(&self, channel: ChannelId) -> Option<(Duty, ChainRequest)> {
        let ours = self.channels.get(&channel)?;
        let onchain = self.onchain.get(&channel)?;
        let monitor = self.monitors.get(&channel);
        let block = self.block.0;
        match onchain.phase {
            Phase::Opened => {
                if monitor.is_some_and(|m| m.closing) {
                    let partner_proof = ours.participant(Side::Partner).latest_proof().copied();
                    return Some((
                        Duty::Close,
                        ChainRequest::Close {
                            channel,
                            partner_proof,
                        },
                    ));
                }
                let total = monitor.and_then(|m| m.deposit)?;
                let deposited = onchain.side(self.address)?.deposit;
                (deposited < total.to_u256())
                    .then_some((Duty::Deposit, ChainRequest::Deposit { channel, total }))
            }
            Phase::Closed => {
                let settle_block = onchain.state.settleBlock;
                if block > settle_block {
                    let balances = onchain.submitted.clone();
                    return Some((Duty::Settle, ChainRequest::Settle { channel, balances }));
                }
                // An update sent now lands in a later block: it must still be in the window.
                let closer = onchain.state.closer;
                if closer == self.address || block >= settle_block {
                    return None;
                }
                let proof = ours.participant(Side::Partner).latest_proof()?;
                let submitted = onchain.side(closer)?.nonce;
                (proof.proof.nonce.0 > submitted).then_some((
                    Duty::Update,
                    ChainRequest::UpdateNonClosing {
                        closer_proof: *proof,
                    },
                ))
            }
            Phase::Settled { .. } => self.unlock_duty(ours, onchain),
        }
    }

    /// A pot of a settled channel whose locks are all past their expiration and that owes us
    /// something: a lock to us claimed on-chain, or one of ours that was not.
    fn unlock_duty(
        &self,
        ours: &Channel,
        onchain: &OnChainChannel,
    ) -> Option<(Duty, ChainRequest)> {
        let participants = [onchain.state.participant1, onchain.state.participant2];
        for (second, sender) in [false, true].into_iter().zip(participants) {
            if onchain.pot(sender).is_none() {
                continue;
            }
            let to_us = sender != self.address;
            // Only the lock set the pot commits to can be unlocked.
            let locks = if to_us {
                let partner = ours.participant(Side::Partner);
                let root = onchain.pot(sender).map(|pot| pot.locksRoot);
                (Some(partner.locks().root()) == root)
                    .then(|| partner.locks().iter().copied().collect())
            } else {
                self.our_pot_locks(onchain.id)
            };
            let Some(locks) = locks
                .filter(|locks: &Vec<Lock>| locks.iter().all(|lock| lock.expiration < self.block))
            else {
                continue;
            };
            let owed = locks
                .iter()
                .any(|lock| to_us == self.claimed_onchain(&lock.secret_hash, lock.expiration));
            if owed {
                let request = ChainRequest::UnlockBatch {
                    channel: onchain.id,
                    sender,
                    locks,
                };
                return Some((Duty::Unlock { second }, request));
            }
        }
        None
    }

    /// Registers the secrets of locks to us that we can no longer expect to be unlocked
    /// off-chain (the channel is closing or closed, or the lock is in danger), until the
    /// registry shows them or the lock expired.
    fn register_secrets(&mut self) {
        let block = self.block;
        let mut due = BTreeSet::new();
        for (channel, ours) in &self.channels {
            let open = self.partner_of(*channel).is_ok() && !self.is_closing(*channel);
            for lock in ours.participant(Side::Partner).locks().iter() {
                let hash = lock.secret_hash;
                // A registration sent now lands in a later block: at the latest the expiration.
                if block < lock.expiration
                    && self.secrets.contains_key(&hash)
                    && !self.revealed_onchain.contains_key(&hash)
                    && (!open || !self.claimable_in_time(lock.expiration))
                {
                    due.insert(hash);
                }
            }
        }
        // A registration no longer due is done (the registry shows it) or moot (expired).
        let before = self.registrations.len();
        self.registrations.retain(|hash, _| due.contains(hash));
        if self.registrations.len() != before {
            self.state_changed = true;
        }
        for hash in due {
            if !may_send(self.registrations.get(&hash), Duty::Register, block) {
                continue;
            }
            let secret = self.secrets[&hash];
            let id = self.send_chain_request(ChainRequest::RegisterSecret { secret });
            let retry_at = self.retry_block();
            self.registrations.insert(
                hash,
                InFlight {
                    id,
                    duty: Duty::Register,
                    retry_at,
                },
            );
        }
    }

    /// A request we sent failed: retry it the block after, if it still matters then.
    pub(crate) fn chain_request_failed(&mut self, id: crate::ChainRequestId) -> bool {
        let retry_at = BlockNumber(self.block.0.saturating_add(1));
        let in_flight = self
            .monitors
            .values_mut()
            .filter_map(|m| m.in_flight.as_mut())
            .chain(self.registrations.values_mut())
            .find(|f| f.id == id);
        match in_flight {
            Some(in_flight) => {
                in_flight.retry_at = retry_at;
                self.state_changed = true;
                true
            }
            None => false,
        }
    }

    /// Incoming locks whose secret we hold, about to expire, not unlocked by the partner:
    /// close the channel (the secret is registered by the duties).
    pub(crate) fn claim_locks_in_danger(&mut self) {
        let mut due = Vec::new();
        for (channel, ours) in &self.channels {
            if self.partner_of(*channel).is_err() || self.is_closing(*channel) {
                continue;
            }
            let in_danger = ours.participant(Side::Partner).locks().iter().any(|lock| {
                self.secrets.contains_key(&lock.secret_hash)
                    && !self.claimable_in_time(lock.expiration)
                    && self.block <= lock.expiration
            });
            if in_danger {
                due.push(*channel);
            }
        }
        for channel in due {
            self.request_close(channel);
        }
    }

    /// Records how our new state `nonce` of `channel` changed our lock set, as a record of its
    /// own (one per lock added or removed).
    pub(crate) fn record_lock_change(
        &mut self,
        channel: ChannelId,
        nonce: hoplite_htlc::Nonce,
        change: crate::LockChange,
    ) {
        self.lock_history
            .entry(channel)
            .or_default()
            .record(nonce, change);
        self.records.push(crate::Record::LockChange {
            channel,
            nonce,
            change,
        });
    }

    /// Whether a pending lock of ours, sent or received, has this secret hash.
    pub(crate) fn has_lock_on(&self, hash: &SecretHash) -> bool {
        let from = (*hash, ChannelId::default());
        let first_is = |key: Option<&(SecretHash, ChannelId)>| key.is_some_and(|(h, _)| h == hash);
        first_is(self.sent.range(from..).next().map(|(k, _)| k))
            || first_is(self.received.range(from..).next().map(|(k, _)| k))
    }
}

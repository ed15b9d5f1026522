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
//! a block past a lock's expiration comes in, every reveal that could claim it is known. Every
//! reveal is kept, not only those of locks we hold: a payer may register a secret before its
//! locks exist. (Each costs its registrant gas; they are rebuilt from the chain's events at
//! restore, not persisted.) Duties are derived after the block, not after each of its events:
//! a node replaying the chain at restore sends nothing from a half-replayed state.

use crate::api::{ChainRequest, Event};
use crate::monitor::{InFlight, may_send};
use crate::node::Node;
use alloy_primitives::Address;
use hoplite_chain::events::{OnChainChannel, Phase};
use hoplite_htlc::{BlockNumber, Channel, ChannelId, Lock, Secret, SecretHash, Side};
use std::collections::BTreeSet;

impl Node {
    /// Decides to close `channel` unilaterally. From now on it carries no new state either way
    /// (what we close with stays the partner's latest proof), and the duties close it.
    pub(crate) fn request_close(&mut self, channel: ChannelId) {
        let monitor = self.state.monitors.entry(channel).or_default();
        if monitor.closing {
            return;
        }
        monitor.closing = true;
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
        self.view
            .read()
            .revealed
            .get(secret_hash)
            .is_some_and(|(block, _)| *block <= expiration)
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
        self.state
            .outbox
            .drop_where(partner, |message| message.channel() == Some(channel));
    }

    /// A secret became public on-chain: whoever holds our lock on it can claim it, so it is
    /// paid; claim what it pays us.
    pub(crate) fn handle_secret_revealed(&mut self, secret: Secret) {
        let secret_hash = secret.hash();
        if !self.has_lock_on(&secret_hash) {
            return;
        }
        self.state.secrets.insert(secret_hash, secret);
        let receivers: Vec<Address> = self
            .state
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
            .state
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter(|(_, sent)| self.claimed_onchain(&secret_hash, sent.expiration))
            .map(|(key, _)| *key)
            .collect();
        for key in closed {
            if let Some(sent) = self.state.sent.remove(&key) {
                self.sent_lock_claimed(sent, secret);
            }
        }
    }

    /// Our channel settled: a lock of ours that the state the partner submitted doesn't hold
    /// (it never received it) went back to us with the settlement. The locks of our pot are
    /// found now, once, and kept with the monitor: no older state of ours matters any more.
    pub(crate) fn handle_settled(&mut self, channel: ChannelId) {
        // Locks of a state of ours we can't find are left on the books: the partner, who
        // submitted the state, may unlock its pot, and the books close then.
        let Some(pot_locks) = self.our_pot_locks(channel) else {
            return;
        };
        if self
            .view
            .read()
            .onchain
            .get(&channel)
            .is_some_and(|c| c.pot(self.address).is_some())
        {
            self.state.monitors.entry(channel).or_default().our_pot = Some(pot_locks.clone());
        }
        self.lock_history.remove(&channel);
        let void: Vec<(SecretHash, ChannelId)> = self
            .state
            .sent
            .keys()
            .filter(|(hash, id)| {
                *id == channel && !pot_locks.iter().any(|l| l.secret_hash == *hash)
            })
            .copied()
            .collect();
        for key in void {
            if let Some(sent) = self.state.sent.remove(&key) {
                self.sent_lock_expired(sent);
            }
        }
    }

    /// The locks of our pot in a settled channel: those of the state of ours the partner
    /// submitted (`None` if no state we signed has its root).
    fn our_pot_locks(&self, channel: ChannelId) -> Option<Vec<Lock>> {
        if let Some(locks) = self
            .state
            .monitors
            .get(&channel)
            .and_then(|m| m.our_pot.clone())
        {
            return Some(locks);
        }
        let ours = self.channels.get(&channel)?.participant(Side::Ours);
        let view = self.view.read();
        let Some(pot) = view.onchain.get(&channel)?.pot(self.address) else {
            return Some(Vec::new());
        };
        if ours.locks().root() == pot.locksRoot {
            return Some(ours.locks().iter().copied().collect());
        }
        self.lock_history
            .get(&channel)
            .and_then(|history| history.locks_with_root(pot.locksRoot))
    }

    /// Locks of a pot of a settled channel of ours were paid out (`only` the one with this
    /// secret hash, or the whole pot): each went to the receiver if its secret was revealed
    /// on-chain in time, else back to the sender. Close the books on them: payments received
    /// or forwarded, attempts paid or failed.
    pub(crate) fn handle_pot_paid(
        &mut self,
        channel: ChannelId,
        sender: Address,
        only: Option<SecretHash>,
    ) {
        let Some(ours) = self.channels.get(&channel) else {
            return;
        };
        let picked = |hash: &SecretHash| only.is_none_or(|h| h == *hash);
        if sender == self.address {
            let paid: Vec<((SecretHash, ChannelId), Option<Secret>)> = self
                .state
                .sent
                .iter()
                .filter(|((hash, id), _)| *id == channel && picked(hash))
                .map(|(key, sent)| {
                    let claimed = self
                        .claimed_onchain(&key.0, sent.expiration)
                        .then(|| self.view.read().revealed[&key.0].1);
                    (*key, claimed)
                })
                .collect();
            for (key, claimed) in paid {
                if let Some(sent) = self.state.sent.remove(&key) {
                    match claimed {
                        Some(secret) => self.sent_lock_claimed(sent, secret),
                        None => self.sent_lock_expired(sent),
                    }
                }
            }
            return;
        }
        let paid: Vec<(SecretHash, bool)> = ours
            .participant(Side::Partner)
            .locks()
            .iter()
            .filter(|lock| picked(&lock.secret_hash))
            .map(|lock| {
                let claimed = self.claimed_onchain(&lock.secret_hash, lock.expiration);
                (lock.secret_hash, claimed)
            })
            .collect();
        for (secret_hash, claimed) in paid {
            if claimed {
                self.handle_unlocked(channel, secret_hash);
            } else {
                self.state.received.remove(&(secret_hash, channel));
            }
        }
    }

    /// Derives what the chain expects of us now and sends what is due (called at the end of
    /// every call but those that feed one of a block's events). Only watched channels are
    /// looked at: a quiet one owes nothing, whatever the block.
    pub(crate) fn chain_duties(&mut self) {
        let mut changed = self.watch_changed();
        self.claim_locks_in_danger();
        self.give_up_slow_closes();
        self.withdrawal_duties();
        // Those may have decided to close.
        changed.append(&mut self.watch_changed());
        // Between blocks a channel's duty changes only with the channel (its state, its
        // monitor, its on-chain state); a block moves every deadline.
        let looked_at: Vec<ChannelId> = if std::mem::take(&mut self.block_since_duties) {
            self.watched.iter().copied().collect()
        } else {
            changed
                .into_iter()
                .filter(|c| self.watched.contains(c))
                .collect()
        };
        let block = self.block;
        for channel in looked_at {
            let Some(request) = self.channel_duty(channel) else {
                // Nothing due. A settled channel with no pot left owes nothing more.
                if self.view.read().onchain.get(&channel).is_some_and(|c| {
                    matches!(c.phase, Phase::Settled { .. }) && c.pots == [None, None]
                }) {
                    self.state.monitors.remove(&channel);
                }
                continue;
            };
            let in_flight = self.state.monitors.get(&channel).and_then(|m| m.in_flight);
            if !may_send(in_flight.as_ref(), block) {
                continue;
            }
            let id = self.send_chain_request(request);
            let in_flight = InFlight::sent(id, block, self.config.chain_retry_after, in_flight);
            self.state.monitors.entry(channel).or_default().in_flight = Some(in_flight);
        }
        self.register_secrets();
        debug_assert!(
            self.channels.iter().all(|(c, ours)| {
                (self.watched.contains(c) || self.is_quiet(*c))
                    && self.partner_locked.get(c).copied() == earliest_partner_expiration(ours)
            }),
            "a channel changed without being marked: the duties would miss it"
        );
        debug_assert!(
            self.partner_locked
                .keys()
                .all(|c| self.channels.contains_key(c)),
            "an earliest partner lock kept for a channel we no longer hold"
        );
    }

    /// Decides for each channel changed since the last look whether it is watched; returns
    /// them.
    fn watch_changed(&mut self) -> BTreeSet<ChannelId> {
        let changed: BTreeSet<ChannelId> = std::mem::take(&mut self.unsure)
            .into_iter()
            .chain(self.dirty.iter().copied())
            .chain(self.state.monitors.marked().copied())
            .collect();
        for &channel in &changed {
            if self.is_quiet(channel) {
                self.watched.remove(&channel);
            } else {
                self.watched.insert(channel);
            }
            match self
                .channels
                .get(&channel)
                .and_then(earliest_partner_expiration)
            {
                Some(earliest) => self.partner_locked.insert(channel, earliest),
                None => self.partner_locked.remove(&channel),
            };
        }
        changed
    }

    /// Our channels in which the partner has locks pending.
    fn with_partner_locks(&self) -> impl Iterator<Item = (&ChannelId, &Channel)> {
        self.partner_locked
            .keys()
            .filter_map(|c| Some((c, self.channels.get(c)?)))
    }

    /// Whether `channel` owes the chain nothing, whatever the block: not ours, or open
    /// on-chain with no lock of the partner's pending (nothing to claim or register), no
    /// close decided, and the deposit asked for in. Depends on the channel's own state, its
    /// monitor and its on-chain state only, so it changes only when one of them does.
    fn is_quiet(&self, channel: ChannelId) -> bool {
        let Some(ours) = self.channels.get(&channel) else {
            return true;
        };
        let view = self.view.read();
        let Some(onchain) = view.onchain.get(&channel) else {
            return false;
        };
        let monitor = self.state.monitors.get(&channel);
        let deposited = |total: hoplite_htlc::Amount| {
            onchain
                .side(self.address)
                .is_none_or(|side| side.deposit >= total.to_u256())
        };
        onchain.phase == Phase::Opened
            && ours.participant(Side::Partner).locks().is_empty()
            && !monitor.is_some_and(|m| m.closing)
            && monitor.and_then(|m| m.deposit).is_none_or(deposited)
    }

    /// What `channel` needs of the chain now, if anything.
    fn channel_duty(&self, channel: ChannelId) -> Option<ChainRequest> {
        let ours = self.channels.get(&channel)?;
        let view = self.view.read();
        let onchain = view.onchain.get(&channel)?;
        let monitor = self.state.monitors.get(&channel);
        let block = self.block.0;
        match onchain.phase {
            Phase::Opened => {
                if monitor.is_some_and(|m| m.closing) {
                    let partner_proof = ours.participant(Side::Partner).latest_proof().copied();
                    return Some(ChainRequest::Close {
                        channel,
                        partner_proof,
                    });
                }
                let total = monitor.and_then(|m| m.deposit)?;
                let deposited = onchain.side(self.address)?.deposit;
                (deposited < total.to_u256()).then_some(ChainRequest::Deposit { channel, total })
            }
            Phase::Closed => {
                let settle_block = onchain.state.settleBlock;
                if block > settle_block {
                    let balances = onchain.submitted.clone();
                    return Some(ChainRequest::Settle { channel, balances });
                }
                // An update sent now lands in a later block: it must still be in the window.
                let closer = onchain.state.closer;
                if closer == self.address || block >= settle_block {
                    return None;
                }
                let proof = ours.participant(Side::Partner).latest_proof()?;
                let submitted = onchain.side(closer)?.nonce;
                (proof.proof.nonce.0 > submitted).then_some(ChainRequest::UpdateNonClosing {
                    closer_proof: *proof,
                })
            }
            Phase::Settled { .. } => self.unlock_duty(ours, onchain),
        }
    }

    /// A pot of a settled channel whose locks are all past their expiration and that owes us
    /// something: a lock to us claimed on-chain, or one of ours that was not.
    fn unlock_duty(&self, ours: &Channel, onchain: &OnChainChannel) -> Option<ChainRequest> {
        let participants = [onchain.state.participant1, onchain.state.participant2];
        for sender in participants {
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
                return Some(request);
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
        let view = self.view.read();
        for (channel, ours) in self.with_partner_locks() {
            // Whether the channel is open (in the view's map of every channel) and not closing
            // is looked up only for a lock that could be due: a hub has thousands of locks
            // pending, and we hold the secrets of few of them.
            let mut open = None;
            for lock in ours.participant(Side::Partner).locks().iter() {
                let hash = lock.secret_hash;
                // A registration sent now lands in a later block: at the latest the expiration.
                if block < lock.expiration
                    && self.state.secrets.contains_key(&hash)
                    && !view.revealed.contains_key(&hash)
                    && (!self.claimable_in_time(lock.expiration)
                        || !*open.get_or_insert_with(|| {
                            view.is_open(*channel) && !self.is_closing(*channel)
                        }))
                {
                    due.insert(hash);
                }
            }
        }
        drop(view);
        // A registration no longer due is done (the registry shows it) or moot (expired).
        self.state
            .registrations
            .retain(|hash, _| due.contains(hash));
        for hash in due {
            if !may_send(self.state.registrations.get(&hash), block) {
                continue;
            }
            let secret = self.state.secrets[&hash];
            let before = self.state.registrations.get(&hash).copied();
            let id = self.send_chain_request(ChainRequest::RegisterSecret { secret });
            let in_flight = InFlight::sent(id, block, self.config.chain_retry_after, before);
            self.state.registrations.insert(hash, in_flight);
        }
    }

    /// A request we sent failed: send it again later, if it still matters then.
    pub(crate) fn chain_request_failed(
        &mut self,
        id: crate::ChainRequestId,
        failure: &crate::ChainFailure,
    ) {
        let (block, retry_after) = (self.block, self.config.chain_retry_after);
        // Found first, then borrowed for change: only its entry is marked changed.
        let channel = self
            .state
            .monitors
            .iter()
            .find(|(_, m)| m.in_flight.is_some_and(|f| f.id == id))
            .map(|(channel, _)| *channel);
        let in_flight = match channel {
            Some(channel) => self
                .state
                .monitors
                .get_mut(&channel)
                .and_then(|m| m.in_flight.as_mut()),
            None => {
                let hash = self
                    .state
                    .registrations
                    .iter()
                    .find(|(_, f)| f.id == id)
                    .map(|(hash, _)| *hash);
                hash.and_then(|hash| self.state.registrations.get_mut(&hash))
            }
        };
        if let Some(in_flight) = in_flight {
            in_flight.failed(failure, block, retry_after);
        }
    }

    /// Incoming locks whose secret we hold, about to expire, not unlocked by the partner:
    /// close the channel (the secret is registered by the duties).
    pub(crate) fn claim_locks_in_danger(&mut self) {
        let mut due = Vec::new();
        for (channel, earliest) in &self.partner_locked {
            // A hub has thousands of locks pending, nearly all far from expiring: a channel
            // whose earliest can still be claimed in time is not even looked up.
            if self.claimable_in_time(*earliest) {
                continue;
            }
            let Some(ours) = self.channels.get(channel) else {
                continue;
            };
            // While a registration can still land by the expiration: closing later helps
            // nothing. The block tests first: they are arithmetic, the rest are lookups.
            let in_danger = ours.participant(Side::Partner).locks().iter().any(|lock| {
                self.block < lock.expiration
                    && !self.claimable_in_time(lock.expiration)
                    && self.state.secrets.contains_key(&lock.secret_hash)
                    && !self.refused(lock.secret_hash, *channel)
            });
            if in_danger && self.partner_of(*channel).is_ok() && !self.is_closing(*channel) {
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
        first_is(self.state.sent.range(from..).next().map(|(k, _)| k))
            || first_is(self.state.received.range(from..).next().map(|(k, _)| k))
    }
}

/// The earliest expiration among the partner's locks pending in `ours` (`None`: none).
fn earliest_partner_expiration(ours: &Channel) -> Option<BlockNumber> {
    ours.participant(Side::Partner)
        .locks()
        .iter()
        .map(|lock| lock.expiration)
        .min()
}

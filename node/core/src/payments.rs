//! Paying, being paid and forwarding: what the node does with locks and secrets.

use crate::ahead::{FoundRoute, RouteInputs, RouteQuery};
use crate::api::{CommandError, Event, PaymentFailure, PeerError, Record};
use crate::invoice::{Invoice, PaymentId};
use crate::node::Node;
use crate::wire::{FailurePoint, FailureReason, Keysend, Message, Onward, OnwardHop};
use alloy_primitives::Address;
use hoplite_htlc::crypto::{PublicKey, recover_public_key};
use hoplite_htlc::{
    Amount, BalanceChange, BalanceUpdate, BlockNumber, ChannelId, Lock, Secret, SecretHash,
    SendError, Side, Violation,
};
use hoplite_routing::{NodeId, Route, RouteParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// An invoice we made, and how far its payment got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IncomingInvoice {
    invoice: Invoice,
    state: InvoiceState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum InvoiceState {
    /// Waiting for a lock.
    Open,
    /// The payer revealed the secret of this lock; we claim it.
    Revealed(SecretHash),
}

impl IncomingInvoice {
    pub(crate) fn new(invoice: Invoice) -> Self {
        Self {
            invoice,
            state: InvoiceState::Open,
        }
    }

    /// The payer revealed the secret of the lock with `secret_hash`.
    pub(crate) fn revealed(&mut self, secret_hash: SecretHash) {
        self.state = InvoiceState::Revealed(secret_hash);
    }
}

/// Whom a payment goes to, and how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Target {
    payee: Address,
    amount: Amount,
    /// Seconds: the invoice's expiry (or, spontaneous, a day after it started).
    expires_at: u64,
    /// Spontaneous: the payee's public key, to encrypt each attempt's secret to.
    payee_key: Option<PublicKey>,
}

/// A payment we make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Payment {
    target: Target,
    pub(crate) deadline: Duration,
    attempts: Vec<Attempt>,
    /// Channels that failed this payment.
    excluded: BTreeSet<ChannelId>,
    state: PaymentState,
    last_failure: Option<(FailurePoint, FailureReason)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum PaymentState {
    /// Trying routes; no secret revealed.
    Routing,
    /// The payee has attempt `.0`'s secret; waiting for it to come back. (A payment that
    /// reached its outcome leaves the map: `Node::finished` remembers its id.)
    Revealed(usize),
}

impl Payment {
    pub(crate) fn is_pending(&self) -> bool {
        self.state == PaymentState::Routing
    }
}

/// One route tried, with its own secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Attempt {
    secret: Secret,
    route: Route,
    /// When the payee's lock expires: past it, revealing the secret could only let the hops
    /// before the payee claim from us.
    final_expiration: BlockNumber,
    /// Neither failed nor expired.
    live: bool,
}

/// A lock a partner sent us, and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReceivedLock {
    amount: Amount,
    role: ReceivedRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ReceivedRole {
    /// It pays our invoice `payment`; `payer` reveals the secret.
    Payee { payment: PaymentId, payer: Address },
    /// A spontaneous payment, `payment` being the payer's id: we hold its secret. Its ids are
    /// the payer's choice, kept apart from our invoices' (see [`keysend_id`]).
    Keysend { payment: PaymentId },
    /// We forwarded it, keeping `fee`.
    Mediated { fee: Amount },
    /// We refused it (failure sent back); it will expire.
    Refused,
}

/// A lock we sent, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentLock {
    role: SentRole,
    /// The lock's expiration: a secret learnt later claims nothing.
    pub(crate) expiration: BlockNumber,
    /// The receiver reported a failure further on.
    failed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum SentRole {
    /// Attempt `attempt` of our payment.
    Attempt { payment: PaymentId, attempt: usize },
    /// Forwarded from the lock with the same secret hash on `incoming`.
    Forward { incoming: ChannelId },
}

/// The id under which a received spontaneous payment is remembered as finished: apart from our
/// invoices' ids, so a payer that names an open invoice's id can neither close that invoice
/// nor be refused because of it.
fn keysend_id(payment: PaymentId) -> PaymentId {
    let mut input = [0u8; 39];
    input[..7].copy_from_slice(b"keysend");
    input[7..].copy_from_slice(payment.0.as_slice());
    PaymentId(alloy_primitives::keccak256(input))
}

fn amount_u128(amount: Amount) -> Option<u128> {
    u128::try_from(amount.to_u256()).ok()
}

impl Node {
    /// Pays `invoice`: routes, sends, and retries other routes on failure until
    /// `payment_timeout` or `max_attempts`. The outcome comes as [`Event::PaymentSent`] or
    /// [`Event::PaymentFailed`].
    pub fn pay(&mut self, now: Duration, invoice: &Invoice) -> Result<PaymentId, CommandError> {
        self.advance(now);
        invoice.check(self.config.token_network, now.as_secs())?;
        if invoice.payee == self.address {
            return Err(CommandError::OwnInvoice);
        }
        if self.state.payments.contains_key(&invoice.payment)
            || self.finished.contains_key(&invoice.payment)
        {
            return Err(CommandError::DuplicatePayment(invoice.payment));
        }
        let target = Target {
            payee: invoice.payee,
            amount: invoice.amount,
            expires_at: invoice.expires_at,
            payee_key: None,
        };
        self.start_payment(now, invoice.payment, target);
        Ok(invoice.payment)
    }

    /// Pays `amount` to `payee` without an invoice (keysend): we make the secret and send it
    /// encrypted to the payee, who claims at once. The payee's public key comes from its
    /// signed channel announcements. One route is tried: once the payee holds the secret, a
    /// retry could pay it twice, so the outcome waits for that attempt's lock.
    pub fn send_spontaneous(
        &mut self,
        now: Duration,
        payee: Address,
        amount: Amount,
    ) -> Result<PaymentId, CommandError> {
        self.advance(now);
        if payee == self.address {
            return Err(CommandError::OwnInvoice);
        }
        if amount.is_zero() {
            return Err(CommandError::Invoice(crate::InvoiceError::ZeroAmount));
        }
        let payee_key = self
            .public_key_of(payee)
            .ok_or(CommandError::UnknownPayee(payee))?;
        let id = PaymentId(self.random_word());
        let target = Target {
            payee,
            amount,
            expires_at: now.as_secs().saturating_add(24 * 3600),
            payee_key: Some(payee_key),
        };
        self.start_payment(now, id, target);
        Ok(id)
    }

    /// A node's public key, recovered from one of its policy announcements. Each accepted
    /// one gave the node a direction in the graph, so its directions there are where to look
    /// (not every channel of the network).
    fn public_key_of(&self, node: Address) -> Option<PublicKey> {
        let view = self.view.read();
        view.graph
            .directions_from(&NodeId(node))
            .find_map(|direction| {
                let update = view.gossip.latest(direction.channel, node)?;
                recover_public_key(&update.digest(), &update.signature).ok()
            })
    }

    fn start_payment(&mut self, now: Duration, id: PaymentId, target: Target) {
        self.state.payments.insert(
            id,
            Payment {
                target,
                deadline: now.saturating_add(self.config.payment_timeout),
                attempts: Vec::new(),
                excluded: BTreeSet::new(),
                state: PaymentState::Routing,
                last_failure: None,
            },
        );
        self.start_attempt(id);
        self.finish();
    }

    /// What routing the next attempt to pay `amount` (as `u128`: `wide`) to `payee` depends
    /// on, besides the view, with `excluded` (channels earlier attempts ruled out) and our own
    /// channels that can't send it now excluded.
    fn route_inputs(
        &mut self,
        payee: Address,
        amount: Amount,
        wide: u128,
        excluded: BTreeSet<ChannelId>,
    ) -> RouteInputs {
        let mut params = RouteParams::for_amount(wide);
        params.final_expiry_delta = self.config.final_expiry_delta;
        params.max_total_expiry = params.max_total_expiry.min(self.config.settle_timeout);
        params.excluded_channels = excluded;
        // Our own channels must be open and able to pay at least the amount now. A hub has
        // hundreds: their monitors are walked beside them (both are in id order), backlogged
        // partners are listed once rather than looked up for each, and which are open
        // on-chain is asked of the view only when its open set changed since the last payment
        // (`OwnOpenChannels`).
        let backlogged = self.backlogged_peers();
        let view = self.view.read();
        self.own_open.refresh(&view, self.channels.keys());
        let mut monitors = self.state.monitors.range(..).peekable();
        for (channel_id, channel) in &self.channels {
            let partner = channel.participant(Side::Partner).address();
            let monitor = loop {
                match monitors.peek() {
                    Some(&(id, _)) if id < channel_id => {
                        monitors.next();
                    }
                    Some(&(id, monitor)) if id == channel_id => break Some(monitor),
                    _ => break None,
                }
            };
            debug_assert_eq!(backlogged.contains(&partner), self.backlogged(partner));
            debug_assert_eq!(
                monitor.map(std::ptr::from_ref),
                self.state.monitors.get(channel_id).map(std::ptr::from_ref),
                "the walk found {channel_id:?}'s own monitor"
            );
            if channel.spendable(Side::Ours) < amount
                || self.is_closing_with(*channel_id, monitor)
                || backlogged.contains(&partner)
                || !self.own_open.is_open(&view, *channel_id)
            {
                params.excluded_channels.insert(*channel_id);
            }
        }
        RouteInputs {
            payer: NodeId(self.address),
            payee: NodeId(payee),
            amount: wide,
            params,
            instance: self.instance.clone(),
            now: self.now,
            scorer_generation: self.scorer.generation(),
        }
    }

    /// What this node would search to start paying `amount` to `payee` at `at` if nothing
    /// changed until then, for a search on another thread ([`crate::ahead`]); `None` if a
    /// payment of `amount` would not be routed at all. (`&mut`: asking refreshes what the
    /// node keeps of which of its channels are open, as a payment's own search does.)
    pub fn route_query(
        &mut self,
        at: Duration,
        payee: Address,
        amount: Amount,
    ) -> Option<RouteQuery> {
        let wide = amount_u128(amount)?;
        let mut inputs = self.route_inputs(payee, amount, wide, BTreeSet::new());
        let mut scorer = self.scorer.clone();
        // As `advance` will at `at`.
        inputs.now = self.now.max(at);
        scorer.time_passed(inputs.now);
        inputs.scorer_generation = scorer.generation();
        Some(RouteQuery::new(inputs, scorer, self.view.clone()))
    }

    /// Offers the next payment this node starts a route searched ahead. The payment takes it
    /// only if its own search would have exactly the same inputs, and searches itself
    /// otherwise, so the outcome is the same either way. Make it just before the command that
    /// starts the payment: the offer is dropped when a call ends (a command refused before it
    /// starts a payment leaves it to the next call, which compares it all the same).
    pub fn offer_route(&mut self, found: FoundRoute) {
        self.offered = Some(found);
    }

    /// How many payments took the route offered them ([`Self::offer_route`]).
    pub fn routes_taken(&self) -> u64 {
        self.routes_taken
    }

    /// Routes and sends the next attempt of a payment, or gives it up.
    fn start_attempt(&mut self, id: PaymentId) {
        loop {
            let Some(payment) = self.state.payments.get(&id) else {
                return;
            };
            if payment.state != PaymentState::Routing {
                return;
            }
            if self.now >= payment.deadline {
                return self.fail_payment(id, PaymentFailure::Timeout);
            }
            if payment.attempts.len() >= self.config.max_attempts {
                return self.fail_payment(id, PaymentFailure::AttemptsExhausted);
            }
            let target = payment.target;
            let Some(amount) = amount_u128(target.amount) else {
                return self.fail_payment(id, PaymentFailure::AmountTooLarge);
            };
            let excluded = payment.excluded.clone();
            let inputs = self.route_inputs(target.payee, target.amount, amount, excluded);
            let offered = self
                .offered
                .take()
                .and_then(|offer| offer.answer(&inputs, &self.view));
            if offered.is_some() {
                self.routes_taken += 1;
            }
            let found = offered.unwrap_or_else(|| {
                let i = &inputs;
                self.view
                    .find_route(&self.scorer, i.payer, i.payee, i.amount, &i.params)
            });
            let route = match found {
                Ok(route) => route,
                Err(error) => return self.fail_payment(id, PaymentFailure::NoRoute(error)),
            };
            let secret = Secret(self.random_word());
            let secret_hash = secret.hash();
            let block = self.block.0;
            let at = |expiry: u32| BlockNumber(block.saturating_add(u64::from(expiry)));
            let first = route.hops[0];
            let lock = Lock {
                amount: Amount::from(first.amount),
                expiration: at(first.expiry),
                secret_hash,
            };
            let hops = route.hops[1..]
                .iter()
                .map(|hop| OnwardHop {
                    channel: hop.direction.channel,
                    to: hop.to.0,
                    amount: Amount::from(hop.amount),
                    expiration: at(hop.expiry),
                })
                .collect();
            let channel_id = first.direction.channel;
            let keysend = match target.payee_key {
                Some(key) => match self.one_time_key() {
                    Some(ephemeral) => Keysend::seal(secret, &key, &ephemeral),
                    None => None,
                },
                None => None,
            };
            if target.payee_key.is_some() && keysend.is_none() {
                return self.fail_payment(id, PaymentFailure::AttemptsExhausted);
            }
            let onward = Onward {
                payment: id,
                payer: self.address,
                payee: target.payee,
                amount: target.amount,
                hops,
                keysend,
            };
            let change = BalanceChange::LockedTransfer { lock };
            if self
                .sign_and_send(channel_id, change, Some(onward))
                .is_err()
            {
                // Fees made it too much for this channel: try without it.
                let payment = self.state.payments.get_mut(&id).expect("checked above");
                payment.excluded.insert(channel_id);
                continue;
            }
            let payment = self.state.payments.get_mut(&id).expect("checked above");
            let attempt = payment.attempts.len();
            if keysend.is_some() {
                // The payee holds this attempt's secret: it is the only one.
                payment.state = PaymentState::Revealed(attempt);
            }
            payment.attempts.push(Attempt {
                secret,
                final_expiration: at(route.hops[route.hops.len() - 1].expiry),
                route,
                live: true,
            });
            self.state.sent.insert(
                (secret_hash, channel_id),
                SentLock {
                    role: SentRole::Attempt {
                        payment: id,
                        attempt,
                    },
                    expiration: lock.expiration,
                    failed: false,
                },
            );
            return;
        }
    }

    fn fail_payment(&mut self, id: PaymentId, reason: PaymentFailure) {
        if let Some(payment) = self.finish_payment(id) {
            self.event(Event::PaymentFailed {
                payment: id,
                reason,
                last_failure: payment.last_failure,
                attempts: payment.attempts.len(),
            });
        }
    }

    /// Forgets a payment that reached its outcome, remembering only its id until its invoice
    /// expires (so it is not paid twice). Its attempts' secrets are never revealed after this,
    /// and their locks, if any are still pending, just expire.
    fn finish_payment(&mut self, id: PaymentId) -> Option<Payment> {
        let payment = self.state.payments.remove(&id)?;
        self.finish_id(id, payment.target.expires_at);
        Some(payment)
    }

    fn finish_id(&mut self, payment: PaymentId, expires_at: u64) {
        self.finished.insert(payment, expires_at);
        self.records.push(Record::Finished {
            payment,
            expires_at,
        });
    }

    /// Forgets finished ids past their invoice's expiry and invoices never paid that expired
    /// (restore drops them too: they are persisted as their own records).
    pub(crate) fn forget_expired(&mut self) {
        let now = self.now.as_secs();
        self.finished.retain(|_, expires_at| *expires_at >= now);
        let received = &self.state.received;
        self.invoices.retain(|id, invoice| {
            invoice.invoice.expires_at >= now
                || received.values().any(
                    |r| matches!(r.role, ReceivedRole::Payee { payment, .. } if payment == *id),
                )
        });
    }

    /// Forgets secrets no pending lock of ours uses any more.
    pub(crate) fn forget_unused_secrets(&mut self) {
        let mut secrets = std::mem::take(&mut self.state.secrets);
        secrets.retain(|hash, _| self.has_lock_on(hash));
        self.state.secrets = secrets;
    }

    /// A fresh key for one keysend attempt.
    fn one_time_key(&mut self) -> Option<hoplite_htlc::PrivateKey> {
        hoplite_htlc::PrivateKey::from_bytes(&self.random_word()).ok()
    }

    /// An attempt failed (a failure came back, or its lock expired).
    fn attempt_failed(
        &mut self,
        id: PaymentId,
        attempt: usize,
        failure: Option<(FailurePoint, FailureReason)>,
    ) {
        let now = self.now;
        let Some(payment) = self.state.payments.get_mut(&id) else {
            return;
        };
        let Some(tried) = payment.attempts.get_mut(attempt) else {
            return;
        };
        if !tried.live {
            return;
        }
        let revealed = matches!(payment.state, PaymentState::Revealed(r) if r == attempt);
        if !(revealed && failure.is_some()) {
            tried.live = false;
        }
        if failure.is_some() {
            payment.last_failure = failure;
        }
        if let Some(channel) = failure.and_then(|(at, _)| at.channel) {
            if let Some(failed) = tried
                .route
                .hops
                .iter()
                .position(|hop| hop.direction.channel == channel)
            {
                self.scorer.report_failure(&tried.route.hops, failed, now);
            }
            payment.excluded.insert(channel);
        }
        match payment.state {
            PaymentState::Routing => self.start_attempt(id),
            // A spontaneous payment's failure notice could be a lie by a hop that forwarded
            // anyway: only the lock's return settles it.
            PaymentState::Revealed(_) if failure.is_some() => {}
            PaymentState::Revealed(revealed) if revealed == attempt => {
                self.fail_payment(id, PaymentFailure::Expired)
            }
            _ => {}
        }
    }

    /// Gives up payments past their deadline; their secrets are never revealed.
    pub(crate) fn expire_payments(&mut self) {
        let due: Vec<PaymentId> = self
            .state
            .payments
            .iter()
            .filter(|(_, p)| p.state == PaymentState::Routing && self.now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fail_payment(id, PaymentFailure::Timeout);
        }
    }

    /// A partner's balance update for one of our channels.
    pub(crate) fn handle_update(
        &mut self,
        from: Address,
        update: &BalanceUpdate,
        onward: Option<Onward>,
    ) -> Result<(), PeerError> {
        let id = update.proof.proof.channel_id;
        let channel = self
            .channels
            .get(&id)
            .ok_or(PeerError::UnknownChannel(id))?;
        if channel.participant(Side::Partner).address() != from {
            return Err(PeerError::NotPartner { channel: id, from });
        }
        // A closed channel's off-chain state is frozen: what is on-chain now decides.
        if self
            .view
            .read()
            .onchain
            .get(&id)
            .is_none_or(|c| c.phase != hoplite_chain::events::Phase::Opened)
        {
            return Err(PeerError::ChannelClosed(id));
        }
        // A resend of what we hold is answered as usual; nothing newer applies while closing
        // (cooperatively: we may have signed the final balances; unilaterally: we close with
        // the partner's proof we hold now).
        if self.is_closing(id)
            && update.proof.proof.nonce > channel.participant(Side::Partner).nonce()
        {
            return Err(PeerError::ChannelClosing(id));
        }
        // The channel's rules only know the block; the registry decides whether a lock to us
        // was claimed (the sender is the authenticated partner: it claims the lock back). A
        // lock we refused (its failure sent back) we let go.
        if let BalanceChange::LockExpired { secret_hash } = update.change
            && let Some(lock) = channel.participant(Side::Partner).locks().get(&secret_hash)
            && self.claimed_onchain(&secret_hash, lock.expiration)
            && !self.refused(secret_hash, id)
        {
            self.request_close(id);
            return Err(PeerError::LockClaimed(secret_hash));
        }
        let channel = self.channels.get_mut(&id).expect("found above");
        if let Err(error) = channel.handle_update(update, self.block) {
            if error.action() == hoplite_htlc::ErrorAction::CloseChannel {
                self.event(Event::ChannelBroken { channel: id, error });
                self.request_close(id);
            }
            return Err(error.into());
        }
        self.touch(id);
        match update.change {
            BalanceChange::DirectTransfer { amount } => {
                self.event(Event::DirectTransferReceived {
                    channel: id,
                    amount,
                });
            }
            BalanceChange::LockedTransfer { lock } => {
                // `Envelope::decode` guarantees the routing data of a new lock.
                if let Some(onward) = onward {
                    self.handle_new_lock(id, from, lock, onward);
                }
            }
            BalanceChange::Unlock { secret } => self.handle_unlocked(id, secret.hash()),
            BalanceChange::LockExpired { secret_hash } => {
                self.state.received.remove(&(secret_hash, id));
            }
        }
        Ok(())
    }

    /// A lock a partner sent us: pay us, or forward it, or fail it back.
    fn handle_new_lock(&mut self, channel: ChannelId, from: Address, lock: Lock, onward: Onward) {
        let secret_hash = lock.secret_hash;
        // The channel accepts a lock its sender made before our view of the chain moved on;
        // one we could not claim on-chain in time we neither forward nor claim. One whose
        // secret is public already (its payer registered it first) we neither forward nor
        // claim either: anyone could claim a lock we forwarded on it, and we would have to
        // close to claim this one.
        let claimable = self.claimable_in_time(lock.expiration);
        let outcome = if !claimable {
            Err((FailureReason::ExpiryTooSoon, None))
        } else if self.view.read().revealed.contains_key(&secret_hash) {
            Err((FailureReason::SecretPublic, None))
        } else if onward.hops.is_empty() {
            self.accept_as_payee(&lock, &onward)
                .map_err(|reason| (reason, None))
        } else {
            self.forward(channel, &lock, &onward)
        };
        let role = match outcome {
            Ok(role) => role,
            Err((reason, failed_channel)) => {
                let at = FailurePoint {
                    node: self.address,
                    channel: failed_channel,
                };
                self.send(
                    from,
                    Message::Failure {
                        secret_hash,
                        at,
                        reason,
                    },
                );
                ReceivedRole::Refused
            }
        };
        match role {
            // Spontaneous: we hold the secret already; claim from the lock's sender.
            ReceivedRole::Keysend { .. } => {
                if let Some(secret) = onward.keysend.and_then(|k| k.open(&self.key)) {
                    self.state.secrets.insert(secret_hash, secret);
                    self.send(from, Message::RevealSecret { secret });
                }
            }
            ReceivedRole::Payee { payment, payer } => self.send(
                payer,
                Message::SecretRequest {
                    payment,
                    secret_hash,
                    amount: lock.amount,
                },
            ),
            ReceivedRole::Mediated { .. } | ReceivedRole::Refused => {}
        }
        self.state.received.insert(
            (secret_hash, channel),
            ReceivedLock {
                amount: lock.amount,
                role,
            },
        );
    }

    fn accept_as_payee(&self, lock: &Lock, onward: &Onward) -> Result<ReceivedRole, FailureReason> {
        if onward.payee != self.address {
            return Err(FailureReason::UnknownPayment);
        }
        if let Some(keysend) = &onward.keysend {
            // A spontaneous payment: the secret must open, match the lock, and pay enough,
            // once.
            let secret = keysend
                .open(&self.key)
                .ok_or(FailureReason::UnknownPayment)?;
            let taken = self.finished.contains_key(&keysend_id(onward.payment))
                || self.state.received.values().any(|r| {
                    matches!(r.role, ReceivedRole::Keysend { payment } if payment == onward.payment)
                });
            if secret.hash() != lock.secret_hash || taken {
                return Err(FailureReason::UnknownPayment);
            }
            if lock.amount < onward.amount {
                return Err(FailureReason::AmountTooLow);
            }
            return Ok(ReceivedRole::Keysend {
                payment: onward.payment,
            });
        }
        let invoice = self
            .invoices
            .get(&onward.payment)
            .filter(|i| i.state == InvoiceState::Open)
            .filter(|i| self.now.as_secs() <= i.invoice.expires_at)
            .ok_or(FailureReason::UnknownPayment)?;
        if lock.amount < invoice.invoice.amount {
            return Err(FailureReason::AmountTooLow);
        }
        Ok(ReceivedRole::Payee {
            payment: onward.payment,
            payer: onward.payer,
        })
    }

    /// Forwards a lock along `onward`'s next hop if our policy and the channel allow it.
    fn forward(
        &mut self,
        incoming: ChannelId,
        lock: &Lock,
        onward: &Onward,
    ) -> Result<ReceivedRole, (FailureReason, Option<ChannelId>)> {
        let hop = onward.hops[0];
        let out = hop.channel;
        let fail = |reason| (reason, Some(out));
        match self.partner_of(out) {
            Ok(partner) if partner == hop.to && out != incoming => {}
            _ => return Err(fail(FailureReason::UnknownNextChannel)),
        }
        let policy = self.config.policy;
        let amount = amount_u128(hop.amount).ok_or(fail(FailureReason::PolicyViolation))?;
        if !policy.enabled || amount < policy.min_lock || amount > policy.max_lock {
            return Err(fail(FailureReason::PolicyViolation));
        }
        let fee = policy
            .fee(amount)
            .ok_or(fail(FailureReason::PolicyViolation))?;
        let needed = hop
            .amount
            .checked_add(Amount::from(fee))
            .ok_or(fail(FailureReason::PolicyViolation))?;
        if lock.amount < needed {
            return Err(fail(FailureReason::FeeInsufficient));
        }
        let latest_out = lock
            .expiration
            .0
            .checked_sub(u64::from(policy.expiry_delta));
        if latest_out.is_none_or(|latest| hop.expiration.0 > latest) {
            return Err(fail(FailureReason::ExpiryTooSoon));
        }
        let next = Lock {
            amount: hop.amount,
            expiration: hop.expiration,
            secret_hash: lock.secret_hash,
        };
        let onward = Onward {
            hops: onward.hops[1..].to_vec(),
            ..onward.clone()
        };
        let change = BalanceChange::LockedTransfer { lock: next };
        self.sign_and_send(out, change, Some(onward))
            .map_err(|error| match error {
                CommandError::Channel(SendError::Rule(Violation::InsufficientBalance {
                    ..
                })) => fail(FailureReason::InsufficientCapacity),
                _ => fail(FailureReason::ChannelRefused),
            })?;
        self.state.sent.insert(
            (lock.secret_hash, out),
            SentLock {
                role: SentRole::Forward { incoming },
                expiration: next.expiration,
                failed: false,
            },
        );
        let kept = lock.amount.checked_sub(hop.amount).unwrap_or(Amount::ZERO);
        Ok(ReceivedRole::Mediated { fee: kept })
    }

    /// The sender of a lock to us unlocked it: we were paid.
    pub(crate) fn handle_unlocked(&mut self, channel: ChannelId, secret_hash: SecretHash) {
        let Some(received) = self.state.received.remove(&(secret_hash, channel)) else {
            return;
        };
        match received.role {
            ReceivedRole::Payee { payment, .. } => {
                // Paid: the id alone refuses another payment of it until it expires.
                let expires_at = self
                    .invoices
                    .remove(&payment)
                    .map_or_else(|| self.now.as_secs(), |paid| paid.invoice.expires_at);
                self.finish_id(payment, expires_at);
                self.event(Event::PaymentReceived {
                    payment,
                    amount: received.amount,
                    invoice: true,
                });
            }
            ReceivedRole::Keysend { payment } => {
                // Refused again for a day.
                let expires_at = self.now.as_secs().saturating_add(24 * 3600);
                self.finish_id(keysend_id(payment), expires_at);
                self.event(Event::PaymentReceived {
                    payment,
                    amount: received.amount,
                    invoice: false,
                });
            }
            ReceivedRole::Mediated { fee, .. } => {
                self.event(Event::Forwarded { channel, fee });
            }
            ReceivedRole::Refused => {}
        }
    }

    /// The payee asks us, the payer, for an attempt's secret.
    pub(crate) fn handle_secret_request(
        &mut self,
        from: Address,
        id: PaymentId,
        secret_hash: SecretHash,
        amount: Amount,
    ) -> Result<(), PeerError> {
        let unsolicited = PeerError::Unsolicited("secret request");
        let payment = self
            .state
            .payments
            .get(&id)
            .filter(|p| p.target.payee == from && p.target.payee_key.is_none())
            .ok_or(unsolicited.clone())?;
        let attempt = payment
            .attempts
            .iter()
            .position(|a| a.secret.hash() == secret_hash)
            .ok_or(unsolicited.clone())?;
        // The payee must still be able to claim its lock on-chain with the secret.
        let claimable = self.claimable_in_time(payment.attempts[attempt].final_expiration);
        let payment = self.state.payments.get_mut(&id).expect("found above");
        match payment.state {
            PaymentState::Routing
                if payment.attempts[attempt].live
                    && claimable
                    && amount >= payment.target.amount =>
            {
                // The one secret we ever reveal for this payment.
                payment.state = PaymentState::Revealed(attempt);
            }
            // A resend of the request we answered.
            PaymentState::Revealed(revealed) if revealed == attempt => {}
            _ => return Err(unsolicited),
        }
        let secret = payment.attempts[attempt].secret;
        self.send(from, Message::RevealSecret { secret });
        Ok(())
    }

    /// A secret, from the payer (we are the payee) or from a lock's receiver (we unlock).
    pub(crate) fn handle_reveal(&mut self, from: Address, secret: Secret) -> Result<(), PeerError> {
        let secret_hash = secret.hash();
        let mut matched = false;

        // As the payee: the payer revealed it; claim from the lock's sender, but only while we
        // could still claim the lock on-chain in time (the rule the payer revealed by). Later,
        // the sender could unlock after our channel closed with the lock pending, and neither
        // an off-chain nor an on-chain claim would pay us: the payer would count the payment
        // made and we would not be paid. Declining leaves the lock to expire: it fails whole.
        let payee_locks: Vec<(ChannelId, PaymentId)> = self
            .state
            .received
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter_map(|((_, channel), received)| match received.role {
                ReceivedRole::Payee { payment, payer } if payer == from => {
                    Some((*channel, payment))
                }
                _ => None,
            })
            .filter(|(channel, _)| {
                self.channels
                    .get(channel)
                    .and_then(|c| c.participant(Side::Partner).locks().get(&secret_hash))
                    .is_some_and(|lock| self.claimable_in_time(lock.expiration))
            })
            .collect();
        for (channel, payment) in payee_locks {
            matched = true;
            self.state.secrets.insert(secret_hash, secret);
            if let Some(invoice) = self.invoices.get_mut(&payment)
                && invoice.state == InvoiceState::Open
            {
                invoice.revealed(secret_hash);
                self.records.push(Record::InvoiceRevealed {
                    payment,
                    secret_hash,
                });
            }
            // Closed (or closing): the duties register the secret, the lock is claimed on-chain.
            if let Ok(sender) = self.partner_of(channel) {
                self.send(sender, Message::RevealSecret { secret });
            }
        }

        // As a lock's sender: its receiver knows the secret, so we owe it (unless the lock
        // expired: then it can't claim it on-chain either); unlock.
        let owed: Vec<(ChannelId, SentLock)> = self
            .state
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .filter(|((_, channel), sent)| {
                self.partner_of(*channel) == Ok(from) && self.block <= sent.expiration
            })
            .map(|((_, channel), sent)| (*channel, *sent))
            .collect();
        for (channel, sent) in owed {
            matched = true;
            self.state.secrets.insert(secret_hash, secret);
            // An error means it was already unlocked or expired: nothing is owed any more.
            let _ = self.sign_and_send(channel, BalanceChange::Unlock { secret }, None);
            self.state.sent.remove(&(secret_hash, channel));
            self.sent_lock_claimed(sent, secret);
        }
        if !matched {
            return Err(PeerError::Unsolicited("secret"));
        }
        // A lock to us this secret claims may be too close to its expiration to wait for the
        // partner's unlock: the duties at the end of this call register it.
        Ok(())
    }

    /// Whether we refused the lock to us on `secret_hash` in `channel` (sent its failure back).
    pub(crate) fn refused(&self, secret_hash: SecretHash, channel: ChannelId) -> bool {
        self.state
            .received
            .get(&(secret_hash, channel))
            .is_none_or(|r| r.role == ReceivedRole::Refused)
    }

    /// A lock we sent returned to us unclaimed.
    pub(crate) fn sent_lock_expired(&mut self, sent: SentLock) {
        if let SentRole::Attempt { payment, attempt } = sent.role {
            self.attempt_failed(payment, attempt, None);
        }
    }

    /// A lock we sent is paid (its receiver knows the secret): claim what it was for.
    pub(crate) fn sent_lock_claimed(&mut self, sent: SentLock, secret: Secret) {
        match sent.role {
            SentRole::Forward { incoming } => {
                // The upstream channel closed: the duties register the secret, our claim on its
                // lock is on-chain.
                self.state.secrets.insert(secret.hash(), secret);
                if let Ok(upstream) = self.partner_of(incoming) {
                    self.send(upstream, Message::RevealSecret { secret });
                }
            }
            SentRole::Attempt { payment, attempt } => self.payment_succeeded(payment, attempt),
        }
    }

    fn payment_succeeded(&mut self, id: PaymentId, attempt: usize) {
        let now = self.now;
        let Some(payment) = self.finish_payment(id) else {
            return;
        };
        let route = &payment.attempts[attempt].route;
        self.scorer.report_success(&route.hops, now);
        let event = Event::PaymentSent {
            payment: id,
            amount: payment.target.amount,
            fee: Amount::from(route.fee),
            route: route.hops.iter().map(|hop| hop.to.0).collect(),
            attempts: payment.attempts.len(),
        };
        self.event(event);
    }

    /// The receiver of a lock we sent says the payment failed further on.
    pub(crate) fn handle_failure(
        &mut self,
        from: Address,
        secret_hash: SecretHash,
        at: FailurePoint,
        reason: FailureReason,
    ) -> Result<(), PeerError> {
        let found = self
            .state
            .sent
            .range((secret_hash, ChannelId::default())..)
            .take_while(|((hash, _), _)| *hash == secret_hash)
            .find(|((_, channel), sent)| {
                !sent.failed
                    && self
                        .channels
                        .get(channel)
                        .is_some_and(|c| c.participant(Side::Partner).address() == from)
            })
            .map(|(key, _)| *key);
        let Some(sent) = found.and_then(|key| self.state.sent.get_mut(&key)) else {
            return Err(PeerError::Unsolicited("failure"));
        };
        sent.failed = true;
        match sent.role {
            SentRole::Forward { incoming } => {
                if let Some(received) = self.state.received.get_mut(&(secret_hash, incoming)) {
                    received.role = ReceivedRole::Refused;
                }
                if let Ok(upstream) = self.partner_of(incoming) {
                    self.send(
                        upstream,
                        Message::Failure {
                            secret_hash,
                            at,
                            reason,
                        },
                    );
                }
            }
            SentRole::Attempt { payment, attempt } => {
                self.attempt_failed(payment, attempt, Some((at, reason)));
            }
        }
        Ok(())
    }

    /// Removes our locks past their expiration that the chain does not show claimed: by the
    /// contract's rule they are ours again, whatever secret we learnt late off-chain.
    pub(crate) fn expire_locks(&mut self) {
        let block = self.block;
        let mut expired: Vec<(ChannelId, SecretHash)> = Vec::new();
        for (id, channel) in &self.channels {
            for lock in channel.participant(Side::Ours).locks().iter() {
                if block > lock.expiration
                    && !self.claimed_onchain(&lock.secret_hash, lock.expiration)
                {
                    expired.push((*id, lock.secret_hash));
                }
            }
        }
        for (channel, secret_hash) in expired {
            let change = BalanceChange::LockExpired { secret_hash };
            if self.sign_and_send(channel, change, None).is_err() {
                continue;
            }
            if let Some(sent) = self.state.sent.remove(&(secret_hash, channel)) {
                self.sent_lock_expired(sent);
            }
        }
    }
}

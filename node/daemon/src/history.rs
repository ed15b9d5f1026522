//! The API's record of payments (sent and received) and of the invoices we made: what the
//! node's commands and events said of each, kept in the store so a restarted daemon lists
//! them again. The newest [`HISTORY_KEPT`] of each kind (sent, received, invoices) are kept.
//!
//! This is the operator's view, not the node's state: the node keeps what it needs to finish
//! a payment in its own records; losing a line here loses no funds.

use crate::store::{HISTORY_KEPT, HistoryKind};
use alloy_primitives::Address;
use hoplite_htlc::Amount;
use hoplite_node::{Invoice, PaymentId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use utoipa::ToSchema;

/// Which way a payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We paid.
    Sent,
    /// We were paid.
    Received,
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Under way.
    Pending,
    /// The payee has it.
    Succeeded,
    /// It will not be made.
    Failed,
}

/// A payment as the API shows it (amounts as decimal strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    /// The payment id (the invoice's, or the payer's for a payment without one).
    #[schema(value_type = String)]
    pub id: PaymentId,
    /// Which way.
    pub direction: Direction,
    /// Where it stands.
    pub status: Status,
    /// Who is paid (ourselves for a received payment).
    #[schema(value_type = String)]
    pub payee: Address,
    /// What the payee receives.
    pub amount: String,
    /// What the payer paid on top, once sent.
    pub fee: Option<String>,
    /// The nodes it went through, payee last, once sent.
    #[schema(value_type = Vec<String>)]
    pub route: Vec<Address>,
    /// Routes tried.
    pub attempts: usize,
    /// Why it failed, and where the last attempt failed.
    pub failure: Option<String>,
    /// Whether it pays an invoice.
    pub invoice: bool,
    /// The client's key for a payment without an invoice: the same key pays once.
    pub idempotency_key: Option<String>,
    /// When it started (seconds since the epoch).
    pub created_at: u64,
    /// When it ended.
    pub finished_at: Option<u64>,
}

/// An invoice we made, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvoiceEntry {
    /// Its payment id.
    #[schema(value_type = String)]
    pub id: PaymentId,
    /// Its text form, to hand to the payer.
    pub invoice: String,
    /// What it asks for.
    pub amount: String,
    /// When it was made.
    pub created_at: u64,
    /// When it stops being payable.
    pub expires_at: u64,
    /// When it was paid.
    pub paid_at: Option<u64>,
}

impl InvoiceEntry {
    /// `open`, `paid` or `expired` at `now` (seconds).
    pub fn status(&self, now: u64) -> &'static str {
        match self.paid_at {
            Some(_) => "paid",
            None if now > self.expires_at => "expired",
            None => "open",
        }
    }
}

/// A change to keep: the record's newest state.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: HistoryKind,
    pub id: String,
    /// The record as JSON.
    pub body: String,
    /// New to the list (it goes after every other one), not an update of one it holds (which
    /// keeps its place). An id that was dropped as the oldest and comes again is new: the
    /// store must then move its row too, or trim it as the oldest.
    pub new: bool,
}

/// Up to [`HISTORY_KEPT`] records by key, the oldest dropped first.
struct Kept<T, K = PaymentId> {
    items: BTreeMap<K, T>,
    order: VecDeque<K>,
}

impl<T, K> Default for Kept<T, K> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T, K: Ord + Copy> Kept<T, K> {
    /// Inserts or replaces; a new one may push the oldest out (returned).
    fn put(&mut self, id: K, item: T) -> Option<T> {
        if self.items.insert(id, item).is_some() {
            return None;
        }
        self.order.push_back(id);
        if self.order.len() > HISTORY_KEPT {
            let oldest = self.order.pop_front()?;
            return self.items.remove(&oldest);
        }
        None
    }

    /// Newest first, at most `limit`.
    fn newest(&self, limit: usize) -> impl Iterator<Item = &T> {
        self.order
            .iter()
            .rev()
            .take(limit)
            .filter_map(|id| self.items.get(id))
    }
}

/// Payments and invoices, for the API. Payments sent and received are kept apart, each
/// bounded on its own: a received payment's id is the payer's choice, so it can neither
/// stand for one of ours nor push ours (and their idempotency keys) out.
#[derive(Default)]
pub struct History {
    sent: Kept<Payment>,
    /// By id and whether it paid our invoice: a payer may name a spontaneous payment after
    /// an invoice of ours, and that must not replace the invoice's.
    received: Kept<Payment, (PaymentId, bool)>,
    invoices: Kept<InvoiceEntry>,
    /// Idempotency keys of the payments sent that are kept.
    keys: BTreeMap<String, PaymentId>,
}

impl History {
    /// What the store kept (oldest first); rows that do not parse are skipped.
    pub fn new(stored: Vec<(HistoryKind, String)>) -> Self {
        let mut history = Self::default();
        for (kind, body) in stored {
            match kind {
                HistoryKind::Sent | HistoryKind::Received => {
                    if let Ok(payment) = serde_json::from_str::<Payment>(&body) {
                        history.put_payment(payment);
                    }
                }
                HistoryKind::Invoice => {
                    if let Ok(invoice) = serde_json::from_str::<InvoiceEntry>(&body) {
                        history.invoices.put(invoice.id, invoice);
                    }
                }
            }
        }
        history
    }

    /// A payment of ours by id: the one we sent, else one we received (for an invoice of
    /// ours first).
    pub fn payment(&self, id: &PaymentId) -> Option<&Payment> {
        self.sent
            .items
            .get(id)
            .or_else(|| self.received.items.get(&(*id, true)))
            .or_else(|| self.received.items.get(&(*id, false)))
    }

    /// The payment started with an idempotency key.
    pub fn payment_with_key(&self, key: &str) -> Option<&Payment> {
        self.keys.get(key).and_then(|id| self.sent.items.get(id))
    }

    /// The newest payments, sent and received, newest first.
    pub fn payments(&self, limit: usize) -> Vec<&Payment> {
        let mut sent = self.sent.newest(limit).peekable();
        let mut received = self.received.newest(limit).peekable();
        let mut out = Vec::with_capacity(limit.min(64));
        while out.len() < limit {
            let next = match (sent.peek(), received.peek()) {
                (Some(s), Some(r)) if r.created_at > s.created_at => received.next(),
                (Some(_), _) => sent.next(),
                (None, _) => received.next(),
            };
            match next {
                Some(payment) => out.push(payment),
                None => break,
            }
        }
        out
    }

    /// An invoice of ours, by payment id.
    pub fn invoice(&self, id: &PaymentId) -> Option<&InvoiceEntry> {
        self.invoices.items.get(id)
    }

    /// The newest invoices, newest first.
    pub fn invoices(&self, limit: usize) -> impl Iterator<Item = &InvoiceEntry> {
        self.invoices.newest(limit)
    }

    /// We started paying `amount` to `payee`.
    pub fn started(
        &mut self,
        id: PaymentId,
        payee: Address,
        amount: Amount,
        invoice: bool,
        idempotency_key: Option<String>,
        now: u64,
    ) -> Change {
        self.put_payment(Payment {
            id,
            direction: Direction::Sent,
            status: Status::Pending,
            payee,
            amount: amount.to_string(),
            fee: None,
            route: Vec::new(),
            attempts: 0,
            failure: None,
            invoice,
            idempotency_key,
            created_at: now,
            finished_at: None,
        })
    }

    /// Our payment arrived.
    pub fn sent(
        &mut self,
        id: PaymentId,
        fee: Amount,
        route: Vec<Address>,
        attempts: usize,
        now: u64,
    ) -> Option<Change> {
        let payment = self.sent.items.get_mut(&id)?;
        payment.status = Status::Succeeded;
        payment.fee = Some(fee.to_string());
        payment.route = route;
        payment.attempts = attempts;
        payment.finished_at = Some(now);
        Some(payment_change(payment, false))
    }

    /// Our payment will not be made.
    pub fn failed(
        &mut self,
        id: PaymentId,
        failure: String,
        attempts: usize,
        now: u64,
    ) -> Option<Change> {
        let payment = self.sent.items.get_mut(&id)?;
        payment.status = Status::Failed;
        payment.failure = Some(failure);
        payment.attempts = attempts;
        payment.finished_at = Some(now);
        Some(payment_change(payment, false))
    }

    /// We were paid `amount` for `id`: our invoice `id` if `invoice` (which is then paid),
    /// else a spontaneous payment the payer named `id`.
    pub fn received(
        &mut self,
        id: PaymentId,
        invoice: bool,
        us: Address,
        amount: Amount,
        now: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        if invoice && let Some(entry) = self.invoices.items.get_mut(&id) {
            entry.paid_at = Some(now);
            changes.push(invoice_change(entry, false));
        }
        changes.push(self.put_payment(Payment {
            id,
            direction: Direction::Received,
            status: Status::Succeeded,
            payee: us,
            amount: amount.to_string(),
            fee: None,
            route: Vec::new(),
            attempts: 1,
            failure: None,
            invoice,
            idempotency_key: None,
            created_at: now,
            finished_at: Some(now),
        }));
        changes
    }

    /// We made `invoice`.
    pub fn invoice_made(&mut self, invoice: &Invoice, now: u64) -> Change {
        let entry = InvoiceEntry {
            id: invoice.payment,
            invoice: invoice.to_string(),
            amount: invoice.amount.to_string(),
            created_at: now,
            expires_at: invoice.expires_at,
            paid_at: None,
        };
        let change = invoice_change(&entry, !self.invoices.items.contains_key(&entry.id));
        self.invoices.put(entry.id, entry);
        change
    }

    fn put_payment(&mut self, payment: Payment) -> Change {
        if payment.direction == Direction::Received {
            let key = (payment.id, payment.invoice);
            let change = payment_change(&payment, !self.received.items.contains_key(&key));
            self.received.put(key, payment);
            return change;
        }
        let change = payment_change(&payment, !self.sent.items.contains_key(&payment.id));
        if let Some(key) = &payment.idempotency_key {
            self.keys.insert(key.clone(), payment.id);
        }
        if let Some(dropped) = self.sent.put(payment.id, payment)
            && let Some(key) = dropped.idempotency_key
        {
            self.keys.remove(&key);
        }
        change
    }
}

fn payment_change(payment: &Payment, new: bool) -> Change {
    let body = serde_json::to_string(payment).expect("a payment serializes");
    let (kind, id) = match payment.direction {
        Direction::Sent => (HistoryKind::Sent, format!("{}", payment.id.0)),
        // Received ones are kept by id and whether they paid our invoice (see `History`).
        Direction::Received => (
            HistoryKind::Received,
            format!("{}:{}", payment.id.0, payment.invoice),
        ),
    };
    Change {
        kind,
        id,
        body,
        new,
    }
}

fn invoice_change(invoice: &InvoiceEntry, new: bool) -> Change {
    let body = serde_json::to_string(invoice).expect("an invoice serializes");
    Change {
        kind: HistoryKind::Invoice,
        id: format!("{}", invoice.id.0),
        body,
        new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    #[test]
    fn a_spontaneous_payment_named_like_an_invoice_pays_no_invoice_and_no_payment_of_ours() {
        let mut history = History::default();
        let key = hoplite_htlc::PrivateKey::from_bytes(&B256::repeat_byte(7)).unwrap();
        let domain = hoplite_htlc::TokenNetwork {
            chain_id: 1,
            address: Address::repeat_byte(1),
        };
        let invoice = Invoice::sign(&key, domain, id(3), Amount::from(100u64), 1_000);
        history.invoice_made(&invoice, 10);
        history.started(
            id(4),
            Address::ZERO,
            Amount::from(9u64),
            false,
            Some("k".into()),
            10,
        );
        // A payer names our invoice's id, and our own payment's.
        history.received(id(3), false, key.address(), Amount::from(1u64), 11);
        history.received(id(4), false, key.address(), Amount::from(1u64), 12);
        assert_eq!(history.invoice(&id(3)).unwrap().paid_at, None, "still open");
        let ours = history.payment_with_key("k").unwrap();
        assert_eq!(
            (ours.direction, ours.status),
            (Direction::Sent, Status::Pending)
        );
        assert_eq!(history.payment(&id(4)).unwrap().direction, Direction::Sent);
        assert_eq!(history.payments(10).len(), 3);
        history.received(id(3), true, key.address(), Amount::from(100u64), 13);
        assert_eq!(history.invoice(&id(3)).unwrap().paid_at, Some(13));
        // Once paid, a spontaneous payment named after it leaves the invoice's record be.
        history.received(id(3), false, key.address(), Amount::from(1u64), 14);
        let paid = history.payment(&id(3)).unwrap();
        assert_eq!((paid.amount.as_str(), paid.invoice), ("100", true));
    }

    fn id(n: u8) -> PaymentId {
        PaymentId(B256::repeat_byte(n))
    }

    #[test]
    fn a_payment_goes_from_pending_to_its_outcome_and_survives_a_reload() {
        let mut history = History::default();
        let payee = Address::repeat_byte(2);
        let mut changes = vec![history.started(
            id(1),
            payee,
            Amount::from(50u64),
            false,
            Some("k1".into()),
            10,
        )];
        changes.push(history.started(id(2), payee, Amount::from(60u64), true, None, 11));
        changes.extend(history.sent(id(1), Amount::from(2u64), vec![payee], 1, 12));
        changes.extend(history.failed(id(2), "NoRoute".into(), 3, 13));
        assert!(
            history
                .sent(id(9), Amount::ZERO, Vec::new(), 1, 14)
                .is_none()
        );
        let new: Vec<bool> = changes.iter().map(|c| c.new).collect();
        assert_eq!(new, [true, true, false, false], "two started, then updated");
        let reloaded = History::new(changes.into_iter().map(|c| (c.kind, c.body)).collect());
        let first = reloaded.payment_with_key("k1").expect("kept by key");
        assert_eq!(
            (first.status, first.fee.as_deref()),
            (Status::Succeeded, Some("2"))
        );
        let second = reloaded.payment(&id(2)).unwrap();
        assert_eq!((second.status, second.attempts), (Status::Failed, 3));
        let order: Vec<_> = reloaded.payments(10).iter().map(|p| p.id).collect();
        assert_eq!(order, [id(2), id(1)], "newest first");
    }

    #[test]
    fn the_oldest_go_first_past_the_bound() {
        let mut history = History::default();
        for n in 0..=HISTORY_KEPT {
            let mut word = B256::ZERO;
            word.0[..8].copy_from_slice(&(n as u64).to_be_bytes());
            let key = (n == 0).then(|| "first".to_string());
            history.started(
                PaymentId(word),
                Address::ZERO,
                Amount::from(1u64),
                false,
                key,
                0,
            );
        }
        assert_eq!(history.payments(usize::MAX).len(), HISTORY_KEPT);
        assert!(history.payment(&PaymentId(B256::ZERO)).is_none());
        assert!(
            history.payment_with_key("first").is_none(),
            "its key went with it"
        );
    }

    /// A payer names its payments: an id received again is an update while the list holds
    /// it, and new once it was dropped (the store moves its row last then).
    #[test]
    fn a_received_id_that_comes_again_is_new_only_once_dropped() {
        let mut history = History::default();
        let payment = |n: u64| {
            let mut word = B256::ZERO;
            word.0[..8].copy_from_slice(&n.to_be_bytes());
            PaymentId(word)
        };
        let mut receive =
            |n: u64| history.received(payment(n), false, Address::ZERO, Amount::from(1u64), 0);
        assert!(receive(0)[0].new);
        assert!(!receive(0)[0].new, "held: an update");
        for n in 1..=HISTORY_KEPT as u64 {
            assert!(receive(n)[0].new);
        }
        assert!(receive(0)[0].new, "dropped as the oldest: new again");
    }
}

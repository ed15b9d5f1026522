//! The run's books: every payment and how it ended, what each node's completed payments give
//! it, and the invariants that follow (all-or-nothing payments, no honest node short).

use crate::config::SimConfig;
use crate::roles::Role;
use hoplite_node::{Event, PaymentFailure, PaymentId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What a payment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A workload payment of an invoice.
    Invoice,
    /// A workload payment without invoice.
    Keysend,
    /// A metering customer paying its ISP.
    Metering,
    /// A jammer's lock.
    Jam,
}

/// How a payment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not yet.
    Pending,
    /// The payer learned it arrived.
    Sent {
        /// Fees paid.
        fee: u128,
        /// Hops of the route that carried it.
        hops: usize,
        /// Routes tried.
        attempts: usize,
        /// From the payer's command to its `PaymentSent`.
        latency: Duration,
    },
    /// The payer gave up.
    Failed {
        /// Why (a short label).
        reason: String,
        /// Routes tried.
        attempts: usize,
    },
}

/// One payment.
#[derive(Clone, Debug)]
pub struct Payment {
    /// Who pays.
    pub payer: usize,
    /// Who is paid.
    pub payee: usize,
    /// How much the payee is to get.
    pub amount: u64,
    /// What for.
    pub kind: Kind,
    /// When the payer was asked to pay.
    pub started: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The payee got its `PaymentReceived`.
    pub received: bool,
}

/// An invariant that broke: the run stops and prints this.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// What broke it.
    pub what: String,
    /// The run's seed.
    pub seed: u64,
    /// The run's config, as TOML.
    pub config: String,
    /// Virtual time since the start.
    pub at: Duration,
}

impl Violation {
    /// A violation of `invariant`; the simulation fills in the seed, config and time.
    pub fn new(invariant: &'static str, what: String) -> Self {
        Self {
            invariant,
            what,
            seed: 0,
            config: String::new(),
            at: Duration::ZERO,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant violated: {} at {:.3} s (virtual)",
            self.invariant,
            self.at.as_secs_f64()
        )?;
        writeln!(f, "  {}", self.what)?;
        writeln!(f, "  reproduce with --seed {} and this config:", self.seed)?;
        for line in self.config.lines() {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// What happened in a run, counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Messages sent between peers (delivered or lost).
    pub messages: u64,
    /// Gossip messages published.
    pub gossip: u64,
    /// Sends adversaries withheld (resends included).
    pub withheld: u64,
    /// Crashes.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Stale closes mined.
    pub stale_closes: u64,
    /// Stale closes the partner answered on-chain with a newer proof.
    pub stale_closes_answered: u64,
}

/// The books.
pub struct Ledger {
    /// Every payment started, by id.
    pub payments: BTreeMap<PaymentId, Payment>,
    /// Payments that could not start: (kind, amount, why).
    pub refused: Vec<(Kind, u64, String)>,
    /// Per node: what its completed payments give it, relative to the start.
    pub expected: Vec<i128>,
    /// Per node: fees it kept forwarding.
    pub forwarded_fees: Vec<u128>,
    /// Per node at the end: what it holds relative to the start (tokens, and balances of its
    /// open channels).
    pub holdings: Vec<i128>,
    /// The hub's outbound liquidity: (virtual seconds, tokens), every block.
    pub hub_liquidity: Vec<(f64, f64)>,
    /// What happened, counted.
    pub counts: Counts,
    /// Events the nodes reported, by kind (rejections, broken channels, failed requests).
    pub incidents: BTreeMap<String, u64>,
    /// The block at which every channel was open.
    pub setup_blocks: u64,
    /// The most locks pending on one channel direction, in any state a node persisted (and
    /// in every node's view at every block).
    pub max_pending_locks: usize,
    /// The most messages one node had unacknowledged to one peer, taken at every send.
    pub max_unacknowledged: usize,
    /// Each node's role.
    pub roles: Vec<Role>,
}

impl Ledger {
    /// Books for `nodes` nodes.
    pub fn new(roles: Vec<Role>) -> Self {
        let nodes = roles.len();
        Self {
            roles,
            payments: BTreeMap::new(),
            refused: Vec::new(),
            expected: vec![0; nodes],
            forwarded_fees: vec![0; nodes],
            holdings: Vec::new(),
            hub_liquidity: Vec::new(),
            counts: Counts::default(),
            incidents: BTreeMap::new(),
            setup_blocks: 0,
            max_pending_locks: 0,
            max_unacknowledged: 0,
        }
    }

    /// How many payments the config makes in all (workload, metering, jamming).
    pub fn planned(&self, config: &SimConfig) -> usize {
        let m = &config.workload.metering;
        let j = &config.faults.jamming;
        config.workload.payments + m.customers * m.payments_per_customer + j.attackers * j.locks
    }

    /// How many payments were started or refused so far.
    pub fn started(&self) -> usize {
        self.payments.len() + self.refused.len()
    }

    /// A payment that started.
    pub fn started_payment(
        &mut self,
        id: PaymentId,
        payer: usize,
        payee: usize,
        amount: u64,
        kind: Kind,
        now: Duration,
    ) {
        let payment = Payment {
            payer,
            payee,
            amount,
            kind,
            started: now,
            outcome: Outcome::Pending,
            received: false,
        };
        self.payments.insert(id, payment);
    }

    /// A payment that could not start.
    pub fn refuse(&mut self, kind: Kind, amount: u64, why: &str) {
        self.refused.push((kind, amount, why.to_owned()));
    }

    /// Books node `i`'s event.
    pub fn record(&mut self, i: usize, now: Duration, event: &Event) -> Result<(), Violation> {
        let roles = &self.roles;
        let honest = |i: usize| roles[i].is_honest();
        match event {
            Event::PaymentSent {
                payment,
                amount,
                fee,
                route,
                attempts,
            } => {
                let Some(p) = self.payments.get_mut(payment).filter(|p| p.payer == i) else {
                    return Ok(());
                };
                if matches!(p.outcome, Outcome::Failed { .. }) {
                    return Err(Violation::new(
                        "all-or-nothing",
                        format!("payment {payment:?}: sent after it failed"),
                    ));
                }
                let fee = to_u128(fee);
                self.expected[i] -= to_u128(amount) as i128 + fee as i128;
                p.outcome = Outcome::Sent {
                    fee,
                    hops: route.len(),
                    attempts: *attempts,
                    latency: now.saturating_sub(p.started),
                };
            }
            Event::PaymentFailed {
                payment,
                reason,
                last_failure,
                attempts,
            } => {
                let Some(p) = self.payments.get_mut(payment).filter(|p| p.payer == i) else {
                    return Ok(());
                };
                if p.received && honest(p.payer) && honest(p.payee) {
                    return Err(Violation::new(
                        "all-or-nothing",
                        format!(
                            "payment {payment:?} {} -> {}: the payee was paid but the payer failed ({reason:?})",
                            p.payer, p.payee
                        ),
                    ));
                }
                let reason = match (reason, last_failure) {
                    (PaymentFailure::NoRoute(_), None) => "no route".to_owned(),
                    (PaymentFailure::NoRoute(_), Some((_, last))) => {
                        format!("no route left (last: {last})")
                    }
                    (PaymentFailure::AttemptsExhausted, Some((_, last))) => {
                        format!("attempts exhausted (last: {last})")
                    }
                    (PaymentFailure::AttemptsExhausted, None) => "attempts exhausted".to_owned(),
                    (PaymentFailure::Timeout, _) => "timed out".to_owned(),
                    (PaymentFailure::Expired, _) => "lock expired unclaimed".to_owned(),
                    (PaymentFailure::AmountTooLarge, _) => "amount too large".to_owned(),
                };
                p.outcome = Outcome::Failed {
                    reason,
                    attempts: *attempts,
                };
            }
            Event::PaymentReceived {
                payment, amount, ..
            } => {
                let Some(p) = self.payments.get_mut(payment).filter(|p| p.payee == i) else {
                    return Ok(());
                };
                if matches!(p.outcome, Outcome::Failed { .. }) && honest(p.payer) && honest(p.payee)
                {
                    return Err(Violation::new(
                        "all-or-nothing",
                        format!(
                            "payment {payment:?} {} -> {}: the payee was paid after the payer failed",
                            p.payer, p.payee
                        ),
                    ));
                }
                p.received = true;
                self.expected[i] += to_u128(amount) as i128;
            }
            Event::Forwarded { fee, .. } => {
                let fee = to_u128(fee);
                self.expected[i] += fee as i128;
                self.forwarded_fees[i] += fee;
            }
            Event::DirectTransferReceived { .. } => {}
            Event::PeerMessageRejected { error, .. } => self.incident("message rejected", error),
            Event::ChannelBroken { error, .. } => self.incident("channel broken", error),
            Event::GossipRejected { rejection, .. } => self.incident("gossip rejected", rejection),
            Event::ChainRequestFailed { request, failure } => {
                self.incident(&format!("{} failed", request.kind()), failure);
            }
            Event::ChannelClosed { .. } => self.incident("channel", &"closed"),
            Event::ChannelSettled { .. } => self.incident("channel", &"settled"),
            // The simulator's nodes do not withdraw.
            Event::CloseRefused { .. }
            | Event::ChannelOpened { .. }
            | Event::Withdrawn { .. }
            | Event::WithdrawFailed { .. } => {}
        }
        Ok(())
    }

    /// Counts an incident under its kind and the variant of its detail (no ids or amounts,
    /// so the table stays short).
    fn incident(&mut self, kind: &str, detail: &impl fmt::Debug) {
        let detail = format!("{detail:?}");
        let variant = detail
            .split(['(', '{', ' '])
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        *self
            .incidents
            .entry(format!("{kind}: {variant}"))
            .or_default() += 1;
    }

    /// Every started payment has an outcome.
    pub fn all_resolved(&self) -> bool {
        self.payments
            .values()
            .all(|p| p.outcome != Outcome::Pending)
    }

    /// The end-of-run invariants, given what each node holds relative to the start: every
    /// payment between honest ends resolved all-or-nothing, and every honest node holds at
    /// least what its completed payments give it.
    pub fn finish(&mut self, holdings: &[i128]) -> Result<(), Violation> {
        self.holdings = holdings.to_vec();
        let roles = &self.roles;
        let honest = |i: usize| roles[i].is_honest();
        for (id, p) in &self.payments {
            if !(honest(p.payer) && honest(p.payee)) {
                continue;
            }
            let sent = matches!(p.outcome, Outcome::Sent { .. });
            if p.outcome == Outcome::Pending || sent != p.received {
                return Err(Violation::new(
                    "all-or-nothing",
                    format!(
                        "payment {id:?} {} -> {}: at the end the payer has {:?}, the payee received: {}",
                        p.payer, p.payee, p.outcome, p.received
                    ),
                ));
            }
        }
        for (i, (&held, &expected)) in holdings.iter().zip(&self.expected).enumerate() {
            if honest(i) && held < expected {
                return Err(Violation::new(
                    "no honest loss",
                    format!(
                        "node {i} ({}) holds {held} more than at the start, its completed payments give it {expected}",
                        roles[i].label()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn to_u128(amount: &hoplite_htlc::Amount) -> u128 {
    u128::try_from(amount.to_u256()).unwrap_or(u128::MAX)
}

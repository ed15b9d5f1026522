//! What a run found: [`Report`] (a function of the seed and config alone, written as the JSON
//! results file) and [`Timing`] (wall-clock figures, kept apart so the results file is
//! byte-identical for the same seed and config), and the human summary of both.

use crate::chain::{KindStats, SimChain};
use crate::config::SimConfig;
use crate::ledger::{Counts, Kind, Outcome};
use crate::roles::Role;
use crate::sim::Simulation;
use crate::workload;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The results of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The config run.
    pub config: SimConfig,
    /// Nodes and channels simulated.
    pub nodes: usize,
    /// See [`Self::nodes`].
    pub channels: usize,
    /// Blocks until every channel was open; blocks in all.
    pub setup_blocks: u64,
    /// See [`Self::setup_blocks`].
    pub blocks: u64,
    /// Virtual time simulated, seconds.
    pub virtual_seconds: f64,
    /// The payments.
    pub payments: Payments,
    /// On-chain transactions by kind.
    pub chain: BTreeMap<String, KindStats>,
    /// Gas used by the nodes of each role.
    pub gas_by_role: BTreeMap<String, u64>,
    /// Payments received, by the payee's role.
    pub received_by_role: BTreeMap<String, usize>,
    /// Per role: how many nodes, and what they hold at the end beyond what their completed
    /// payments give them (an adversary's gain; for honest roles never negative).
    pub roles: Vec<RoleOutcome>,
    /// Forwarding fees kept, all nodes.
    pub forwarded_fees: u128,
    /// What happened, counted (messages, gossip, withheld sends, crashes, stale closes).
    #[serde(flatten)]
    pub counts: Counts,
    /// What the nodes reported: rejections, broken channels, failed requests, closes.
    pub incidents: BTreeMap<String, u64>,
    /// The most locks pending on one channel direction, and the most messages one node had
    /// unacknowledged to one peer: taken at every persisted channel state and every send.
    pub max_pending_locks: usize,
    /// See [`Self::max_pending_locks`].
    pub max_unacknowledged: usize,
    /// The best-connected node and its outbound liquidity over time (virtual s, tokens).
    pub hub: usize,
    /// See [`Self::hub`].
    pub hub_liquidity: Vec<(f64, f64)>,
}

/// The payments' figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Payments {
    /// Started, or refused at the start (jamming locks aside: they count under their kind).
    pub total: usize,
    /// The payer learned they arrived.
    pub succeeded: usize,
    /// The payer gave up, or could not start.
    pub failed: usize,
    /// Neither at the end.
    pub pending: usize,
    /// succeeded / total.
    pub success_rate: f64,
    /// By kind: (total, succeeded).
    pub by_kind: BTreeMap<String, (usize, usize)>,
    /// By amount, powers of ten: lower bound, total, succeeded.
    pub by_amount: Vec<(u64, usize, usize)>,
    /// Why payments failed.
    pub failure_reasons: BTreeMap<String, usize>,
    /// Virtual latency of the successful ones, milliseconds.
    pub latency_ms: Quantiles,
    /// Fees of the successful ones.
    pub fee: Quantiles,
    /// Hops of the successful ones: count by length.
    pub route_length: BTreeMap<usize, usize>,
    /// Routes tried, all resolved payments: count by attempts.
    pub attempts: BTreeMap<usize, usize>,
    /// Every successful payment's latency (ms), sorted: for the CDF plot.
    #[serde(skip)]
    pub latencies: Vec<f64>,
    /// Every successful payment's fee, sorted.
    #[serde(skip)]
    pub fees: Vec<f64>,
}

/// Median, 99th percentile, mean and maximum.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Quantiles {
    /// Median.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

impl Quantiles {
    /// Of `sorted` values (empty: all zero).
    pub fn of(sorted: &[f64]) -> Self {
        if sorted.is_empty() {
            return Self::default();
        }
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max: sorted[sorted.len() - 1],
        }
    }
}

/// One role's nodes at the end.
#[derive(Clone, Debug, Serialize)]
pub struct RoleOutcome {
    /// The role.
    pub role: Role,
    /// How many nodes had it.
    pub nodes: usize,
    /// Their holdings less what their completed payments give them, summed.
    pub net: i128,
    /// The least of that over the role's nodes.
    pub worst: i128,
}

impl Report {
    /// The figures of `sim`, run to its end.
    pub(crate) fn new(sim: &Simulation, chain: &SimChain) -> Self {
        let ledger = &sim.ledger;
        let config = sim.config().clone();
        let mut payments = Payments::default();
        let mut buckets: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        let mut by_kind: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
        // Jamming locks are an attack, not demand: they count under their kind only.
        for p in ledger.payments.values() {
            let kind = by_kind.entry(p.kind).or_default();
            kind.0 += 1;
            if p.kind == Kind::Jam {
                kind.1 += usize::from(matches!(p.outcome, Outcome::Sent { .. }));
                continue;
            }
            let bucket = buckets.entry(workload::bucket(p.amount)).or_default();
            bucket.0 += 1;
            match &p.outcome {
                Outcome::Pending => payments.pending += 1,
                Outcome::Sent {
                    fee,
                    hops,
                    attempts,
                    latency,
                } => {
                    payments.succeeded += 1;
                    bucket.1 += 1;
                    kind.1 += 1;
                    payments.latencies.push(latency.as_secs_f64() * 1000.0);
                    payments.fees.push(*fee as f64);
                    *payments.route_length.entry(*hops).or_default() += 1;
                    *payments.attempts.entry(*attempts).or_default() += 1;
                }
                Outcome::Failed { reason, attempts } => {
                    payments.failed += 1;
                    *payments.failure_reasons.entry(reason.clone()).or_default() += 1;
                    *payments.attempts.entry(*attempts).or_default() += 1;
                }
            }
        }
        for (kind, amount, why) in &ledger.refused {
            by_kind.entry(*kind).or_default().0 += 1;
            if *kind == Kind::Jam {
                continue;
            }
            buckets.entry(workload::bucket(*amount)).or_default().0 += 1;
            payments.failed += 1;
            *payments
                .failure_reasons
                .entry(format!("refused: {why}"))
                .or_default() += 1;
        }
        payments.total = payments.succeeded + payments.failed + payments.pending;
        payments.success_rate = if payments.total == 0 {
            0.0
        } else {
            payments.succeeded as f64 / payments.total as f64
        };
        payments.by_kind = by_kind
            .into_iter()
            .map(|(kind, counts)| (kind_label(kind).to_owned(), counts))
            .collect();
        payments.by_amount = buckets
            .into_iter()
            .map(|(k, (n, ok))| (10u64.pow(k), n, ok))
            .collect();
        payments.latencies.sort_by(f64::total_cmp);
        payments.fees.sort_by(f64::total_cmp);
        payments.latency_ms = Quantiles::of(&payments.latencies);
        payments.fee = Quantiles::of(&payments.fees);

        let roles_of = sim.roles();
        let mut gas_by_role: BTreeMap<String, u64> = BTreeMap::new();
        for (i, gas) in chain.gas_by_node.iter().enumerate() {
            *gas_by_role
                .entry(roles_of[i].label().to_owned())
                .or_default() += gas;
        }
        let mut received_by_role: BTreeMap<String, usize> = BTreeMap::new();
        for p in ledger.payments.values().filter(|p| p.received) {
            *received_by_role
                .entry(roles_of[p.payee].label().to_owned())
                .or_default() += 1;
        }
        let roles = Role::ALL
            .iter()
            .filter_map(|&role| {
                let nets: Vec<i128> = (0..roles_of.len())
                    .filter(|&i| roles_of[i] == role && i < ledger.holdings.len())
                    .map(|i| ledger.holdings[i] - ledger.expected[i])
                    .collect();
                (!nets.is_empty()).then(|| RoleOutcome {
                    role,
                    nodes: nets.len(),
                    net: nets.iter().sum(),
                    worst: nets.iter().copied().min().unwrap_or(0),
                })
            })
            .collect();
        Self {
            seed: config.seed,
            nodes: sim.nodes(),
            channels: sim.channels(),
            setup_blocks: ledger.setup_blocks,
            blocks: sim.blocks(),
            virtual_seconds: sim.elapsed().as_secs_f64(),
            payments,
            chain: chain
                .by_kind
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            gas_by_role,
            received_by_role,
            roles,
            forwarded_fees: ledger.forwarded_fees.iter().sum(),
            counts: ledger.counts.clone(),
            incidents: ledger.incidents.clone(),
            max_pending_locks: ledger.max_pending_locks,
            max_unacknowledged: ledger.max_unacknowledged,
            hub: sim.hub(),
            hub_liquidity: ledger.hub_liquidity.clone(),
            config,
        }
    }

    /// The results file: pretty JSON, the same bytes for the same seed and config.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    /// The human summary.
    pub fn summary(&self, timing: &Timing) -> String {
        let p = &self.payments;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "hoplite-sim: {} nodes, {} channels, seed {}; {:.0} s virtual in {} blocks (setup {})",
            self.nodes,
            self.channels,
            self.seed,
            self.virtual_seconds,
            self.blocks,
            self.setup_blocks
        );
        let _ = writeln!(
            s,
            "payments: {} in all, {} succeeded ({:.1}%), {} failed, {} pending",
            p.total,
            p.succeeded,
            100.0 * p.success_rate,
            p.failed,
            p.pending
        );
        for (kind, (n, ok)) in &p.by_kind {
            let _ = writeln!(s, "  {kind:<10} {ok:>7} / {n:<7} {:>6.1}%", pct(*ok, *n));
        }
        let _ = writeln!(s, "by amount:");
        for (low, n, ok) in &p.by_amount {
            let _ = writeln!(
                s,
                "  {:>12}  {ok:>7} / {n:<7} {:>6.1}%",
                format!("[{low}, {})", low.saturating_mul(10)),
                pct(*ok, *n)
            );
        }
        if !p.failure_reasons.is_empty() {
            let _ = writeln!(s, "failures:");
            let mut reasons: Vec<_> = p.failure_reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, n) in reasons {
                let _ = writeln!(s, "  {n:>7}  {reason}");
            }
        }
        let _ = writeln!(
            s,
            "latency (virtual): median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p.latency_ms.median, p.latency_ms.p99, p.latency_ms.max
        );
        let _ = writeln!(
            s,
            "fees: median {:.0}, p99 {:.0}, mean {:.1}; forwarded fees kept: {}",
            p.fee.median, p.fee.p99, p.fee.mean, self.forwarded_fees
        );
        let _ = writeln!(s, "route length: {}", histogram(&p.route_length));
        let _ = writeln!(s, "attempts: {}", histogram(&p.attempts));
        let _ = writeln!(s, "on-chain:");
        for (kind, k) in &self.chain {
            let _ = writeln!(
                s,
                "  {kind:<20} {:>6} mined {:>5} failed  {:>12} gas",
                k.mined, k.failed, k.gas
            );
        }
        let _ = writeln!(s, "roles (holdings beyond what completed payments give):");
        for r in &self.roles {
            let _ = writeln!(
                s,
                "  {:<13} {:>5} nodes  net {:>10}  worst {:>10}",
                r.role.label(),
                r.nodes,
                r.net,
                r.worst
            );
        }
        let _ = writeln!(
            s,
            "faults: {} crashes, {} restarts, {} stale closes ({} answered on-chain), {} sends withheld (resends included); at most {} locks pending on a channel, {} messages unacknowledged to a partner",
            self.counts.crashes,
            self.counts.restarts,
            self.counts.stale_closes,
            self.counts.stale_closes_answered,
            self.counts.withheld,
            self.max_pending_locks,
            self.max_unacknowledged
        );
        if !self.incidents.is_empty() {
            let _ = writeln!(s, "incidents:");
            for (what, n) in &self.incidents {
                let _ = writeln!(s, "  {n:>7}  {what}");
            }
        }
        let _ = writeln!(
            s,
            "wall {:.2} s (setup {:.2} s) on {} threads, cpu {:.2} s, peak memory {:.0} MiB: {:.0} payments per wall-second, {:.0} per CPU-second; {} node calls, {} messages, {} gossip; routes searched ahead {}, taken {}; signatures taken from those made ahead {}",
            timing.wall_s,
            timing.setup_s,
            timing.threads,
            timing.cpu_s,
            timing.peak_rss_mib,
            timing.payments_per_wall_s,
            timing.payments_per_cpu_s,
            timing.calls,
            self.counts.messages,
            self.counts.gossip,
            timing.routes_ahead.searched,
            timing.routes_ahead.taken,
            timing.signatures_ahead
        );
        s
    }
}

/// Wall-clock figures (they differ run to run).
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    /// Wall time of the run (setup included).
    pub wall_s: f64,
    /// Wall time before the first payment: building the network, opening its channels
    /// on-chain and announcing them.
    pub setup_s: f64,
    /// Threads the run used (the loop, and workers recovering signatures).
    pub threads: usize,
    /// CPU time of the process, every thread's.
    pub cpu_s: f64,
    /// Payments per wall-second and per CPU-second.
    pub payments_per_wall_s: f64,
    /// See [`Self::payments_per_wall_s`].
    pub payments_per_cpu_s: f64,
    /// Node calls made.
    pub calls: u64,
    /// Peak resident memory, MiB (Linux).
    pub peak_rss_mib: f64,
    /// Payers' routes searched ahead, and how many a payment took (see [`crate::ahead`]).
    pub routes_ahead: RoutesAhead,
    /// Signatures nodes took from those made ahead (see [`crate::presign`]).
    pub signatures_ahead: u64,
}

/// Routes searched ahead of their payments, and taken by them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RoutesAhead {
    /// Searches handed to the thread.
    pub searched: u64,
    /// Payments that took the route searched (the others searched again themselves).
    pub taken: u64,
}

impl Timing {
    /// The figures of a run of `payments` on `threads` that took `wall` (`setup` of it before
    /// the first payment) and made `calls` node calls.
    pub fn measure(
        wall: Duration,
        setup: Duration,
        payments: usize,
        calls: u64,
        threads: usize,
    ) -> Self {
        let cpu_s = process_cpu_seconds().unwrap_or(f64::NAN);
        let wall_s = wall.as_secs_f64();
        Self {
            wall_s,
            setup_s: setup.as_secs_f64(),
            threads,
            cpu_s,
            payments_per_wall_s: payments as f64 / wall_s.max(1e-9),
            payments_per_cpu_s: payments as f64 / cpu_s.max(1e-9),
            calls,
            peak_rss_mib: peak_rss_mib().unwrap_or(f64::NAN),
            routes_ahead: RoutesAhead::default(),
            signatures_ahead: 0,
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("timing serializes") + "\n"
    }
}

/// User plus system time of this process, from `/proc/self/stat` (Linux; clock ticks of
/// 1/100 s, the kernel's USER_HZ).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The peak resident set (`VmHWM` of `/proc/self/status`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Invoice => "invoice",
        Kind::Keysend => "keysend",
        Kind::Metering => "metering",
        Kind::Jam => "jam",
    }
}

fn pct(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn histogram(counts: &BTreeMap<usize, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

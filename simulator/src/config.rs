//! What a run simulates: [`SimConfig`], read from TOML (every field has a default, unknown
//! fields are refused) and then overridden by command-line flags.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedded default run: the README's main job.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seeds everything random in the run: keys, topology, workload, latencies, faults.
    pub seed: u64,
    /// Who has channels with whom, and how much is locked in them.
    pub topology: Topology,
    /// The payments made.
    pub workload: Workload,
    /// Latency, loss and partitions between nodes.
    pub network: NetworkModel,
    /// Block time.
    pub chain: ChainModel,
    /// The nodes' settings.
    pub node: NodeModel,
    /// Faults and adversaries.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            topology: Topology::ScaleFree {
                nodes: 100,
                edges_per_node: 2,
            },
            workload: Workload::default(),
            network: NetworkModel::default(),
            chain: ChainModel::default(),
            node: NodeModel::default(),
            faults: Faults::default(),
        }
    }
}

/// Why a configuration can't be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML does not parse or has unknown fields.
    #[error("config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

impl SimConfig {
    /// Parses a TOML config (missing fields take their defaults) and checks it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// The embedded default run.
    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the embedded default config is valid")
    }

    /// The config as TOML (what the results file and a violation report carry).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config serializes")
    }

    /// Checks every value a run depends on.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        match &self.topology {
            Topology::ScaleFree {
                nodes,
                edges_per_node,
            } => {
                if *edges_per_node == 0 || *nodes <= *edges_per_node {
                    return invalid("scale_free needs edges_per_node >= 1 and nodes > it");
                }
            }
            Topology::HubAndSpoke {
                isps,
                customers_per_isp,
            } => {
                if *isps == 0 || *customers_per_isp == 0 {
                    return invalid("hub_and_spoke needs at least one ISP and one customer");
                }
            }
            Topology::Snapshot { msat_per_unit, .. } => {
                if *msat_per_unit == 0 {
                    return invalid("snapshot.msat_per_unit must be positive");
                }
            }
        }
        // The opener deposits (a channel opens with its opener's deposit).
        if !(self.node.deposit_split > 0.0 && self.node.deposit_split <= 1.0) {
            return invalid("node.deposit_split must lie in (0, 1]");
        }
        if self.node.channel_capacity < 2 {
            return invalid("node.channel_capacity must be at least 2");
        }
        let m = &self.node;
        // The contract's bounds, and more than the nodes' reveal_timeout (10 blocks).
        if !(11..=2_000_000).contains(&m.settle_timeout) {
            return invalid("node.settle_timeout must lie in 11..=2000000 blocks");
        }
        if m.max_attempts == 0 || m.payment_timeout_s == 0 {
            return invalid("node.max_attempts and node.payment_timeout_s must be positive");
        }
        let w = &self.workload;
        if !(w.rate_per_s >= 1e-3 && w.rate_per_s.is_finite()) {
            return invalid("workload.rate_per_s must be at least 0.001");
        }
        // Virtual time stays far inside Duration: a run spans at most about 30 years.
        const YEAR_S: u64 = 365 * 24 * 3600;
        let times = [
            self.faults.offline.duration_s,
            self.faults.crashes.duration_s,
            w.metering.interval_ms / 1000,
            self.chain.block_time_s,
        ];
        let partitions = self
            .network
            .partitions
            .iter()
            .flat_map(|p| [p.start_s, p.duration_s]);
        if times.into_iter().chain(partitions).any(|t| t > YEAR_S)
            || w.payments as f64 / w.rate_per_s > YEAR_S as f64
        {
            return invalid("times and the workload's span must stay under a year");
        }
        if self
            .network
            .partitions
            .iter()
            .any(|p| !(0.0..=1.0).contains(&p.share))
        {
            return invalid("a partition's share must lie in [0, 1]");
        }
        if !(0.0..=1.0).contains(&w.spontaneous_share) {
            return invalid("workload.spontaneous_share must lie in [0, 1]");
        }
        match w.amount {
            Amount::Fixed { value: 0 } => return invalid("a fixed amount of 0"),
            Amount::LogUniform { min, max } if min == 0 || max < min => {
                return invalid("log_uniform needs 0 < min <= max");
            }
            Amount::Pareto { min, alpha, max } if min == 0 || alpha <= 0.0 || max < min => {
                return invalid("pareto needs min > 0, alpha > 0 and max >= min");
            }
            _ => {}
        }
        if w.metering.customers > 0 && (w.metering.interval_ms == 0 || w.metering.amount == 0) {
            return invalid("metering needs a positive interval_ms and amount");
        }
        let n = &self.network;
        if !(0.0..1.0).contains(&n.loss) {
            return invalid("network.loss must lie in [0, 1)");
        }
        if n.latency_median_ms <= 0.0 || n.latency_sigma < 0.0 {
            return invalid("network latency needs a positive median and a sigma >= 0");
        }
        if self.chain.block_time_s == 0 {
            return invalid("chain.block_time_s must be positive");
        }
        let f = &self.faults;
        for share in [
            f.offline.share,
            f.crashes.share,
            f.stale_closers,
            f.griefers,
            f.silent_payees,
            f.non_ackers,
        ] {
            if !(0.0..=1.0).contains(&share) {
                return invalid("fault shares must lie in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Who has channels with whom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Topology {
    /// Barabási–Albert: each new node opens `edges_per_node` channels to nodes picked in
    /// proportion to their degree.
    ScaleFree {
        /// Nodes in all.
        nodes: usize,
        /// Channels each new node opens.
        edges_per_node: usize,
    },
    /// ISPs linked in a ring backbone (and across it when there are more than three), each
    /// with its customers on direct channels.
    HubAndSpoke {
        /// How many ISPs.
        isps: usize,
        /// Customers of each.
        customers_per_isp: usize,
    },
    /// A real Lightning snapshot (`../shared/data/ln-graph/`).
    Snapshot {
        /// Its `*.nodes.tsv.gz`.
        nodes_file: PathBuf,
        /// Its `*.edges.tsv.gz`.
        edges_file: PathBuf,
        /// The largest strongly connected component of enabled channels, or the whole graph.
        largest_component: bool,
        /// How many msat make one token unit (capacities are divided by it).
        msat_per_unit: u64,
    },
}

/// The payments made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// How many payments between pairs (metering comes on top).
    pub payments: usize,
    /// Their Poisson arrival rate, per virtual second.
    pub rate_per_s: f64,
    /// How payer and payee are picked.
    pub pairs: Pairs,
    /// How much each pays.
    pub amount: Amount,
    /// The share paid spontaneously (keysend) instead of by invoice.
    pub spontaneous_share: f64,
    /// ISP metering streams.
    pub metering: Metering,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            payments: 1_000,
            rate_per_s: 20.0,
            pairs: Pairs::Uniform,
            amount: Amount::LogUniform {
                min: 10,
                max: 100_000,
            },
            spontaneous_share: 0.1,
            metering: Metering::default(),
        }
    }
}

/// How payer and payee are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairs {
    /// Every node equally likely.
    Uniform,
    /// In proportion to the number of channels (busy nodes pay and are paid more).
    ByDegree,
}

/// An amount distribution, in token units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Amount {
    /// Always `value`.
    Fixed {
        /// The amount.
        value: u64,
    },
    /// Its logarithm uniform between those of `min` and `max`.
    LogUniform {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// Pareto with scale `min` and shape `alpha`, capped at `max`.
    Pareto {
        /// Scale (smallest).
        min: u64,
        /// Shape (smaller: heavier tail).
        alpha: f64,
        /// Cap.
        max: u64,
    },
}

/// ISP metering: each of `customers` nodes streams `amount` to its ISP every `interval_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metering {
    /// How many customers meter (on a hub-and-spoke topology, the first of each ISP's; on
    /// another, the lowest-degree nodes, paying their best-connected neighbour).
    pub customers: usize,
    /// Between two payments of one customer, in virtual milliseconds.
    pub interval_ms: u64,
    /// Each payment.
    pub amount: u64,
    /// Payments per customer.
    pub payments_per_customer: usize,
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            customers: 0,
            interval_ms: 1_000,
            amount: 10,
            payments_per_customer: 50,
        }
    }
}

/// Latency, loss and partitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkModel {
    /// Median one-way latency of a link, milliseconds (log-normal).
    pub latency_median_ms: f64,
    /// The log-normal's sigma (0: every message takes the median).
    pub latency_sigma: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Partitions: a share of the nodes cut off from the rest for a while.
    pub partitions: Vec<Partition>,
    /// Whether the nodes share one network view (gossip then reaches everyone at once and
    /// each chain event is applied once), or each keeps its own, fed every gossip message and
    /// chain event (where gossip's spread is the question). Unset: shared above 250 nodes.
    pub shared_view: Option<bool>,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency_median_ms: 50.0,
            latency_sigma: 0.5,
            loss: 0.0,
            partitions: Vec::new(),
            shared_view: None,
        }
    }
}

/// `share` of the nodes (picked from the seed) cut off from the others from `start_s` for
/// `duration_s` virtual seconds after the workload starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it starts, seconds into the workload.
    pub start_s: u64,
    /// How long it lasts.
    pub duration_s: u64,
    /// The share of nodes on the small side.
    pub share: f64,
}

/// The chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainModel {
    /// Seconds between blocks.
    pub block_time_s: u64,
}

impl Default for ChainModel {
    fn default() -> Self {
        Self { block_time_s: 12 }
    }
}

/// The nodes' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeModel {
    /// Tokens locked in each generated channel (both sides together).
    pub channel_capacity: u64,
    /// The share of a channel's capacity its opener deposits (the rest: the partner); above 0.
    pub deposit_split: f64,
    /// Base fee of every node's policy.
    pub base_fee: u64,
    /// Proportional fee, millionths.
    pub fee_millionths: u32,
    /// How long a payment keeps trying, seconds.
    pub payment_timeout_s: u64,
    /// Routes a payment tries.
    pub max_attempts: usize,
    /// The challenge window of every channel, blocks.
    pub settle_timeout: u32,
}

impl Default for NodeModel {
    fn default() -> Self {
        Self {
            channel_capacity: 10_000_000,
            deposit_split: 0.5,
            base_fee: 1,
            fee_millionths: 1_000,
            payment_timeout_s: 60,
            max_attempts: 5,
            settle_timeout: 100,
        }
    }
}

/// Faults and adversaries. Shares are of all nodes, picked from the seed; a node has one role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Nodes that go offline for a while.
    pub offline: Outages,
    /// Nodes that crash and restart from what they persisted.
    pub crashes: Outages,
    /// Nodes that, once, close a channel with the partner's oldest proof they hold.
    pub stale_closers: f64,
    /// Mediators that hold every lock they are asked to forward until it expires.
    pub griefers: f64,
    /// Payees that never ask for the secret, so never claim: their locks expire (they are paid
    /// by invoice only: a keysend payee holds the secret from the start).
    pub silent_payees: f64,
    /// Nodes that never acknowledge a message.
    pub non_ackers: f64,
    /// Channel jamming: attackers that hold many small locks on a hub's channels.
    pub jamming: Jamming,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            offline: Outages::default(),
            crashes: Outages::default(),
            stale_closers: 0.0,
            griefers: 0.0,
            silent_payees: 0.0,
            non_ackers: 0.0,
            jamming: Jamming::default(),
        }
    }
}

/// A share of nodes that each go down once, at a time picked in the workload, for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outages {
    /// The share of nodes.
    pub share: f64,
    /// How long each is down, seconds.
    pub duration_s: u64,
}

impl Default for Outages {
    fn default() -> Self {
        Self {
            share: 0.0,
            duration_s: 30,
        }
    }
}

/// Jamming: `attackers` pairs (a payer and a silent payee) send `locks` payments of
/// `amount` through the best-connected hub, held until they expire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jamming {
    /// Attacking pairs.
    pub attackers: usize,
    /// Payments each sends.
    pub locks: usize,
    /// Each payment's amount.
    pub amount: u64,
}

impl Default for Jamming {
    fn default() -> Self {
        Self {
            attackers: 0,
            locks: 200,
            amount: 1,
        }
    }
}

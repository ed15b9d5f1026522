//! Prometheus metrics, served by `GET /metrics` (OpenMetrics text, behind the API's token).
//! Counters are bumped where things happen (the node's events, gossip verdicts, the store's
//! commits, libp2p's own metrics); gauges of the node's state (balances, locks, peers, the
//! chain) are read from the node when scraped, by the task that owns it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A label set of fixed names.
type Labels<const N: usize> = [(&'static str, &'static str); N];
/// A gauge of token amounts (f64: a uint256 shown approximately).
type Tokens = Gauge<f64, AtomicU64>;

/// Every metric the daemon keeps, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    /// Payments by direction (`sent`, `received`) and outcome (`succeeded`, `failed`).
    pub payments: Family<Labels<2>, Counter>,
    /// Payments forwarded for a fee.
    pub forwarded: Counter,
    /// The fees they earned, tokens.
    pub forwarded_fees: Counter<f64, AtomicU64>,
    /// Gossip verdicts reported (`accept`, `ignore`, `reject`).
    pub gossip_verdicts: Family<Labels<1>, Counter>,
    /// Peer input refused (`message`: a channel message, `gossip`: an invalid announcement).
    pub peer_rejections: Family<Labels<1>, Counter>,
    /// Seconds each store commit took (one fsync of the WAL).
    pub store_commit_seconds: Histogram,
    /// What each side of each channel can send, tokens.
    pub channel_balance: Family<[(&'static str, String); 2], Tokens>,
    /// Pending locks by side (`ours`: we sent them), count.
    pub pending_locks: Family<Labels<1>, Gauge>,
    /// Pending locks by side, tokens.
    pub pending_locked: Family<Labels<1>, Tokens>,
    /// Peers connected.
    pub peers: Gauge,
    /// The last block the node processed.
    pub chain_block: Gauge,
    /// Seconds since the newest block the follower saw was made (the chain's lag behind now).
    pub chain_head_age_seconds: Gauge,
}

impl Metrics {
    /// The daemon's metrics, registered.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("hoplite");
        let payments = Family::default();
        registry.register(
            "payments",
            "Payments by direction and outcome",
            payments.clone(),
        );
        let forwarded = Counter::default();
        registry.register(
            "forwarded",
            "Payments forwarded for a fee",
            forwarded.clone(),
        );
        let forwarded_fees = Counter::default();
        registry.register(
            "forwarded_fees_tokens",
            "Fees earned forwarding, tokens",
            forwarded_fees.clone(),
        );
        let gossip_verdicts = Family::default();
        registry.register(
            "gossip_verdicts",
            "Gossip messages judged, by verdict",
            gossip_verdicts.clone(),
        );
        let peer_rejections = Family::default();
        registry.register(
            "peer_rejections",
            "Peer input refused, by kind",
            peer_rejections.clone(),
        );
        let store_commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_commit_seconds",
            "Seconds a store commit took (one fsync of the WAL)",
            store_commit_seconds.clone(),
        );
        let channel_balance = Family::default();
        registry.register(
            "channel_balance_tokens",
            "What each side of a channel can send, tokens",
            channel_balance.clone(),
        );
        let pending_locks = Family::default();
        registry.register(
            "pending_locks",
            "Pending locks by side (ours: we sent them)",
            pending_locks.clone(),
        );
        let pending_locked = Family::default();
        registry.register(
            "pending_locked_tokens",
            "Tokens in pending locks by side",
            pending_locked.clone(),
        );
        let peers = Gauge::default();
        registry.register("peers", "Peers connected", peers.clone());
        let chain_block = Gauge::default();
        registry.register(
            "chain_block",
            "The last block processed",
            chain_block.clone(),
        );
        let chain_head_age_seconds = Gauge::default();
        registry.register(
            "chain_head_age_seconds",
            "Seconds since the newest block seen was made",
            chain_head_age_seconds.clone(),
        );
        Self {
            registry: root,
            payments,
            forwarded,
            forwarded_fees,
            gossip_verdicts,
            peer_rejections,
            store_commit_seconds,
            channel_balance,
            pending_locks,
            pending_locked,
            peers,
            chain_block,
            chain_head_age_seconds,
        }
    }

    /// Where libp2p registers its own metrics (`libp2p_*`), before the metrics are shared.
    pub fn libp2p_registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Everything, as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// An amount as a metric's value (approximate beyond 2⁵³; beyond 2¹²⁸, `f64::MAX`).
pub fn tokens(amount: hoplite_htlc::Amount) -> f64 {
    u128::try_from(amount.to_u256()).map_or(f64::MAX, |v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_with_its_labels() {
        let mut metrics = Metrics::new();
        let _ = metrics.libp2p_registry();
        metrics
            .payments
            .get_or_create(&[("direction", "sent"), ("outcome", "succeeded")])
            .inc_by(3);
        metrics.forwarded_fees.inc_by(2.5);
        metrics
            .channel_balance
            .get_or_create(&[("channel", "7".into()), ("side", "ours".into())])
            .set(tokens(hoplite_htlc::Amount::from(1_000u64)));
        metrics.store_commit_seconds.observe(0.002);
        let text = metrics.encode();
        assert!(
            text.contains("hoplite_payments_total{direction=\"sent\",outcome=\"succeeded\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hoplite_forwarded_fees_tokens_total 2.5"),
            "{text}"
        );
        assert!(
            text.contains("hoplite_channel_balance_tokens{channel=\"7\",side=\"ours\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("hoplite_store_commit_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

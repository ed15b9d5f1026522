//! The network between nodes: per-link log-normal latency, loss and partitions, all drawn from
//! the run's seeded generator. Each link keeps its order (one stream per peer, as over TCP).

use crate::config::NetworkModel;
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Latency, loss, order and partitions.
pub struct Links {
    model: NetworkModel,
    /// The last delivery time scheduled on each link (from, to): a later message never
    /// overtakes it.
    last: BTreeMap<(usize, usize), Duration>,
    /// Per node: the partitions it is in (none: not listed). Two nodes reach each other when
    /// they are in the same partitions.
    cut: BTreeMap<usize, BTreeSet<usize>>,
}

impl Links {
    /// Links under `model`.
    pub fn new(model: NetworkModel) -> Self {
        Self {
            model,
            last: BTreeMap::new(),
            cut: BTreeMap::new(),
        }
    }

    /// When a message sent now from `from` to `to` arrives, or `None` if it is lost.
    pub fn send(
        &mut self,
        rng: &mut StdRng,
        now: Duration,
        from: usize,
        to: usize,
    ) -> Option<Duration> {
        if self.cut.get(&from) != self.cut.get(&to) {
            return None;
        }
        if self.model.loss > 0.0 && rng.random::<f64>() < self.model.loss {
            return None;
        }
        let at = now + self.latency(rng);
        let last = self.last.entry((from, to)).or_default();
        *last = (*last).max(at);
        Some(*last)
    }

    /// A one-way latency: log-normal with the model's median and sigma (Box–Muller).
    pub fn latency(&self, rng: &mut StdRng) -> Duration {
        let sigma = self.model.latency_sigma;
        let normal = if sigma == 0.0 {
            0.0
        } else {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let ms = self.model.latency_median_ms * (sigma * normal).exp();
        Duration::from_micros((ms * 1000.0).clamp(1.0, 60_000_000.0) as u64)
    }

    /// Cuts `nodes` off from everyone else (partition `id`).
    pub fn partition(&mut self, id: usize, nodes: &[usize]) {
        for &node in nodes {
            self.cut.entry(node).or_default().insert(id);
        }
    }

    /// The nodes in partition `id`, in order.
    pub fn members(&self, id: usize) -> Vec<usize> {
        self.cut
            .iter()
            .filter(|(_, ids)| ids.contains(&id))
            .map(|(node, _)| *node)
            .collect()
    }

    /// Heals partition `id`.
    pub fn heal(&mut self, id: usize) {
        for ids in self.cut.values_mut() {
            ids.remove(&id);
        }
        self.cut.retain(|_, ids| !ids.is_empty());
    }

    /// Whether `a` and `b` can reach each other now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.cut.get(&a) == self.cut.get(&b)
    }
}

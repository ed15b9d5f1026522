//! Payments to make: Poisson arrivals, payer and payee picks, amounts. Pure functions of the
//! run's seeded generator.

use crate::config::{Amount, Pairs};
use rand::Rng;
use rand::rngs::StdRng;
use std::time::Duration;

/// The time to the next arrival of a Poisson process of `rate` per second.
pub fn interarrival(rng: &mut StdRng, rate: f64) -> Duration {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    Duration::from_secs_f64((-u.ln() / rate).min(1e9))
}

/// One amount from `distribution` (at least 1).
pub fn amount(rng: &mut StdRng, distribution: &Amount) -> u64 {
    let value = match *distribution {
        Amount::Fixed { value } => value,
        Amount::LogUniform { min, max } => {
            let (lo, hi) = ((min as f64).ln(), (max as f64).ln());
            (lo + rng.random::<f64>() * (hi - lo)).exp().round() as u64
        }
        Amount::Pareto { min, alpha, max } => {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            ((min as f64) / u.powf(1.0 / alpha)).min(max as f64).round() as u64
        }
    };
    value.max(1)
}

/// Picks (payer, payee) among nodes allowed by `eligible`, distinct, under `pairs`.
pub struct PairPicker {
    /// Candidates, each repeated by its weight.
    pool: Vec<usize>,
}

impl PairPicker {
    /// A picker over `degrees` (a node with none is never picked) restricted to `eligible`.
    pub fn new(pairs: Pairs, degrees: &[usize], eligible: impl Fn(usize) -> bool) -> Self {
        let mut pool = Vec::new();
        for (i, &degree) in degrees.iter().enumerate() {
            if degree == 0 || !eligible(i) {
                continue;
            }
            let weight = match pairs {
                Pairs::Uniform => 1,
                Pairs::ByDegree => degree,
            };
            pool.extend(std::iter::repeat_n(i, weight));
        }
        Self { pool }
    }

    /// A payer and a distinct payee, if two nodes can be picked.
    pub fn pick(&self, rng: &mut StdRng) -> Option<(usize, usize)> {
        let first = *self.pool.first()?;
        if self.pool.iter().all(|&i| i == first) {
            return None;
        }
        let payer = self.pool[rng.random_range(0..self.pool.len())];
        loop {
            let payee = self.pool[rng.random_range(0..self.pool.len())];
            if payee != payer {
                return Some((payer, payee));
            }
        }
    }
}

/// Which bucket an amount falls in: powers of ten (`10^k <= amount < 10^(k+1)`).
pub fn bucket(amount: u64) -> u32 {
    amount.max(1).ilog10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn amounts_stay_in_their_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let a = amount(&mut rng, &Amount::LogUniform { min: 10, max: 1000 });
            assert!((10..=1000).contains(&a), "{a}");
            let p = amount(
                &mut rng,
                &Amount::Pareto {
                    min: 5,
                    alpha: 1.2,
                    max: 500,
                },
            );
            assert!((5..=500).contains(&p), "{p}");
        }
    }

    #[test]
    fn poisson_arrivals_have_the_asked_rate() {
        let mut rng = StdRng::seed_from_u64(3);
        let total: f64 = (0..20_000)
            .map(|_| interarrival(&mut rng, 50.0).as_secs_f64())
            .sum();
        let rate = 20_000.0 / total;
        assert!((rate - 50.0).abs() < 2.0, "{rate}");
    }

    #[test]
    fn pairs_are_distinct_and_skip_nodes_without_channels() {
        let mut rng = StdRng::seed_from_u64(1);
        let picker = PairPicker::new(Pairs::ByDegree, &[0, 1, 5, 2], |_| true);
        for _ in 0..1000 {
            let (a, b) = picker.pick(&mut rng).expect("three candidates");
            assert!(a != b && a != 0 && b != 0);
        }
        assert!(
            PairPicker::new(Pairs::Uniform, &[3, 0], |_| true)
                .pick(&mut rng)
                .is_none()
        );
    }
}

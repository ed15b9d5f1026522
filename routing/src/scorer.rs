//! Scorers: what a hop costs beyond its fee, from what past payments taught.
//!
//! The router asks a [`Scorer`] for a penalty per hop and amount. [`ZeroPenalty`] charges
//! nothing (routes are then cheapest by fee and expiry risk alone). [`ProbabilisticScorer`]
//! keeps, per channel direction, bounds on the liquidity its sender has, narrowed by the
//! successes and failures the payment layer reports and relaxing back to `[0, capacity]` with a
//! half-life; the penalty grows with −log₂ of the probability that the hop can carry the amount
//! (LDK's `ProbabilisticScorer` with a uniform prior; LND's mission control learns the same way).

use crate::graph::{ChannelDirection, DirectedChannel, scale};
use crate::route::RouteHop;
use std::collections::HashMap;
use std::time::Duration;

/// What a hop costs beyond fees, and how likely it is to carry an amount.
pub trait Scorer {
    /// The penalty for sending `amount` over `hop` (this payment's total over it: other parts
    /// of a multi-path payment included), in the amount's unit; `None` if the scorer knows
    /// the hop cannot carry it.
    ///
    /// Must not decrease as `amount` grows (and `None` must stay `None`): the router prunes
    /// a search path when another reaches the same node for less, and that is only sound if
    /// a smaller amount never costs more further on.
    fn penalty(&self, hop: &DirectedChannel, amount: u128) -> Option<u64>;

    /// The probability, in `[0, 1]`, that `hop` can carry `amount` now.
    fn success_probability(&self, hop: &DirectedChannel, amount: u128) -> f64;
}

/// No penalty: every hop that can carry the amount by capacity is taken as certain.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZeroPenalty;

impl Scorer for ZeroPenalty {
    fn penalty(&self, _hop: &DirectedChannel, _amount: u128) -> Option<u64> {
        Some(0)
    }

    fn success_probability(&self, hop: &DirectedChannel, amount: u128) -> f64 {
        if amount <= hop.capacity { 1.0 } else { 0.0 }
    }
}

/// The knobs of [`ProbabilisticScorer`]. Penalties are in the amount's unit (msat for the
/// Lightning snapshot); the defaults are tuned for that scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbabilisticParams {
    /// Charged for every hop, however likely: fewer hops are fewer things that can fail.
    pub base_penalty: u64,
    /// Charged for every hop, in millionths of the amount.
    pub base_penalty_millionths: u32,
    /// Charged per halving of the success probability.
    pub liquidity_penalty: u64,
    /// Charged per halving of the success probability, in millionths of the amount: failing a
    /// large payment costs more.
    pub liquidity_penalty_millionths: u32,
    /// Time for learnt bounds to relax halfway back to `[0, capacity]`.
    pub half_life: Duration,
}

impl Default for ProbabilisticParams {
    fn default() -> Self {
        Self {
            base_penalty: 1_000,
            base_penalty_millionths: 100,
            liquidity_penalty: 10_000,
            liquidity_penalty_millionths: 1_000,
            half_life: Duration::from_secs(6 * 3600),
        }
    }
}

/// What is known of one direction's liquidity: offsets from the no-knowledge bounds
/// `[0, capacity]`, as of `updated`. Offsets, not bounds, so that decay shrinks them to zero.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Liquidity {
    capacity: u128,
    /// The sender has at least this much.
    min: u128,
    /// The sender has at most `capacity - max_offset`.
    max_offset: u128,
    updated: Duration,
}

/// Learns liquidity bounds per channel direction and prices hops by the probability of getting
/// through them; see the module docs.
///
/// Time is given, never read: [`Self::time_passed`] and the `report_*` calls take `now`
/// (any epoch, as long as it is the same one each time); it never goes backwards.
#[derive(Clone, Debug)]
pub struct ProbabilisticScorer {
    params: ProbabilisticParams,
    now: Duration,
    /// When what had decayed to nothing was last forgotten.
    pruned_at: Duration,
    /// Looked up for every edge the router considers, so a hash map; seeded, so that nobody
    /// can pick channel ids that land in one bucket (ids that hash alike under every seed
    /// cost about 2^64 hashes: see `ChannelId`'s `Hash`), and deterministic.
    known: HashMap<ChannelDirection, Liquidity, foldhash::fast::FixedState>,
    /// One bit per [`filter_bit`] slot: clear if no direction in `known` falls in it. Most
    /// hops a search prices are unknown, and a bit in 8 KiB answers for them more cheaply than
    /// a probe of the map (channel ids that share slots only make the map probed more often).
    /// Empty until something is learnt: nodes that never pay keep none.
    maybe_known: Vec<u64>,
    /// Bumped whenever `known` changes (see [`Self::generation`]).
    generation: u64,
}

/// Words of [`ProbabilisticScorer::maybe_known`]: 2^16 bits.
const FILTER_WORDS: usize = 1024;

/// Sets `direction`'s slot in `filter` ([`ProbabilisticScorer::maybe_known`]), made whole
/// first if it is still empty.
fn mark_known(filter: &mut Vec<u64>, direction: &ChannelDirection) {
    if filter.is_empty() {
        *filter = vec![0; FILTER_WORDS];
    }
    let bit = filter_bit(direction);
    filter[bit / 64] |= 1 << (bit % 64);
}

/// The slot of `direction` in [`ProbabilisticScorer::maybe_known`]: its channel id's low bits
/// and which end sends (a snapshot's sequential indices get a slot each; the contract's ids
/// are hashes, spread evenly).
fn filter_bit(direction: &ChannelDirection) -> usize {
    let low = direction.channel.0.as_limbs()[0];
    let slot = (low << 1) | u64::from(direction.from_lower);
    (slot % (FILTER_WORDS as u64 * 64)) as usize
}

impl ProbabilisticScorer {
    /// A scorer that knows nothing yet; `seed` keys its hash map.
    pub fn new(params: ProbabilisticParams, seed: u64) -> Self {
        Self {
            params,
            now: Duration::ZERO,
            pruned_at: Duration::ZERO,
            known: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
            maybe_known: Vec::new(),
            generation: 0,
        }
    }

    /// Moves the clock to `now`, and forgets what has decayed to nothing (a walk over all it
    /// knows, so at most once a half-life: a node calls this on every input, and what has
    /// decayed reads as unknown anyway).
    pub fn time_passed(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if self.now < self.pruned_at.saturating_add(self.params.half_life) {
            return;
        }
        self.pruned_at = self.now;
        self.generation += 1;
        let (params, now) = (self.params, self.now);
        self.known.retain(|_, liquidity| {
            let (min, max_offset) = liquidity.decayed(&params, now);
            min > 0 || max_offset > 0
        });
        self.maybe_known.fill(0);
        for direction in self.known.keys() {
            mark_known(&mut self.maybe_known, direction);
        }
    }

    /// A payment part went through every hop of `path`: each hop had at least what it carried,
    /// and now has that much less.
    pub fn report_success(&mut self, path: &[RouteHop], now: Duration) {
        self.now = self.now.max(now);
        for hop in path {
            let (lower, upper) = self.bounds(hop.direction, hop.capacity);
            let lower = lower.max(hop.amount.min(upper));
            self.learn(
                hop,
                lower.saturating_sub(hop.amount),
                upper.saturating_sub(hop.amount),
            );
        }
    }

    /// A payment part failed at `path[failed]`, whose sender could not forward it: the hops
    /// before had enough for what they carried, that one had less. Hops after it taught nothing.
    /// A `failed` past the end is taken as the last hop.
    pub fn report_failure(&mut self, path: &[RouteHop], failed: usize, now: Duration) {
        self.now = self.now.max(now);
        let failed = failed.min(path.len().saturating_sub(1));
        for (index, hop) in path.iter().enumerate().take(failed + 1) {
            let (lower, upper) = self.bounds(hop.direction, hop.capacity);
            if index < failed {
                // New knowledge wins over old: an upper bound it contradicts is dropped.
                let lower = lower.max(hop.amount);
                self.learn(hop, lower, upper.max(lower));
            } else {
                let upper = upper.min(hop.amount.saturating_sub(1));
                self.learn(hop, lower.min(upper), upper);
            }
        }
    }

    /// The current liquidity bounds of a direction with this capacity: `[0, capacity]` if
    /// nothing is known.
    pub fn bounds(&self, direction: ChannelDirection, capacity: u128) -> (u128, u128) {
        let bit = filter_bit(&direction);
        if self
            .maybe_known
            .get(bit / 64)
            .is_none_or(|word| word & (1 << (bit % 64)) == 0)
        {
            return (0, capacity);
        }
        match self.known.get(&direction) {
            Some(liquidity) if liquidity.capacity == capacity => {
                let (min, max_offset) = liquidity.decayed(&self.params, self.now);
                let upper = capacity - max_offset.min(capacity);
                (min.min(upper), upper)
            }
            _ => (0, capacity),
        }
    }

    /// Counts the changes to what the scorer knows (each direction learned, each prune). A
    /// clone that learns nothing, advanced to some time, prices every hop as this scorer does
    /// at that time for as long as this one's generation is still the clone's: a prune forgets
    /// only what had decayed to nothing, which prices as unknown, so pruning at another time
    /// changes no price.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many directions the scorer knows something about.
    pub fn known_directions(&self) -> usize {
        self.known.len()
    }

    fn learn(&mut self, hop: &RouteHop, lower: u128, upper: u128) {
        self.generation += 1;
        mark_known(&mut self.maybe_known, &hop.direction);
        self.known.insert(
            hop.direction,
            Liquidity {
                capacity: hop.capacity,
                min: lower,
                max_offset: hop.capacity - upper.min(hop.capacity),
                updated: self.now,
            },
        );
    }

    fn probability(&self, hop: &DirectedChannel, amount: u128) -> f64 {
        let (lower, upper) = if self.known.is_empty() {
            (0, hop.capacity)
        } else {
            self.bounds(hop.direction(), hop.capacity)
        };
        if amount <= lower {
            1.0
        } else if amount > upper {
            0.0
        } else {
            // The liquidity is taken as uniform over the integers lower..=upper.
            (as_f64(upper - amount) + 1.0) / (as_f64(upper - lower) + 1.0)
        }
    }
}

/// u128 to f64 conversion is a library call; most amounts fit in u64, whose is an instruction.
/// The wide case stays out of line: written inline, the compiler sees that both cases give
/// the same value and keeps only the library call.
fn as_f64(value: u128) -> f64 {
    #[cold]
    #[inline(never)]
    fn wide(value: u128) -> f64 {
        value as f64
    }
    match u64::try_from(value) {
        Ok(value) => value as f64,
        Err(_) => wide(value),
    }
}

/// f64 to u128 (`as`: truncated, saturating, NaN to 0), an instruction where the value fits
/// in u64 (see [`as_f64`]).
fn as_u128(value: f64) -> u128 {
    #[cold]
    #[inline(never)]
    fn wide(value: f64) -> u128 {
        value as u128
    }
    // 2^64: below it (and for NaN and negatives, which `as` takes to 0 either way) u64 holds
    // the truncated value.
    if value < 18_446_744_073_709_551_616.0 || value.is_nan() {
        u128::from(value as u64)
    } else {
        wide(value)
    }
}

impl Liquidity {
    /// The offsets as of `now`: halved every half-life since `updated`.
    fn decayed(&self, params: &ProbabilisticParams, now: Duration) -> (u128, u128) {
        let elapsed = now.saturating_sub(self.updated);
        if elapsed.is_zero() {
            return (self.min, self.max_offset);
        }
        let half_lives = elapsed.as_secs_f64() / params.half_life.as_secs_f64().max(1e-9);
        let factor = (-half_lives).exp2();
        let scale = |offset: u128| as_u128(as_f64(offset) * factor);
        (scale(self.min), scale(self.max_offset))
    }
}

impl Scorer for ProbabilisticScorer {
    fn penalty(&self, hop: &DirectedChannel, amount: u128) -> Option<u64> {
        let probability = self.probability(hop, amount);
        if probability <= 0.0 {
            return None;
        }
        let per_million =
            |millionths: u32| scale(amount, u64::from(millionths), 1_000_000).unwrap_or(u128::MAX);
        let base = u128::from(self.params.base_penalty)
            .saturating_add(per_million(self.params.base_penalty_millionths));
        let liquidity = if probability >= 1.0 {
            0
        } else {
            let weight = self.params.liquidity_penalty as f64
                + as_f64(per_million(self.params.liquidity_penalty_millionths));
            // `as` saturates; floor keeps the penalty monotone in the amount.
            as_u128(weight * -probability.log2())
        };
        Some(u64::try_from(base.saturating_add(liquidity)).unwrap_or(u64::MAX))
    }

    fn success_probability(&self, hop: &DirectedChannel, amount: u128) -> f64 {
        self.probability(hop, amount)
    }
}

#[cfg(test)]
mod tests {
    use super::{as_f64, as_u128};

    #[test]
    fn the_fast_conversions_give_what_as_gives() {
        let two_64 = 18_446_744_073_709_551_616.0_f64;
        for value in [
            0.0,
            -0.0,
            -1.5,
            0.999,
            1.0,
            12_345.678,
            two_64 / 2.0,
            two_64 - 4096.0,
            two_64,
            two_64 * 3.5,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert_eq!(as_u128(value), value as u128, "{value}");
        }
        for value in [
            0,
            1,
            u128::from(u64::MAX) - 1,
            u128::from(u64::MAX),
            u128::from(u64::MAX) + 1,
            u128::MAX,
            (1 << 100) + 12_345,
        ] {
            assert_eq!(as_f64(value).to_bits(), (value as f64).to_bits(), "{value}");
        }
    }
}

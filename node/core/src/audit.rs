//! Conservation checks any driver can run on its nodes: what the contract must hold, and
//! whether one node's view of a channel accounts for every token deposited in it.

use alloy_primitives::U256;
use hoplite_chain::events::{OnChainChannel, Phase};
use hoplite_htlc::{Channel, ChannelId, Participant, Side};

/// What the contract must hold for `channels` (every channel it has, as its events built
/// them): the open and closed ones' deposits less withdrawals, the settled ones' pots.
pub fn contract_owes<'a>(channels: impl IntoIterator<Item = &'a OnChainChannel>) -> U256 {
    channels
        .into_iter()
        .map(|c| match c.phase {
            Phase::Opened | Phase::Closed => c.available(),
            Phase::Settled { .. } => c.pots.iter().flatten().map(|pot| pot.remaining).sum(),
        })
        .sum()
}

/// A channel view that does not account for its deposits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Imbalance {
    /// A side has spent more than it holds.
    #[error("channel {0}: a side's balance is negative")]
    Negative(ChannelId),
    /// Deposits differ from both balances plus both sides' pending locks.
    #[error("channel {channel}: deposits {deposits} but balances and locks {accounted}")]
    Unaccounted {
        /// The channel.
        channel: ChannelId,
        /// Both deposits.
        deposits: U256,
        /// Both balances plus both sides' locks.
        accounted: U256,
    },
}

/// Checks that in `channel` (one node's view) the deposits equal both balances plus both
/// sides' pending locks, with no balance negative.
pub fn check_channel(channel: &Channel) -> Result<(), Imbalance> {
    let [ours, partner] = [Side::Ours, Side::Partner].map(|s| channel.participant(s));
    let deposits = ours.total_deposit().to_u256() + partner.total_deposit().to_u256();
    let balance = |me: &Participant, other: &Participant| {
        (me.total_deposit().to_u256() + other.transferred_amount().to_u256())
            .checked_sub(me.transferred_amount().to_u256() + me.locks().total().to_u256())
            .ok_or(Imbalance::Negative(channel.id()))
    };
    let accounted = balance(ours, partner)?
        + balance(partner, ours)?
        + ours.locks().total().to_u256()
        + partner.locks().total().to_u256();
    if deposits == accounted {
        Ok(())
    } else {
        Err(Imbalance::Unaccounted {
            channel: channel.id(),
            deposits,
            accounted,
        })
    }
}

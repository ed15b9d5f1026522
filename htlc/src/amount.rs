//! Token amounts with uint256 semantics and checked arithmetic only.

use alloy_primitives::U256;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of a channel's token, in its smallest unit.
///
/// On-chain amounts are `uint256`; this type has the same range. There are no `+`/`-` operators:
/// every operation is checked and the caller decides what an overflow means (for peer input it
/// is always a rejected message, never a wrapped balance).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(U256);

impl Amount {
    /// Zero tokens.
    pub const ZERO: Self = Self(U256::ZERO);
    /// The largest amount a `uint256` holds.
    pub const MAX: Self = Self(U256::MAX);

    /// An amount from a `u128` (enough for any real token supply).
    pub const fn from_u128(value: u128) -> Self {
        Self(U256::from_limbs([value as u64, (value >> 64) as u64, 0, 0]))
    }

    /// The amount as a `uint256`.
    pub const fn to_u256(self) -> U256 {
        self.0
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `self + rhs`, or `None` if it exceeds `uint256`.
    #[must_use]
    pub fn checked_add(self, rhs: Self) -> Option<Self> {
        self.0.checked_add(rhs.0).map(Self)
    }

    /// `self - rhs`, or `None` if it would be negative.
    #[must_use]
    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        self.0.checked_sub(rhs.0).map(Self)
    }

    /// The amount as 32 big-endian bytes, as the EVM encodes it.
    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }
}

impl From<U256> for Amount {
    fn from(value: U256) -> Self {
        Self(value)
    }
}

impl From<u64> for Amount {
    fn from(value: u64) -> Self {
        Self(U256::from(value))
    }
}

impl From<u128> for Amount {
    fn from(value: u128) -> Self {
        Self::from_u128(value)
    }
}

impl From<Amount> for U256 {
    fn from(value: Amount) -> Self {
        value.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked_at_the_uint256_edges() {
        assert_eq!(Amount::MAX.checked_add(Amount::from(1u64)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::from(1u64)), None);
        assert_eq!(
            Amount::from(7u64).checked_add(Amount::from(5u64)),
            Some(Amount::from(12u64))
        );
        assert_eq!(
            Amount::from_u128(u128::MAX).to_u256(),
            U256::from(u128::MAX)
        );
    }
}

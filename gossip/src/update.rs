//! A channel direction's policy, signed by its side.

use alloy_primitives::{Address, B256};
use hoplite_htlc::crypto::{Recovered, SignatureError, recover_address};
use hoplite_htlc::{ChannelId, PrivateKey, Signature, TokenNetwork};
use hoplite_routing::Policy;
use serde::{Deserialize, Serialize};

mod eip712 {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        /// One direction's routing policy, signed by its sender.
        struct ChannelUpdate {
            uint256 channelId;
            address participant;
            uint64 timestamp;
            uint64 baseFee;
            uint32 feeMillionths;
            uint16 expiryDelta;
            uint128 minLock;
            uint128 maxLock;
            bool enabled;
        }
    }
}

/// One direction's policy, signed by `participant`, the side that sends on it.
///
/// Signed as the EIP-712 type `ChannelUpdate(uint256 channelId,address participant,uint64
/// timestamp,uint64 baseFee,uint32 feeMillionths,uint16 expiryDelta,uint128 minLock,uint128
/// maxLock,bool enabled)` under the token network's domain, like every signed Hoplite message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelUpdate {
    /// The chain and contract of the channel.
    pub token_network: TokenNetwork,
    /// The channel.
    pub channel: ChannelId,
    /// The side whose outgoing direction this is.
    pub participant: Address,
    /// Seconds (the signer's clock); a newer update replaces an older one.
    pub timestamp: u64,
    /// The policy.
    pub policy: Policy,
    /// `participant`'s signature.
    pub signature: Signature,
}

impl ChannelUpdate {
    /// Signs `policy` for `key`'s direction of `channel`.
    pub fn sign(
        key: &PrivateKey,
        token_network: TokenNetwork,
        channel: ChannelId,
        timestamp: u64,
        policy: Policy,
    ) -> Self {
        Self::sign_known(key, token_network, channel, timestamp, policy).0
    }

    /// [`Self::sign`], and its signer known: checking one's own update costs no recovery.
    pub fn sign_known(
        key: &PrivateKey,
        token_network: TokenNetwork,
        channel: ChannelId,
        timestamp: u64,
        policy: Policy,
    ) -> (Self, Recovered) {
        let mut update = Self {
            token_network,
            channel,
            participant: key.address(),
            timestamp,
            policy,
            signature: Signature(Default::default()),
        };
        let (signature, known) = Recovered::sign(key, &update.digest());
        update.signature = signature;
        (update, known)
    }

    /// The EIP-712 digest that is signed.
    pub fn digest(&self) -> B256 {
        let p = &self.policy;
        let typed = eip712::ChannelUpdate {
            channelId: self.channel.0,
            participant: self.participant,
            timestamp: self.timestamp,
            baseFee: p.base_fee,
            feeMillionths: p.fee_millionths,
            expiryDelta: p.expiry_delta,
            minLock: p.min_lock,
            maxLock: p.max_lock,
            enabled: p.enabled,
        };
        self.token_network.typed_digest(&typed)
    }

    /// Who signed it.
    pub fn signer(&self) -> Result<Address, SignatureError> {
        recover_address(&self.digest(), &self.signature)
    }
}

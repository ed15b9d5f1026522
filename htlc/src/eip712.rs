//! Every EIP-712 type a TokenNetwork verifies, as `sol!` structs (type strings and struct hashes
//! are alloy's). All are signed under [`crate::TokenNetwork::domain`]; see
//! [`crate::TokenNetwork::typed_digest`].

#![allow(missing_docs)]

alloy_sol_types::sol! {
    /// One direction's state, signed by its sender (see [`crate::BalanceProof`]).
    #[derive(Debug, PartialEq, Eq)]
    struct BalanceProof {
        uint256 channelId;
        uint64 nonce;
        uint256 transferredAmount;
        uint256 lockedAmount;
        bytes32 locksRoot;
    }

    /// Final balances both participants sign to close at once.
    #[derive(Debug, PartialEq, Eq)]
    struct CooperativeSettle {
        uint256 channelId;
        address participant1;
        uint256 balance1;
        address participant2;
        uint256 balance2;
    }

    /// A raise of `participant`'s withdrawn total, signed by both participants, valid until block
    /// `expiry`.
    #[derive(Debug, PartialEq, Eq)]
    struct Withdraw {
        uint256 channelId;
        address participant;
        uint256 totalWithdraw;
        uint256 expiry;
    }

    /// The non-closing participant's consent to submitting the closer's balance proof whose
    /// EIP-712 digest is `balanceProof`: what a watchtower holds.
    #[derive(Debug, PartialEq, Eq)]
    struct BalanceProofUpdate {
        uint256 channelId;
        bytes32 balanceProof;
    }
}

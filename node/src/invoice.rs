//! Invoices: what a payee asks to be paid, signed by it.

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolStruct;
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::{Amount, PrivateKey, Signature, TokenNetwork};
use serde::{Deserialize, Serialize};
use std::fmt;

mod eip712 {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        /// A payee's request to be paid.
        struct Invoice {
            address payee;
            bytes32 paymentId;
            uint256 amount;
            uint64 expiresAt;
        }
    }
}

/// Names one payment: chosen by the payee for an invoice (from its seeded randomness), by the
/// payer for a spontaneous payment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PaymentId(pub B256);

impl fmt::Debug for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentId({:.8})", self.0)
    }
}

/// A payee's signed request: pay `amount` for `payment` before `expires_at`.
///
/// The secret that unlocks the payment's locks is made by the payer, afresh for every attempt
/// (see the crate docs, "Payments"), so the invoice names the payment rather than a secret hash.
/// Signed as the EIP-712 type `Invoice(address payee,bytes32 paymentId,uint256 amount,uint64
/// expiresAt)` under the token network's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The token network to pay on.
    pub token_network: TokenNetwork,
    /// Who is paid.
    pub payee: Address,
    /// The payment it names.
    pub payment: PaymentId,
    /// What the payee is to receive.
    pub amount: Amount,
    /// Seconds (the payee's clock) after which the payee refuses it.
    pub expires_at: u64,
    /// The payee's signature.
    pub signature: Signature,
}

/// Why an invoice can't be paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// Not signed by the payee it names.
    #[error("invoice not signed by its payee")]
    BadSignature,
    /// For another chain or contract.
    #[error("invoice for another token network")]
    WrongTokenNetwork,
    /// Past its expiry.
    #[error("invoice expired at {expires_at}, now is {now}")]
    Expired {
        /// Its expiry, seconds.
        expires_at: u64,
        /// Now, seconds.
        now: u64,
    },
    /// An amount of zero.
    #[error("invoice for zero")]
    ZeroAmount,
}

impl Invoice {
    /// The payee's invoice.
    pub fn sign(
        key: &PrivateKey,
        token_network: TokenNetwork,
        payment: PaymentId,
        amount: Amount,
        expires_at: u64,
    ) -> Self {
        let mut invoice = Self {
            token_network,
            payee: key.address(),
            payment,
            amount,
            expires_at,
            signature: Signature(Default::default()),
        };
        invoice.signature = key.sign_digest(&invoice.digest());
        invoice
    }

    /// The EIP-712 digest that is signed.
    pub fn digest(&self) -> B256 {
        let typed = eip712::Invoice {
            payee: self.payee,
            paymentId: self.payment.0,
            amount: self.amount.to_u256(),
            expiresAt: self.expires_at,
        };
        typed.eip712_signing_hash(&self.token_network.domain())
    }

    /// Checks it before paying: signed by its payee, for `token_network`, not expired.
    pub fn check(&self, token_network: TokenNetwork, now_secs: u64) -> Result<(), InvoiceError> {
        if self.token_network != token_network {
            return Err(InvoiceError::WrongTokenNetwork);
        }
        if self.amount.is_zero() {
            return Err(InvoiceError::ZeroAmount);
        }
        if now_secs > self.expires_at {
            return Err(InvoiceError::Expired {
                expires_at: self.expires_at,
                now: now_secs,
            });
        }
        match recover_address(&self.digest(), &self.signature) {
            Ok(signer) if signer == self.payee => Ok(()),
            _ => Err(InvoiceError::BadSignature),
        }
    }
}

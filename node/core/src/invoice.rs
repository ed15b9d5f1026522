//! Invoices: what a payee asks to be paid, signed by it.

use alloy_primitives::{Address, B256};
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
        self.token_network.typed_digest(&typed)
    }

    /// The signature [`Self::check`] checks, with its digest (a driver may recover it on
    /// another thread and check inside [`hoplite_htlc::crypto::Recovered::scope`]).
    pub fn signatures(&self) -> [(B256, Signature); 1] {
        [(self.digest(), self.signature)]
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
        let [(digest, signature)] = self.signatures();
        match recover_address(&digest, &signature) {
            Ok(signer) if signer == self.payee => Ok(()),
            _ => Err(InvoiceError::BadSignature),
        }
    }
}

/// What starts an invoice's text form: `hoplite1` and the hex of its postcard encoding.
pub const INVOICE_PREFIX: &str = "hoplite1";

/// The longest invoice text accepted (an encoding is under 200 bytes).
pub const MAX_INVOICE_TEXT: usize = 1_024;

/// Why a text is not an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceParseError {
    /// Longer than [`MAX_INVOICE_TEXT`].
    #[error("invoice text over {MAX_INVOICE_TEXT} characters")]
    TooLong,
    /// Not `hoplite1` followed by hex.
    #[error("not an invoice: it starts with {INVOICE_PREFIX} followed by hex")]
    NotInvoice,
    /// The hex does not decode to an invoice.
    #[error("invoice text does not decode")]
    Malformed,
}

/// The text form people and APIs pass around; [`str::parse`] reads it back (the signature is
/// checked by [`Invoice::check`], not by parsing).
impl fmt::Display for Invoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = postcard::to_allocvec(self).map_err(|_| fmt::Error)?;
        write!(
            f,
            "{INVOICE_PREFIX}{}",
            alloy_primitives::hex::encode(bytes)
        )
    }
}

impl std::str::FromStr for Invoice {
    type Err = InvoiceParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_INVOICE_TEXT {
            return Err(InvoiceParseError::TooLong);
        }
        let hex = text
            .trim()
            .strip_prefix(INVOICE_PREFIX)
            .ok_or(InvoiceParseError::NotInvoice)?;
        let bytes =
            alloy_primitives::hex::decode(hex).map_err(|_| InvoiceParseError::NotInvoice)?;
        match postcard::take_from_bytes::<Self>(&bytes) {
            Ok((invoice, [])) => Ok(invoice),
            _ => Err(InvoiceParseError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_refuses_what_is_not_an_invoice() {
        let key = hoplite_htlc::testing::key(1, 0);
        let network = TokenNetwork {
            chain_id: 1,
            address: Address::repeat_byte(7),
        };
        let invoice = Invoice::sign(
            &key,
            network,
            PaymentId(B256::repeat_byte(3)),
            Amount::from(500u64),
            99,
        );
        let text = invoice.to_string();
        assert!(text.starts_with(INVOICE_PREFIX));
        assert_eq!(text.parse::<Invoice>(), Ok(invoice));
        assert_eq!(
            text[..text.len() - 2].parse::<Invoice>(),
            Err(InvoiceParseError::Malformed)
        );
        assert_eq!(
            format!("{text}00").parse::<Invoice>(),
            Err(InvoiceParseError::Malformed)
        );
        assert_eq!(
            "lnbc1".parse::<Invoice>(),
            Err(InvoiceParseError::NotInvoice)
        );
        assert_eq!(
            "hoplite1zz".parse::<Invoice>(),
            Err(InvoiceParseError::NotInvoice)
        );
        assert_eq!(
            "x".repeat(2_000).parse::<Invoice>(),
            Err(InvoiceParseError::TooLong)
        );
    }
}

//! x
mod amount;
mod channel;
pub mod crypto;
mod error;
pub mod locks;
mod message;
mod proof;
#[cfg(feature = "test-utils")]
pub mod testing;
mod types;
pub use amount::Amount;
pub use channel::*;
pub use crypto::{PrivateKey, Signature};
pub use error::*;
pub use message::*;
pub use proof::*;
pub use types::*;

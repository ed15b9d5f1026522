//! x
mod amount;
pub mod crypto;
pub mod locks;
mod proof;
mod types;
pub use amount::Amount;
pub use proof::*;
pub use types::*;

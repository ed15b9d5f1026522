//! Hoplite's channel core: balance proofs, hash-time-locks, EIP-712 signing and the two-party
//! channel state machine. Pure: no clock, no socket, no randomness of its own; the current block
//! comes in from the caller.
//!
//! # Layout
//! - [`Amount`], [`ChannelId`], [`Nonce`], [`BlockNumber`], [`Secret`], [`SecretHash`], [`Lock`]:
//!   the vocabulary (`amount.rs`, `types.rs`).
//! - [`locks`]: the pending locks of one direction and their Merkle root, updated in O(log n).
//! - [`crypto`]: signing and recovery behind one interface, two backends (libsecp256k1, k256).
//! - [`BalanceProof`], [`TokenNetwork`]: the signed state and its EIP-712 domain (`proof.rs`);
//!   [`eip712`]: every typed message the contract verifies (withdraw, cooperative settle, update).
//! - [`BalanceUpdate`], [`BalanceChange`]: the messages that move a direction forward, and their
//!   bounded postcard encoding (`message.rs`).
//! - [`Channel`]: both directions of one channel as one participant sees them (`channel.rs`).
//! - Errors sorted by what the caller must do (`error.rs`, see [`ErrorAction`]).
//! - `testing` (feature `test-utils`): both ends of a channel in one process.
//!
//! # Full duplex
//! Each direction of a channel is a ledger its sender alone signs: nonce, transferred amount,
//! locked amount and locks root. Both sides can pay at once; a transfer costs one signature and
//! one recovery. What `A` can spend is
//! `depositA − withdrawnA − transferredA→B − lockedA→B + transferredB→A`.
//!
//! # Signed bytes (the contract matches these exactly)
//! The digest of a balance proof is EIP-712:
//! `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(proof))` with
//! - domain `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`,
//!   name `"Hoplite"`, version `"1"`, the chain id and the TokenNetwork contract;
//! - type `BalanceProof(uint256 channelId,uint64 nonce,uint256 transferredAmount,uint256
//!   lockedAmount,bytes32 locksRoot)`; each field is one 32-byte big-endian word.
//!
//! Signatures are 65 bytes `r ‖ s ‖ v`, `v ∈ {27, 28}`, `s` in the lower half of the group order.
//!
//! # Locks root
//! The pending locks of a direction sit in slots `0..n`. A new lock takes slot `n`; removing the
//! lock in slot `i` moves the lock in the last slot into `i` (swap-remove). Then:
//! - leaf `i` = `keccak256(abi.encode(uint256 amount, uint64 expiration, bytes32 secretHash))`
//!   of the lock in slot `i` (96 bytes: each field left-padded to 32 bytes);
//! - level `k+1` pairs up level `k`: node `j` = `keccak256(level_k[2j] ‖ level_k[2j+1])`, where a
//!   missing right child (odd length) is 32 zero bytes; levels shrink until one node is left;
//! - the root is that node, the leaf itself when `n = 1`, and 32 zero bytes when `n = 0`.
//!
//! The tree is `ceil(log2 n)` deep. A membership proof of slot `i` lists one sibling per level,
//! leaf level first; bit `k` of `i` says whether the path node at height `k` is a right child.
//! Leaves hash 96 bytes and inner nodes 64, so one can't pass for the other. `secretHash` is
//! `sha256(secret)`. `test-vectors/balance-proofs.json` has worked examples of all of this,
//! computed by an independent implementation.
//!
//! # Rules of a new proof
//! Checked by [`Channel::handle_update`] for the partner's proofs and by [`Channel::send`] for
//! ours (one function, so the two can't drift): same chain, contract and channel; signed by the
//! sender; nonce exactly one more than the last; the transferred amount, locked amount and locks
//! root exactly what the change implies (so transferred never decreases); amounts non-zero and
//! within the sender's spendable balance; no total beyond `uint256`; a new lock expires after
//! `current_block + reveal_timeout` (a bound on its sender only: a receiver whose view of the chain
//! is ahead accepts it, and must not forward or claim it) and no later than
//! `current_block + settle_timeout`; at most
//! [`locks::MAX_PENDING_LOCKS`] pending; a secret hash names one pending lock; `Unlock` carries the
//! lock's secret; `LockExpired` only once `current_block > expiration`.
//!
//! # Example
//! ```
//! use alloy_primitives::{Address, B256};
//! use hoplite_htlc::*;
//!
//! let network = TokenNetwork { chain_id: 1, address: Address::repeat_byte(0xaa) };
//! let config = ChannelConfig { reveal_timeout: 10, settle_timeout: 500 };
//! let (alice, bob) = (PrivateKey::from_bytes(&B256::repeat_byte(1))?, PrivateKey::from_bytes(&B256::repeat_byte(2))?);
//! let id = ChannelId::from(7);
//! let mut at_alice = Channel::new(network, id, config, alice.address(), bob.address())?;
//! let mut at_bob = Channel::new(network, id, config, bob.address(), alice.address())?;
//! at_alice.set_total_deposit(Side::Ours, Amount::from(100u64))?;
//! at_bob.set_total_deposit(Side::Partner, Amount::from(100u64))?;
//!
//! let block = BlockNumber(1);
//! let update = at_alice.send(&alice, BalanceChange::DirectTransfer { amount: Amount::from(30u64) }, block)?;
//! at_bob.handle_update(&BalanceUpdate::decode(&update.encode())?, block)?;
//! assert_eq!(at_bob.spendable(Side::Ours), Amount::from(30u64));
//! assert_eq!(at_bob.spendable(Side::Partner), Amount::from(70u64));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod amount;
mod channel;
pub mod crypto;
pub mod eip712;
mod error;
pub mod locks;
mod message;
mod proof;
#[cfg(feature = "test-utils")]
pub mod testing;
mod types;

pub use amount::Amount;
pub use channel::{Channel, ChannelConfig, Participant, Side};
pub use crypto::{PrivateKey, Signature};
pub use error::{BalanceError, ConfigError, ErrorAction, ReceiveError, SendError, Violation};
pub use message::{BalanceChange, BalanceUpdate, DecodeError, MAX_UPDATE_SIZE};
pub use proof::{BalanceProof, DOMAIN_NAME, DOMAIN_VERSION, SignedBalanceProof, TokenNetwork};
pub use types::{BlockNumber, ChannelId, Lock, Nonce, Secret, SecretHash};

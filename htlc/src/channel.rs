//! The two-party channel: both directions of one channel, as seen by one participant.

use crate::error::{BalanceError, ConfigError, ReceiveError, SendError, Violation};
use crate::locks::{InsertError, PendingLocks};
use crate::{
    Amount, BalanceChange, BalanceProof, BalanceUpdate, BlockNumber, ChannelId, Lock, Nonce,
    PrivateKey, SignedBalanceProof, TokenNetwork,
};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// Timing limits of a channel, in blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// The fewest blocks a lock's receiver must have, after receiving it, to learn the secret and
    /// register it on-chain. A new lock must expire later than `current_block + reveal_timeout`.
    pub reveal_timeout: u64,
    /// The on-chain challenge window. A new lock may expire at most this far ahead, so every
    /// lock can still be claimed after a close.
    pub settle_timeout: u64,
}

/// One of the two participants of a channel, from our point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Us: we sign this direction.
    Ours,
    /// The partner: we verify this direction.
    Partner,
}

/// One participant: its on-chain totals and the direction it signs (its outgoing simplex ledger).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    address: Address,
    total_deposit: Amount,
    total_withdraw: Amount,
    nonce: Nonce,
    transferred: Amount,
    locks: PendingLocks,
    latest: Option<SignedBalanceProof>,
}

impl Participant {
    fn new(address: Address) -> Self {
        Self {
            address,
            total_deposit: Amount::ZERO,
            total_withdraw: Amount::ZERO,
            nonce: Nonce(0),
            transferred: Amount::ZERO,
            locks: PendingLocks::new(),
            latest: None,
        }
    }

    /// The participant's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Everything it deposited on-chain.
    pub fn total_deposit(&self) -> Amount {
        self.total_deposit
    }

    /// Everything it withdrew on-chain.
    pub fn total_withdraw(&self) -> Amount {
        self.total_withdraw
    }

    /// The nonce of its latest proof (0 before the first).
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// Everything it paid the other participant.
    pub fn transferred_amount(&self) -> Amount {
        self.transferred
    }

    /// Its pending locks towards the other participant.
    pub fn locks(&self) -> &PendingLocks {
        &self.locks
    }

    /// Its latest signed proof: for the partner, the one we take on-chain.
    pub fn latest_proof(&self) -> Option<&SignedBalanceProof> {
        self.latest.as_ref()
    }
}

/// `deposit + received − withdrawn − sent − locked`, or `None` if negative or beyond `uint256`.
fn balance(
    deposit: Amount,
    withdrawn: Amount,
    sent: Amount,
    locked: Amount,
    received: Amount,
) -> Option<Amount> {
    let debit = withdrawn.checked_add(sent)?.checked_add(locked)?;
    deposit.checked_add(received)?.checked_sub(debit)
}

/// How to take back a change to a sender's locks if its proof turns out not to match.
enum Undo {
    Nothing,
    Insert,
    Remove { slot: usize, lock: Lock },
}

/// A change checked against the rules and applied to the sender's locks, not yet committed.
struct Applied {
    transferred: Amount,
    undo: Undo,
}

/// Both directions of one open channel, as one participant sees them (full duplex: each side
/// signs its own direction, so both can pay at once).
///
/// # Call order
/// - [`send`](Self::send) signs our next state and returns the update to deliver to the partner;
///   updates must reach the partner in the order they were made.
/// - [`handle_update`](Self::handle_update) checks and applies the partner's next update.
/// - [`set_total_deposit`](Self::set_total_deposit) and
///   [`set_total_withdraw`](Self::set_total_withdraw) feed in what the chain confirmed.
///
/// Every method either succeeds or returns an error and leaves the channel unchanged. Nothing
/// here reads a clock: `current_block` comes from the caller.
///
/// Serialisable (serde) so a node can persist it; the persisted form is trusted local storage,
/// not peer input: deserialising checks the lock rules but no signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    token_network: TokenNetwork,
    domain_separator: B256,
    id: ChannelId,
    config: ChannelConfig,
    ours: Participant,
    partner: Participant,
}

impl Channel {
    /// A freshly opened channel with nothing deposited.
    pub fn new(
        token_network: TokenNetwork,
        id: ChannelId,
        config: ChannelConfig,
        our_address: Address,
        partner_address: Address,
    ) -> Result<Self, ConfigError> {
        if our_address == partner_address {
            return Err(ConfigError::SameParticipant);
        }
        if config.reveal_timeout == 0 || config.reveal_timeout >= config.settle_timeout {
            return Err(ConfigError::Timeouts {
                reveal_timeout: config.reveal_timeout,
                settle_timeout: config.settle_timeout,
            });
        }
        Ok(Self {
            token_network,
            domain_separator: token_network.domain_separator(),
            id,
            config,
            ours: Participant::new(our_address),
            partner: Participant::new(partner_address),
        })
    }

    /// The chain and contract.
    pub fn token_network(&self) -> TokenNetwork {
        self.token_network
    }

    /// The channel's id in its contract.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The timing limits.
    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    /// A participant.
    pub fn participant(&self, side: Side) -> &Participant {
        match side {
            Side::Ours => &self.ours,
            Side::Partner => &self.partner,
        }
    }

    /// Whether a lock is pending in either direction.
    pub fn locks_pending(&self) -> bool {
        !self.participant(Side::Ours).locks().is_empty()
            || !self.participant(Side::Partner).locks().is_empty()
    }

    /// What `side` can still send or lock: `deposit − withdrawn − sent − locked + received`.
    pub fn spendable(&self, side: Side) -> Amount {
        let (me, other) = self.pair(side);
        // Every accepted state keeps both balances in range; see `apply`.
        balance(
            me.total_deposit,
            me.total_withdraw,
            me.transferred,
            me.locks.total(),
            other.transferred,
        )
        .unwrap_or(Amount::ZERO)
    }

    /// Records `side`'s on-chain deposit total (totals only grow).
    pub fn set_total_deposit(&mut self, side: Side, total: Amount) -> Result<(), BalanceError> {
        let (me, other) = self.pair(side);
        if total < me.total_deposit {
            return Err(BalanceError::TotalDecreased {
                current: me.total_deposit,
                new: total,
            });
        }
        // Settlement adds up both deposits: their sum must fit too.
        total
            .checked_add(other.total_deposit)
            .ok_or(BalanceError::AmountOverflow)?;
        balance(
            total,
            me.total_withdraw,
            me.transferred,
            me.locks.total(),
            other.transferred,
        )
        .ok_or(BalanceError::AmountOverflow)?;
        self.pair_mut(side).0.total_deposit = total;
        Ok(())
    }

    /// Records `side`'s on-chain withdrawn total; it can't exceed what `side` can spend.
    pub fn set_total_withdraw(&mut self, side: Side, total: Amount) -> Result<(), BalanceError> {
        let me = self.participant(side);
        let requested =
            total
                .checked_sub(me.total_withdraw)
                .ok_or(BalanceError::TotalDecreased {
                    current: me.total_withdraw,
                    new: total,
                })?;
        let spendable = self.spendable(side);
        if requested > spendable {
            return Err(BalanceError::WithdrawExceedsBalance {
                spendable,
                requested,
            });
        }
        self.pair_mut(side).0.total_withdraw = total;
        Ok(())
    }

    /// Signs our next state after `change` and returns the update for the partner.
    pub fn send(
        &mut self,
        key: &PrivateKey,
        change: BalanceChange,
        current_block: BlockNumber,
    ) -> Result<BalanceUpdate, SendError> {
        if key.address() != self.ours.address {
            return Err(SendError::WrongKey {
                expected: self.ours.address,
                got: key.address(),
            });
        }
        let nonce = self.ours.nonce.next().ok_or(SendError::NonceExhausted)?;
        let applied = self.apply(Side::Ours, &change, current_block)?;
        let proof = BalanceProof {
            token_network: self.token_network,
            channel_id: self.id,
            nonce,
            transferred_amount: applied.transferred,
            locked_amount: self.ours.locks.total(),
            locks_root: self.ours.locks.root(),
        }
        .sign(key, &self.domain_separator);
        Self::commit(&mut self.ours, proof);
        Ok(BalanceUpdate { change, proof })
    }

    /// Checks the partner's update and applies it.
    ///
    /// Checks, cheapest first: it is for this channel; it is not the proof we already hold; the
    /// partner signed it; its nonce is the next one; the change keeps the rules; the signed
    /// amounts and locks root are exactly what the change implies.
    pub fn handle_update(
        &mut self,
        update: &BalanceUpdate,
        current_block: BlockNumber,
    ) -> Result<(), ReceiveError> {
        let proof = &update.proof.proof;
        if proof.token_network != self.token_network {
            return Err(ReceiveError::WrongTokenNetwork {
                expected: self.token_network,
                got: proof.token_network,
            });
        }
        if proof.channel_id != self.id {
            return Err(ReceiveError::WrongChannel {
                expected: self.id,
                got: proof.channel_id,
            });
        }
        if self.partner.latest.as_ref() == Some(&update.proof) {
            return Err(ReceiveError::Duplicate);
        }
        let signer = update.proof.signer(&self.domain_separator)?;
        if signer != self.partner.address {
            return Err(ReceiveError::WrongSigner {
                expected: self.partner.address,
                got: signer,
            });
        }
        let latest = self.partner.nonce;
        if proof.nonce <= latest {
            return Err(ReceiveError::StaleNonce {
                latest,
                got: proof.nonce,
            });
        }
        if Some(proof.nonce) != latest.next() {
            return Err(ReceiveError::NonceGap {
                latest,
                got: proof.nonce,
            });
        }

        let applied = self.apply(Side::Partner, &update.change, current_block)?;
        let locks = &self.partner.locks;
        let mismatch = if proof.transferred_amount != applied.transferred {
            Some(ReceiveError::TransferredMismatch {
                expected: applied.transferred,
                got: proof.transferred_amount,
            })
        } else if proof.locked_amount != locks.total() {
            Some(ReceiveError::LockedMismatch {
                expected: locks.total(),
                got: proof.locked_amount,
            })
        } else if proof.locks_root != locks.root() {
            Some(ReceiveError::LocksRootMismatch {
                expected: locks.root(),
                got: proof.locks_root,
            })
        } else {
            None
        };
        if let Some(error) = mismatch {
            let locks = &mut self.partner.locks;
            match applied.undo {
                Undo::Nothing => {}
                Undo::Insert => locks.undo_insert(),
                Undo::Remove { slot, lock } => locks.undo_remove(slot, lock),
            }
            return Err(error);
        }
        Self::commit(&mut self.partner, update.proof);
        Ok(())
    }

    /// Checks `change` by `sender` against the rules and applies it to the sender's locks. The
    /// one place the rules live: what we sign and what we accept are checked alike.
    fn apply(
        &mut self,
        sender: Side,
        change: &BalanceChange,
        current_block: BlockNumber,
    ) -> Result<Applied, Violation> {
        let config = self.config;
        let spendable = self.spendable(sender);
        let (me, other) = self.pair_mut(sender);
        let locked = me.locks.total();
        let (transferred, locked) = match *change {
            BalanceChange::DirectTransfer { amount } => {
                if amount.is_zero() {
                    return Err(Violation::ZeroAmount);
                }
                let transferred = me
                    .transferred
                    .checked_add(amount)
                    .ok_or(Violation::AmountOverflow)?;
                (transferred, locked)
            }
            BalanceChange::LockedTransfer { lock } => {
                if lock.amount.is_zero() {
                    return Err(Violation::ZeroAmount);
                }
                // Past block u64::MAX there is no room for `reveal_timeout`, so no lock fits;
                // `latest` may saturate, as nothing expires after u64::MAX anyway.
                let earliest = current_block.0.checked_add(config.reveal_timeout + 1);
                let latest = BlockNumber(current_block.0.saturating_add(config.settle_timeout));
                // The lower bound binds the sender only. A receiver whose view of the chain is
                // ahead would otherwise refuse a state the sender already signed, and every
                // later state of that direction with it. A lock it can't claim on-chain in time
                // costs the receiver nothing: it just must not forward or claim it (the node's
                // check), and the sender removes it once expired.
                let fits = sender == Side::Partner
                    || earliest.is_some_and(|earliest| lock.expiration.0 >= earliest);
                if !fits || lock.expiration > latest {
                    return Err(Violation::LockExpirationOutOfRange {
                        expiration: lock.expiration,
                        earliest: BlockNumber(earliest.unwrap_or(u64::MAX)),
                        latest,
                    });
                }
                let locked = locked
                    .checked_add(lock.amount)
                    .ok_or(Violation::AmountOverflow)?;
                (me.transferred, locked)
            }
            BalanceChange::Unlock { secret } => {
                let secret_hash = secret.hash();
                let lock = me
                    .locks
                    .get(&secret_hash)
                    .ok_or(Violation::UnknownLock(secret_hash))?;
                let transferred = me
                    .transferred
                    .checked_add(lock.amount)
                    .ok_or(Violation::AmountOverflow)?;
                (
                    transferred,
                    locked.checked_sub(lock.amount).unwrap_or(Amount::ZERO),
                )
            }
            BalanceChange::LockExpired { secret_hash } => {
                let lock = me
                    .locks
                    .get(&secret_hash)
                    .ok_or(Violation::UnknownLock(secret_hash))?;
                if current_block <= lock.expiration {
                    return Err(Violation::LockNotExpired {
                        expiration: lock.expiration,
                        current_block,
                    });
                }
                (
                    me.transferred,
                    locked.checked_sub(lock.amount).unwrap_or(Amount::ZERO),
                )
            }
        };

        // Both balances must stay in range: the sender's not negative, the receiver's not past
        // uint256.
        if balance(
            me.total_deposit,
            me.total_withdraw,
            transferred,
            locked,
            other.transferred,
        )
        .is_none()
        {
            let needed = match *change {
                BalanceChange::DirectTransfer { amount } => amount,
                BalanceChange::LockedTransfer { lock } => lock.amount,
                _ => Amount::ZERO,
            };
            return Err(Violation::InsufficientBalance { spendable, needed });
        }
        balance(
            other.total_deposit,
            other.total_withdraw,
            other.transferred,
            other.locks.total(),
            transferred,
        )
        .ok_or(Violation::AmountOverflow)?;

        let undo = match *change {
            BalanceChange::DirectTransfer { .. } => Undo::Nothing,
            BalanceChange::LockedTransfer { lock } => {
                me.locks.insert(lock).map_err(|error| match error {
                    InsertError::Full => Violation::TooManyLocks,
                    InsertError::DuplicateSecretHash(hash) => Violation::DuplicateSecretHash(hash),
                    InsertError::Overflow => Violation::AmountOverflow,
                })?;
                Undo::Insert
            }
            BalanceChange::Unlock { secret } => Self::remove_lock(&mut me.locks, secret.hash()),
            BalanceChange::LockExpired { secret_hash } => {
                Self::remove_lock(&mut me.locks, secret_hash)
            }
        };
        Ok(Applied { transferred, undo })
    }

    fn remove_lock(locks: &mut PendingLocks, secret_hash: crate::SecretHash) -> Undo {
        match locks.remove(&secret_hash) {
            Some((slot, lock)) => Undo::Remove { slot, lock },
            None => Undo::Nothing,
        }
    }

    fn commit(participant: &mut Participant, proof: SignedBalanceProof) {
        participant.nonce = proof.proof.nonce;
        participant.transferred = proof.proof.transferred_amount;
        participant.latest = Some(proof);
    }

    fn pair(&self, side: Side) -> (&Participant, &Participant) {
        match side {
            Side::Ours => (&self.ours, &self.partner),
            Side::Partner => (&self.partner, &self.ours),
        }
    }

    fn pair_mut(&mut self, side: Side) -> (&mut Participant, &mut Participant) {
        match side {
            Side::Ours => (&mut self.ours, &mut self.partner),
            Side::Partner => (&mut self.partner, &mut self.ours),
        }
    }
}

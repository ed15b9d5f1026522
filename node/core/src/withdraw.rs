//! Withdrawing from an open channel: the contract pays a participant part of its balance at
//! once, if both participants signed its new withdrawn total before an expiry block.
//!
//! Between the withdrawer W and its partner Q:
//!
//! ```text
//! W → Q  WithdrawRequest(round, total, expiry)  no lock pending either way; W freezes the channel
//! Q → W  WithdrawAccepted(round, sig_Q)         only if Q's view lets W spend total − withdrawn;
//!                                               Q freezes the channel too
//!   or   WithdrawRefused(round)                 otherwise: W unfreezes
//! W      setTotalWithdraw(total, expiry, sig_W, sig_Q), sent again while it can still land
//! both   ChannelWithdraw on-chain: the withdrawn total applies, the channel unfreezes
//! ```
//!
//! A signed withdrawal can be submitted until its expiry block, so whoever signed one treats
//! the channel as frozen (no new lock or transfer either way, as during a cooperative close)
//! until the chain shows it or a block past the expiry: W could otherwise spend off-chain what
//! it also takes on-chain, and settlement would short Q. The chain's events come before their
//! block, so a node that sees a block past the expiry without the withdrawal knows it can no
//! longer land.

use crate::api::{ChainRequest, CommandError, Event, PeerError};
use crate::monitor::ChainFailure;
use crate::node::Node;
use crate::wire::Message;
use alloy_primitives::{Address, B256};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::eip712::Withdraw;
use hoplite_htlc::{
    Amount, BalanceError, BlockNumber, ChannelId, SendError, Side, Signature, Violation,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A withdrawal under way in one of our channels; the channel is frozen while it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Withdrawing {
    /// We asked the partner to sign our new withdrawn total.
    Requested {
        /// Our request's number.
        round: u64,
        /// Our new withdrawn total.
        total: Amount,
        /// The last block it may land in.
        expiry: BlockNumber,
    },
    /// Both signed our withdrawal: we submit it until the expiry.
    Submitted {
        /// Our new withdrawn total.
        total: Amount,
        /// The last block it may land in.
        expiry: BlockNumber,
        /// Ours, then the partner's.
        signatures: [Signature; 2],
        /// Where its submission stands.
        submit: Submit,
    },
    /// We signed the partner's withdrawal.
    Signed {
        /// Its new withdrawn total.
        total: Amount,
        /// The last block it may land in.
        expiry: BlockNumber,
    },
}

/// Where the submission of our signed withdrawal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Submit {
    /// Send it once the block is this one or later.
    Due(BlockNumber),
    /// Sent; its events or its failure will tell.
    InFlight,
    /// The contract refused it: not sent again. The signatures stay valid until the expiry
    /// (a copy may still land), so the channel stays frozen until then.
    GivenUp,
}

impl Withdrawing {
    fn expiry(&self) -> BlockNumber {
        match self {
            Self::Requested { expiry, .. }
            | Self::Submitted { expiry, .. }
            | Self::Signed { expiry, .. } => *expiry,
        }
    }
}

impl Node {
    /// Withdraws `amount` of our balance in `channel` to our account, with the partner's
    /// signature; the outcome comes as [`Event::Withdrawn`] or [`Event::WithdrawFailed`]. The
    /// channel carries no payment until then (`close_timeout` blocks at most). Refused while a
    /// lock is pending either way, or the channel is closing.
    pub fn withdraw(
        &mut self,
        now: Duration,
        channel: ChannelId,
        amount: Amount,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let partner = self.partner_of(channel)?;
        if self.is_closing(channel) {
            return Err(CommandError::ChannelClosing(channel));
        }
        let ours = self
            .channels
            .get(&channel)
            .ok_or(CommandError::UnknownChannel(channel))?;
        if ours.locks_pending() {
            return Err(CommandError::LocksPending(channel));
        }
        let spendable = ours.spendable(Side::Ours);
        if amount.is_zero() || amount > spendable {
            return Err(CommandError::Channel(SendError::Rule(
                Violation::InsufficientBalance {
                    spendable,
                    needed: amount,
                },
            )));
        }
        let total = ours
            .participant(Side::Ours)
            .total_withdraw()
            .checked_add(amount)
            .ok_or(CommandError::Channel(SendError::Rule(
                Violation::AmountOverflow,
            )))?;
        let expiry = BlockNumber(self.block.0.saturating_add(self.config.close_timeout));
        self.state.counters.close_rounds += 1;
        let round = self.state.counters.close_rounds;
        self.state.withdrawing.insert(
            channel,
            Withdrawing::Requested {
                round,
                total,
                expiry,
            },
        );
        self.announce_policy(channel);
        self.send(
            partner,
            Message::WithdrawRequest {
                channel,
                round,
                total,
                expiry,
            },
        );
        self.finish();
        Ok(())
    }

    /// The digest both sign for `participant`'s withdrawn total in `channel`.
    fn withdraw_digest(
        &self,
        channel: ChannelId,
        participant: Address,
        total: Amount,
        expiry: BlockNumber,
    ) -> B256 {
        self.config.token_network.typed_digest(&Withdraw {
            channelId: channel.0,
            participant,
            totalWithdraw: total.to_u256(),
            expiry: alloy_primitives::U256::from(expiry.0),
        })
    }

    /// The partner asks us to sign its new withdrawn total: if our view lets it.
    pub(crate) fn handle_withdraw_request(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
        total: Amount,
        expiry: BlockNumber,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        let again = matches!(
            self.state.withdrawing.get(&channel),
            Some(Withdrawing::Signed { total: t, expiry: e }) if *t == total && *e == expiry
        );
        if !again && !self.may_sign_withdrawal(channel, total, expiry) {
            self.send(from, Message::WithdrawRefused { channel, round });
            return Ok(());
        }
        // From now on nothing new goes either way until the chain shows it or it expires.
        let signature = self
            .key
            .sign_digest(&self.withdraw_digest(channel, from, total, expiry));
        if !again {
            self.state
                .withdrawing
                .insert(channel, Withdrawing::Signed { total, expiry });
            self.announce_policy(channel);
        }
        self.send(
            from,
            Message::WithdrawAccepted {
                channel,
                round,
                signature,
            },
        );
        Ok(())
    }

    /// Whether we may sign the partner's withdrawn total `total` until `expiry`: the channel
    /// is quiet (not closing, no withdrawal under way, no lock pending either way), the total
    /// grows by no more than the partner can spend, and the expiry leaves it a block at least
    /// and freezes the channel no longer than twice `close_timeout` blocks.
    fn may_sign_withdrawal(&self, channel: ChannelId, total: Amount, expiry: BlockNumber) -> bool {
        let Some(ours) = self.channels.get(&channel) else {
            return false;
        };
        let theirs = ours.participant(Side::Partner);
        let more = total.checked_sub(theirs.total_withdraw());
        !self.is_closing(channel)
            && !ours.locks_pending()
            && more.is_some_and(|more| !more.is_zero() && more <= ours.spendable(Side::Partner))
            && expiry.0 > self.block.0
            // Twice the withdrawer's `close_timeout`: our view of the chain may lag its own.
            && expiry.0 <= self.block.0.saturating_add(2 * self.config.close_timeout)
    }

    /// The partner signed our withdrawal: sign it too and submit it.
    pub(crate) fn handle_withdraw_accepted(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
        signature: Signature,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        let Some(Withdrawing::Requested { total, expiry, .. }) = self
            .state
            .withdrawing
            .get(&channel)
            .copied()
            .filter(|w| matches!(w, Withdrawing::Requested { round: r, .. } if *r == round))
        else {
            return Err(PeerError::Unsolicited("withdraw acceptance"));
        };
        let digest = self.withdraw_digest(channel, self.address, total, expiry);
        if recover_address(&digest, &signature).ok() != Some(from) {
            return Err(PeerError::BadSignature);
        }
        let ours = self.key.sign_digest(&digest);
        let submit = Submit::Due(self.block);
        self.state.withdrawing.insert(
            channel,
            Withdrawing::Submitted {
                total,
                expiry,
                signatures: [ours, signature],
                submit,
            },
        );
        Ok(())
    }

    /// The partner refused our withdrawal: the channel goes on.
    pub(crate) fn handle_withdraw_refused(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        if !matches!(self.state.withdrawing.get(&channel), Some(Withdrawing::Requested { round: r, .. }) if *r == round)
        {
            return Err(PeerError::Unsolicited("withdraw refusal"));
        }
        self.end_withdrawal(
            channel,
            Some(Event::WithdrawFailed {
                channel,
                refused: true,
            }),
        );
        Ok(())
    }

    /// The chain shows `participant`'s withdrawn total in `channel`. The freeze ends only
    /// when this is the withdrawal it was for (the other participant's landing, or a smaller
    /// total, leaves a signature of ours still valid).
    pub(crate) fn handle_withdrawn(
        &mut self,
        channel: ChannelId,
        participant: Address,
        total: Amount,
    ) {
        let Some(ours) = self.channels.get_mut(&channel) else {
            return;
        };
        let side = if participant == self.address {
            Side::Ours
        } else {
            Side::Partner
        };
        // Only a total both signed lands, and the freeze kept it within the balance; a view
        // that can't take it is not the chain's: close and settle by the chain's own data. A
        // total below ours is an older withdrawal replayed after a restart.
        match ours.set_total_withdraw(side, total) {
            Ok(()) => self.touch(channel),
            Err(BalanceError::WithdrawExceedsBalance { .. }) => self.request_close(channel),
            Err(_) => {}
        }
        let done = match self.state.withdrawing.get(&channel) {
            Some(
                Withdrawing::Requested { total: t, .. } | Withdrawing::Submitted { total: t, .. },
            ) => side == Side::Ours && total >= *t,
            Some(Withdrawing::Signed { total: t, .. }) => side == Side::Partner && total >= *t,
            None => false,
        };
        if done {
            let event = (side == Side::Ours).then_some(Event::Withdrawn { channel, total });
            self.end_withdrawal(channel, event);
        }
    }

    /// Submits our signed withdrawals not out, and ends those past their expiry block (they
    /// can no longer land): called with the on-chain duties.
    pub(crate) fn withdrawal_duties(&mut self) {
        let block = self.block;
        let due: Vec<(ChannelId, Withdrawing)> = self
            .state
            .withdrawing
            .iter()
            .map(|(c, w)| (*c, *w))
            .collect();
        for (channel, withdrawing) in due {
            if block.0 > withdrawing.expiry().0 {
                let ours = !matches!(withdrawing, Withdrawing::Signed { .. });
                let event = ours.then_some(Event::WithdrawFailed {
                    channel,
                    refused: false,
                });
                self.end_withdrawal(channel, event);
                continue;
            }
            if let Withdrawing::Submitted {
                total,
                expiry,
                signatures,
                submit: Submit::Due(at),
            } = withdrawing
                && block.0 >= at.0
            {
                self.set_submit(channel, Submit::InFlight);
                self.send_chain_request(ChainRequest::Withdraw {
                    channel,
                    total,
                    expiry,
                    signatures,
                });
            }
        }
    }

    /// Our withdrawal's transaction failed: sent again the block after while it can land,
    /// unless the contract refused it (then the channel stays frozen until the expiry: a copy
    /// of it may still land, and its events end the freeze).
    pub(crate) fn withdrawal_failed(
        &mut self,
        channel: ChannelId,
        failed: (Amount, BlockNumber),
        failure: &ChainFailure,
    ) {
        // A late answer for an earlier withdrawal (sent again after a restart) is not ours.
        let current = matches!(
            self.state.withdrawing.get(&channel),
            Some(Withdrawing::Submitted { total, expiry, .. }) if (*total, *expiry) == failed
        );
        if !current {
            return;
        }
        let submit = match failure {
            ChainFailure::Reverted(_) => Submit::GivenUp,
            ChainFailure::StaleState | ChainFailure::NotSent(_) => {
                Submit::Due(BlockNumber(self.block.0.saturating_add(1)))
            }
        };
        self.set_submit(channel, submit);
    }

    /// Sets where our signed withdrawal's submission stands.
    fn set_submit(&mut self, channel: ChannelId, submit: Submit) {
        if let Some(Withdrawing::Submitted { submit: s, .. }) =
            self.state.withdrawing.get_mut(&channel)
        {
            *s = submit;
        }
    }

    /// After a restart: a submission that was out may never have been sent; it goes again.
    pub(crate) fn resubmit_withdrawals(&mut self) {
        for withdrawing in self.state.withdrawing.values_mut() {
            if let Withdrawing::Submitted { submit, .. } = withdrawing
                && *submit == Submit::InFlight
            {
                *submit = Submit::Due(BlockNumber(0));
            }
        }
    }

    /// The channel was closed: a withdrawal can no longer land.
    pub(crate) fn withdrawal_closed(&mut self, channel: ChannelId) {
        let ours = self
            .state
            .withdrawing
            .get(&channel)
            .is_some_and(|w| !matches!(w, Withdrawing::Signed { .. }));
        let event = ours.then_some(Event::WithdrawFailed {
            channel,
            refused: false,
        });
        self.end_withdrawal(channel, event);
    }

    /// Whether a withdrawal is under way in `channel` (no cooperative close then).
    pub(crate) fn is_withdrawing(&self, channel: ChannelId) -> bool {
        self.state.withdrawing.contains_key(&channel)
    }

    /// The withdrawal in `channel` is over: the channel goes on.
    fn end_withdrawal(&mut self, channel: ChannelId, event: Option<Event>) {
        if self.state.withdrawing.remove(&channel).is_none() {
            return;
        }
        if let Ok(partner) = self.partner_of(channel) {
            self.state.outbox.drop_where(partner, |message| {
                matches!(message, Message::WithdrawRequest { channel: c, .. } if *c == channel)
            });
        }
        self.announce_policy(channel);
        if let Some(event) = event {
            self.event(event);
        }
    }
}

//! Closing a channel: unilaterally (the challenge window runs, see `onchain.rs`) or
//! cooperatively (both sign the final balances and the contract pays them out at once).
//!
//! The cooperative close, between the proposer P and its partner Q:
//!
//! ```text
//! P → Q  CloseRequest(round, balances)  P's view, no lock pending either way; P stops paying
//! Q → P  CloseAccepted(round, sig_Q)    only if Q's view is the same; Q never changes it again
//!   or   CloseRefused(round)            otherwise: the channel goes on
//! P      cooperativeSettle(balances, sig_P, sig_Q)
//! ```
//!
//! Q answers each round once: a resend of a refused proposal must not be accepted later, when
//! P has gone on with the channel.
//!
//! A signed settlement can be submitted for as long as the channel is open (the contract's
//! `CooperativeSettle` has no expiry), so whoever has signed one never accepts a newer state of
//! the channel: a payment to it afterwards could be settled away by the old balances. Q signs
//! first, so only Q is bound before P decides; P signs only to submit. A proposal unanswered for
//! `close_timeout` blocks is dropped; a signer whose channel has not settled by then closes
//! unilaterally (which the user may also do at any time).

use crate::api::{ChainRequest, CommandError, Event, PeerError};
use crate::monitor::ChannelMonitor;
use crate::node::Node;
use crate::wire::Message;
use alloy_primitives::{Address, B256};
use hoplite_htlc::crypto::recover_address;
use hoplite_htlc::eip712::CooperativeSettle;
use hoplite_htlc::{Amount, BlockNumber, ChannelId, Side, Signature};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How to close a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Ask the partner to sign the final balances; the channel is paid out at once. Needs the
    /// partner online and no lock pending; a refusal, or no answer within `close_timeout`
    /// blocks, is reported as [`Event::CloseRefused`](crate::Event::CloseRefused) and the
    /// channel goes on. Once we signed, a channel not settled within `close_timeout` blocks is
    /// closed unilaterally.
    Cooperative,
    /// Close on-chain with the partner's latest proof; settled after the challenge window.
    Unilateral,
}

/// Where a cooperative close of one of our channels stands. While it is in either phase the
/// channel carries no new state in either direction; `since` is the block it began in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Closing {
    /// We asked the partner to sign these balances (participant1's, participant2's).
    Proposed {
        /// Our proposal's number.
        round: u64,
        /// The balances.
        balances: [Amount; 2],
        /// When we proposed.
        since: BlockNumber,
    },
    /// We signed these balances: the channel is frozen until it settles.
    Signed {
        /// The balances.
        balances: [Amount; 2],
        /// When we signed.
        since: BlockNumber,
    },
}

impl Node {
    /// Closes `channel`. [`Close::Unilateral`] submits the partner's latest proof: the
    /// challenge window starts, and the node settles and unlocks after it.
    /// [`Close::Cooperative`] proposes the current balances to the partner; it is refused at
    /// once with [`CommandError::LocksPending`] while a lock is pending in either direction.
    pub fn close_channel(
        &mut self,
        now: Duration,
        channel: ChannelId,
        how: Close,
    ) -> Result<(), CommandError> {
        self.advance(now);
        let partner = self.partner_of(channel)?;
        match how {
            Close::Unilateral => self.request_close(channel),
            Close::Cooperative => {
                // A withdrawal landing after a settlement was signed would unbalance it.
                if self.state.closing.contains_key(&channel) || self.is_withdrawing(channel) {
                    return Err(CommandError::ChannelClosing(channel));
                }
                let balances = self.final_balances(channel)?;
                self.state.counters.close_rounds += 1;
                let round = self.state.counters.close_rounds;
                let since = self.block;
                self.state.closing.insert(
                    channel,
                    Closing::Proposed {
                        round,
                        balances,
                        since,
                    },
                );
                self.announce_policy(channel);
                self.send(
                    partner,
                    Message::CloseRequest {
                        channel,
                        round,
                        balances,
                    },
                );
            }
        }
        self.finish();
        Ok(())
    }

    /// Whether `channel` is closing, cooperatively or unilaterally, or frozen by a withdrawal
    /// (which starts only with no lock pending, so no lock duty depends on this): it carries
    /// no new state.
    pub(crate) fn is_closing(&self, channel: ChannelId) -> bool {
        self.is_closing_with(channel, self.state.monitors.get(&channel))
    }

    /// [`Self::is_closing`], given the channel's monitor (for a walk over the monitors beside
    /// the channels, where a hub's hundreds of lookups would cost more).
    pub(crate) fn is_closing_with(
        &self,
        channel: ChannelId,
        monitor: Option<&ChannelMonitor>,
    ) -> bool {
        self.state.closing.contains_key(&channel)
            || self.state.withdrawing.contains_key(&channel)
            || monitor.is_some_and(|m| m.closing)
    }

    /// What each participant (in the contract's order) would be paid now, if no lock is
    /// pending.
    fn final_balances(&self, channel: ChannelId) -> Result<[Amount; 2], CommandError> {
        let ours = self
            .channels
            .get(&channel)
            .ok_or(CommandError::UnknownChannel(channel))?;
        let view = self.view.read();
        let onchain = view
            .onchain
            .get(&channel)
            .ok_or(CommandError::UnknownChannel(channel))?;
        if ours.locks_pending() {
            return Err(CommandError::LocksPending(channel));
        }
        let ours_first = onchain.state.participant1 == self.address;
        let (mine, theirs) = (ours.spendable(Side::Ours), ours.spendable(Side::Partner));
        Ok(if ours_first {
            [mine, theirs]
        } else {
            [theirs, mine]
        })
    }

    /// The digest both participants sign to settle `channel` at `balances`.
    fn settlement_digest(&self, channel: ChannelId, balances: [Amount; 2]) -> Option<B256> {
        let view = self.view.read();
        let state = &view.onchain.get(&channel)?.state;
        Some(self.config.token_network.typed_digest(&CooperativeSettle {
            channelId: channel.0,
            participant1: state.participant1,
            balance1: balances[0].to_u256(),
            participant2: state.participant2,
            balance2: balances[1].to_u256(),
        }))
    }

    /// The partner proposes to settle at `balances`: sign them if they are what we hold too.
    pub(crate) fn handle_close_request(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
        balances: [Amount; 2],
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        if self
            .state
            .close_answered
            .get(&channel)
            .is_some_and(|r| *r >= round)
        {
            return Ok(());
        }
        self.state.close_answered.insert(channel, round);
        let accept = match self.state.closing.get(&channel) {
            // We signed already, for the partner's earlier proposal or for this one.
            Some(Closing::Signed {
                balances: signed, ..
            }) => *signed == balances,
            // Both proposed at once: the same balances are settled by the lower address (the
            // other signs); different ones are refused on both sides.
            Some(Closing::Proposed { balances: ours, .. }) if *ours == balances => {
                if self.address < from {
                    return Ok(());
                }
                true
            }
            // Not while a withdrawal is under way: it could land after we signed.
            _ if self.is_withdrawing(channel) => false,
            _ => self.final_balances(channel).ok() == Some(balances),
        };
        if !accept {
            self.send(from, Message::CloseRefused { channel, round });
            return Ok(());
        }
        let Some(digest) = self.settlement_digest(channel, balances) else {
            return Err(PeerError::ChannelClosed(channel));
        };
        // From now on the channel never changes.
        let signature = self.key.sign_digest(&digest);
        if !matches!(
            self.state.closing.get(&channel),
            Some(Closing::Signed { .. })
        ) {
            let since = self.block;
            self.state
                .closing
                .insert(channel, Closing::Signed { balances, since });
            self.announce_policy(channel);
        }
        self.send(
            from,
            Message::CloseAccepted {
                channel,
                round,
                signature,
            },
        );
        Ok(())
    }

    /// The partner signed our proposal: sign it too and settle.
    pub(crate) fn handle_close_accepted(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
        signature: Signature,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        let Some(Closing::Proposed { balances, .. }) = self
            .state
            .closing
            .get(&channel)
            .copied()
            .filter(|c| matches!(c, Closing::Proposed { round: r, .. } if *r == round))
        else {
            return Err(PeerError::Unsolicited("close acceptance"));
        };
        let digest = self
            .settlement_digest(channel, balances)
            .ok_or(PeerError::ChannelClosed(channel))?;
        if recover_address(&digest, &signature).ok() != Some(from) {
            // Our proposal stands unanswered; the partner may still answer it properly.
            return Err(PeerError::BadSignature);
        }
        let ours = self.key.sign_digest(&digest);
        let first = self
            .view
            .read()
            .onchain
            .get(&channel)
            .is_some_and(|c| c.state.participant1 == self.address);
        let signatures = if first {
            [ours, signature]
        } else {
            [signature, ours]
        };
        let since = self.block;
        self.state
            .closing
            .insert(channel, Closing::Signed { balances, since });
        self.send_chain_request(ChainRequest::CooperativeSettle {
            channel,
            balances,
            signatures,
        });
        Ok(())
    }

    /// The partner refused our proposal: the channel goes on.
    pub(crate) fn handle_close_refused(
        &mut self,
        from: Address,
        channel: ChannelId,
        round: u64,
    ) -> Result<(), PeerError> {
        self.check_partner(from, channel)?;
        if !matches!(self.state.closing.get(&channel), Some(Closing::Proposed { round: r, .. }) if *r == round)
        {
            return Err(PeerError::Unsolicited("close refusal"));
        }
        self.drop_proposal(channel, true);
        Ok(())
    }

    /// Cooperative closes that took `close_timeout` blocks: a proposal unanswered is dropped
    /// (we signed nothing, the channel goes on); a channel frozen by our signature that has not
    /// settled (the partner never submitted, or the settlement failed) is closed unilaterally.
    pub(crate) fn give_up_slow_closes(&mut self) {
        let timeout = self.config.close_timeout;
        let due: Vec<(ChannelId, Closing)> = self
            .state
            .closing
            .iter()
            .filter(|(_, closing)| {
                let (Closing::Proposed { since, .. } | Closing::Signed { since, .. }) = closing;
                self.block.0 >= since.0.saturating_add(timeout)
            })
            .map(|(channel, closing)| (*channel, *closing))
            .collect();
        for (channel, closing) in due {
            if self.partner_of(channel).is_err() {
                continue;
            }
            match closing {
                Closing::Proposed { .. } => self.drop_proposal(channel, false),
                Closing::Signed { .. } => self.request_close(channel),
            }
        }
    }

    /// Our proposal for `channel` is over (`answered`: refused, else unanswered): the channel
    /// goes on, and the proposal is not sent again.
    fn drop_proposal(&mut self, channel: ChannelId, answered: bool) {
        self.state.closing.remove(&channel);
        if let Ok(partner) = self.partner_of(channel) {
            self.state.outbox.drop_where(partner, |message| {
                matches!(message, Message::CloseRequest { channel: c, .. } if *c == channel)
            });
        }
        self.announce_policy(channel);
        self.event(Event::CloseRefused { channel, answered });
    }

    /// `from` is the partner in our open channel `channel`.
    pub(crate) fn check_partner(&self, from: Address, channel: ChannelId) -> Result<(), PeerError> {
        match self.partner_of(channel) {
            Ok(partner) if partner == from => Ok(()),
            Ok(_) => Err(PeerError::NotPartner { channel, from }),
            Err(_) if self.channels.contains_key(&channel) => {
                Err(PeerError::ChannelClosed(channel))
            }
            Err(_) => Err(PeerError::UnknownChannel(channel)),
        }
    }
}

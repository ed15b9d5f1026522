//! Signatures the nodes are about to make, made ahead by the workers.
//!
//! As a block of the setup comes in, thousands of nodes sign one after another: each end of
//! every channel that opened in it its policy, and, a block after a channel's last deposit,
//! each end its half of the channel's announcement. The workers are idle then. The loop
//! tells from the block's events what each node will sign ([`Expected`]) and hands the list
//! to the workers in the reverse of the order in which it will feed the nodes, so that the
//! two meet in the middle: a node's call takes each signature that is ready and signs the
//! rest itself ([`SignedAhead`]). Signing is deterministic, so the signatures, and the run,
//! are the same whichever thread made them. Since every signature made in the block's calls
//! is then known with its signer, a message that carries only such signatures (a half of an
//! announcement, to the partner) is not recovered again ([`crate::recovery`]). A wrong guess
//! (a node that signs something else, or nothing) costs a worker one signature, never a
//! different result.
//!
//! The guesses are made at every block, from its events; in a run they come from the setup's
//! blocks and the one after (channels open and are funded then), and with one thread none
//! are made.

use crate::workers::Workers;
use alloy_primitives::Address;
use hoplite_gossip::{ChannelAnnouncement, ChannelUpdate};
use hoplite_htlc::crypto::SignedAhead;
use hoplite_htlc::{Amount, ChannelId, PrivateKey, TokenNetwork};

/// Expected signatures per job: few enough that the loop and the workers meet near the
/// middle, enough that handing a job over costs little beside them.
const PER_JOB: usize = 32;

/// A signature a node is expected to make.
pub enum Expected {
    /// A channel direction's policy.
    Policy {
        /// The key of the direction's sender.
        key: PrivateKey,
        /// The update it will sign (its signature is not read).
        update: ChannelUpdate,
    },
    /// One end's half of a channel's announcement.
    Announcement {
        /// That end's key.
        key: PrivateKey,
        /// Where the channel is.
        token_network: TokenNetwork,
        /// The channel.
        channel: ChannelId,
        /// Its participants in the chain's order.
        participants: [Address; 2],
        /// Its capacity as the chain shows it.
        capacity: Amount,
    },
}

impl Expected {
    fn sign(&self, ahead: &SignedAhead) {
        match self {
            Self::Policy { key, update } => ahead.sign(key, &update.digest()),
            Self::Announcement {
                key,
                token_network,
                channel,
                participants,
                capacity,
            } => {
                let digest =
                    ChannelAnnouncement::digest(*token_network, *channel, *participants, *capacity);
                ahead.sign(key, &digest);
            }
        }
    }
}

/// Hands expected signatures to the workers.
#[derive(Default)]
pub struct Presigner {
    workers: Workers,
    /// Signatures nodes took from those made ahead.
    pub taken: u64,
}

impl Presigner {
    /// Signs on `workers` (none: [`Self::start`] hands nothing over).
    pub fn new(workers: Workers) -> Self {
        Self { workers, taken: 0 }
    }

    /// Whether there is any worker to sign ahead.
    pub fn any(&self) -> bool {
        self.workers.any()
    }

    /// Hands `expected`, in the order the loop will get to them, to the workers; `None` if
    /// there is nothing to hand over. Run the calls inside the scope of what it returns, then
    /// [`Self::finish`] it.
    pub fn start(&self, mut expected: Vec<Expected>) -> Option<SignedAhead> {
        if expected.is_empty() || !self.workers.any() {
            return None;
        }
        let ahead = SignedAhead::default();
        while !expected.is_empty() {
            let job = expected.split_off(expected.len().saturating_sub(PER_JOB));
            let ahead = ahead.clone();
            self.workers.run(move || {
                for expected in job.iter().rev() {
                    if ahead.is_closed() {
                        return;
                    }
                    expected.sign(&ahead);
                }
            });
        }
        Some(ahead)
    }

    /// The calls are done: what is still to be signed ahead is not.
    pub fn finish(&mut self, ahead: &SignedAhead) {
        ahead.close();
        self.taken += ahead.taken() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use hoplite_htlc::crypto::Recovered;

    #[test]
    fn what_a_worker_signs_ahead_is_what_the_nodes_signing_paths_take() {
        let key = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let token_network = TokenNetwork {
            chain_id: 1,
            address: Address::repeat_byte(0xee),
        };
        let (channel, capacity) = (ChannelId::from(7u64), Amount::from(1_000u64));
        let participants = [key.address(), Address::repeat_byte(9)];
        // What a node announces for its channels unless configured otherwise.
        let policy = hoplite_node::Config::new(token_network, 0).policy;
        let update = ChannelUpdate::sign(&key, token_network, channel, 60, policy);
        let expected = vec![
            Expected::Policy {
                key: key.clone(),
                update,
            },
            Expected::Announcement {
                key: key.clone(),
                token_network,
                channel,
                participants,
                capacity,
            },
        ];
        let presigner = Presigner::new(Workers::new(1));
        let ahead = presigner.start(expected).expect("a worker to hand them to");
        // The last handle on the pool: dropping it waits for the worker to finish its jobs.
        drop(presigner);
        let digest = ChannelAnnouncement::digest(token_network, channel, participants, capacity);
        let signed = ahead.scope(|| {
            (
                ChannelUpdate::sign(&key, token_network, channel, 60, policy),
                Recovered::sign(&key, &digest).0,
            )
        });
        assert_eq!(ahead.taken(), 2, "both were made ahead and taken");
        assert_eq!(signed, (update, key.sign_digest(&digest)));
        assert!(Presigner::default().start(Vec::new()).is_none());
    }
}

//! Signatures recovered while their messages are in flight, on the other cores.
//!
//! Recovering a signature's signer is the costliest part of checking a message, and a pure
//! function of the message. So when a message is sent, its signatures go to the worker
//! threads ([`Recoverer::submit`], [`crate::workers`]); when it is delivered, the call that handles it runs inside the
//! results ([`Pending::wait`], [`hoplite_htlc::crypto::Recovered::scope`]). The loop never
//! waits on a backlog: a job no worker has started by then is claimed by the loop, and the
//! node recovers what it needs itself. The results are what the node would compute, so a run
//! is the same, byte for byte, with any number of threads: only its wall time changes.
//!
//! A gossip message is recovered once for all its receivers (they share one [`Pending`]),
//! by a worker or by the loop at its first delivery.
//!
//! A workload payment's invoice is made when the payment is drawn, a few arrivals before it
//! is due (see [`crate::ahead`]), and its signature recovered meanwhile the same way
//! ([`Recoverer::submit_invoice`]): the payer checks it when it starts paying.
//!
//! A message whose signatures were all made under the [`SignedAhead`] of a block of the setup
//! (see [`crate::presign`]) needs no job: the keys that made them are their signers.
//!
//! Jobs go to the workers in batches, and a batch not yet full goes when the loop is about to
//! reach the first delivery it holds ([`Recoverer::hand_over_due`]): after a burst of sends
//! (a block's deposits make every hub sign to its partners) the last few jobs would otherwise
//! wait for more sends, which come only once their messages are delivered.

use crate::workers::Workers;
use alloy_primitives::Address;
use hoplite_gossip::GossipMessage;
use hoplite_htlc::TokenNetwork;
use hoplite_htlc::crypto::{Recovered, SignedAhead};
use hoplite_node::Invoice;
use hoplite_node::wire::Envelope;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Jobs handed to the workers at once: one wake-up of a worker (a system call) per batch,
/// not per message.
const BATCH: usize = 32;

/// Where jobs wait to be handed to the workers.
pub struct Recoverer {
    token_network: TokenNetwork,
    workers: Workers,
    /// Jobs not yet handed over.
    batch: Vec<Pending>,
    /// The earliest delivery of a job in `batch`.
    batch_due: Option<Duration>,
    /// The signatures made in the calls now running, and ahead of them.
    signed_ahead: Option<SignedAhead>,
}

/// One message's signatures, recovered by whoever claims the job first.
#[derive(Clone)]
pub struct Pending(Arc<Job>);

struct Job {
    signed: Signed,
    token_network: TokenNetwork,
    claimed: AtomicBool,
    done: OnceLock<Recovered>,
}

/// What carries the signatures.
enum Signed {
    /// An encoded [`Envelope`] between its two ends (`[sender, receiver]`), with the
    /// participants of the channel it announces, in the chain's order, if it does.
    Message {
        bytes: Arc<[u8]>,
        ends: [Address; 2],
        participants: Option<[Address; 2]>,
    },
    /// An encoded [`GossipMessage`].
    Gossip(Arc<[u8]>),
    /// An invoice, for its payer.
    Invoice(Invoice),
}

impl Recoverer {
    /// Jobs for `workers`, for nodes of `token_network` (no workers: nothing is recovered
    /// ahead, but a gossip message is still recovered once for all its receivers).
    pub fn new(token_network: TokenNetwork, workers: Workers) -> Self {
        Self {
            token_network,
            workers,
            batch: Vec::with_capacity(BATCH),
            batch_due: None,
            signed_ahead: None,
        }
    }

    /// A job for the signatures of an encoded [`Envelope`] from `ends[0]` to `ends[1]`, to
    /// be delivered at `due`; `participants`: those of the channel an announcement signature
    /// is for, in the chain's order (see [`Envelope::signatures`]).
    pub fn submit(
        &mut self,
        bytes: Arc<[u8]>,
        ends: [Address; 2],
        participants: Option<[Address; 2]>,
        due: Duration,
    ) -> Pending {
        let known = self.signed_ahead.as_ref().and_then(|ahead| {
            let envelope = Envelope::decode(&bytes).ok()?;
            ahead.recovered(envelope.signatures(self.token_network, ends, participants))
        });
        let signed = Signed::Message {
            bytes,
            ends,
            participants,
        };
        match known {
            Some(recovered) => Pending::known(signed, self.token_network, recovered),
            None => self.queue(signed, due),
        }
    }

    /// Messages sent from now on whose signatures `ahead` made (or saw made) need no job;
    /// `None`: back to recovering every message.
    pub fn signing_ahead(&mut self, ahead: Option<SignedAhead>) {
        self.signed_ahead = ahead;
    }

    /// A job for the signatures of an encoded [`GossipMessage`], first delivered at `due`.
    pub fn submit_gossip(&mut self, bytes: Arc<[u8]>, due: Duration) -> Pending {
        self.queue(Signed::Gossip(bytes), due)
    }

    /// A job for `invoice`'s signature, checked by its payer at `due`.
    pub fn submit_invoice(&mut self, invoice: Invoice, due: Duration) -> Pending {
        self.queue(Signed::Invoice(invoice), due)
    }

    /// Hands the batch to the workers, full or not, if one of its messages is delivered at
    /// `next` or before: the loop calls it with the time of its next event.
    pub fn hand_over_due(&mut self, next: Duration) {
        if self.batch_due.is_some_and(|due| due <= next) {
            self.hand_over();
        }
    }

    /// Queues a job for the workers if there are any (in batches: a job whose message arrives
    /// before its batch left is claimed by the loop, see [`Pending::wait`]).
    fn queue(&mut self, signed: Signed, due: Duration) -> Pending {
        let pending = Pending(Arc::new(Job {
            signed,
            token_network: self.token_network,
            claimed: AtomicBool::new(false),
            done: OnceLock::new(),
        }));
        if self.workers.any() {
            self.batch.push(pending.clone());
            self.batch_due = Some(self.batch_due.map_or(due, |earliest| earliest.min(due)));
            if self.batch.len() == BATCH {
                self.hand_over();
            }
        }
        pending
    }

    fn hand_over(&mut self) {
        self.batch_due = None;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if !batch.is_empty() {
            self.workers
                .run(move || batch.iter().for_each(Pending::run));
        }
    }
}

impl Pending {
    /// A job done already: `recovered` is what recovering would give.
    fn known(signed: Signed, token_network: TokenNetwork, recovered: Recovered) -> Self {
        let done = OnceLock::new();
        let _ = done.set(recovered);
        Self(Arc::new(Job {
            signed,
            token_network,
            claimed: AtomicBool::new(true),
            done,
        }))
    }

    /// The encoded message the job recovers from (none for an invoice).
    pub fn bytes(&self) -> &[u8] {
        match &self.0.signed {
            Signed::Message { bytes, .. } | Signed::Gossip(bytes) => bytes,
            Signed::Invoice(_) => &[],
        }
    }

    /// What is known of the signatures when the message arrives: a worker's results (waited
    /// for if it is at them). If no worker started the job, a gossip message is recovered here,
    /// once for all its receivers, and a message to one node is left to the node, which
    /// recovers only what it needs (an announcement signature whose participants the
    /// simulator did not know is listed under both orders, and one of them is spare); so is
    /// an invoice.
    pub fn wait(&self) -> &Recovered {
        let job = &self.0;
        if !job.claimed.swap(true, Ordering::AcqRel) {
            let recovered = match job.signed {
                Signed::Gossip(_) => job.recover(),
                Signed::Message { .. } | Signed::Invoice(_) => Recovered::default(),
            };
            let _ = job.done.set(recovered);
        }
        job.done.wait()
    }

    /// A worker does the job unless the loop claimed it. Whatever happens, the job ends done:
    /// the loop may be waiting for it (if recovering panicked, the node recovers itself).
    fn run(&self) {
        let job = &self.0;
        if !job.claimed.swap(true, Ordering::AcqRel) {
            let recovered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.recover()));
            let _ = job.done.set(recovered.unwrap_or_default());
        }
    }
}

impl Job {
    fn recover(&self) -> Recovered {
        // Bytes that do not decode list nothing: the node will say what is wrong.
        match &self.signed {
            Signed::Message {
                bytes,
                ends,
                participants,
            } => {
                let ends = *ends;
                let candidates = Envelope::decode(bytes)
                    .map(|e| e.signatures(self.token_network, ends, *participants))
                    .unwrap_or_default();
                // What a message lists are its sender's signatures, or alternatives of one
                // (an announcement signature under both orders of the participants, when
                // they are not known): the first that is the sender's is the one the node
                // will check.
                let mut known = Recovered::default();
                for (digest, signature) in candidates {
                    let one = Recovered::recover([(digest, signature)]);
                    let senders = one.signer(&digest, &signature) == Ok(ends[0]);
                    known.extend(one);
                    if senders {
                        break;
                    }
                }
                known
            }
            Signed::Gossip(bytes) => Recovered::recover(
                GossipMessage::decode(bytes)
                    .map(|m| m.signatures())
                    .unwrap_or_default(),
            ),
            Signed::Invoice(invoice) => Recovered::recover(invoice.signatures()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use hoplite_gossip::{ChannelAnnouncement, ChannelUpdate};
    use hoplite_htlc::crypto::recover_address;
    use hoplite_htlc::{Amount, ChannelId, PrivateKey};
    use hoplite_node::wire::{Message, MessageId};
    use hoplite_routing::Policy;

    const TOKEN_NETWORK: TokenNetwork = TokenNetwork {
        chain_id: 1,
        address: Address::repeat_byte(0xee),
    };

    #[test]
    fn every_job_is_recovered_once_with_or_without_workers() {
        let signer = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let policy = Policy {
            base_fee: 1,
            fee_millionths: 10,
            expiry_delta: 20,
            min_lock: 1,
            max_lock: 1_000,
            enabled: true,
        };
        let update =
            |n: u64| ChannelUpdate::sign(&signer, TOKEN_NETWORK, ChannelId::from(n), n, policy);
        for workers in [0, 1, 3] {
            let mut recoverer = Recoverer::new(TOKEN_NETWORK, Workers::new(workers));
            let pending: Vec<Pending> = (0..100)
                .map(|n| {
                    let bytes = GossipMessage::ChannelUpdate(update(n)).encode();
                    recoverer.submit_gossip(bytes.into(), Duration::ZERO)
                })
                .collect();
            for (n, job) in (0..).zip(&pending) {
                let update = update(n);
                let recovered = job.wait();
                assert_eq!(recovered.len(), 1);
                let signer_seen = recovered.signer(&update.digest(), &update.signature);
                assert_eq!(
                    signer_seen,
                    Ok(signer.address()),
                    "job {n}, {workers} workers"
                );
                assert_eq!(
                    signer_seen,
                    recover_address(&update.digest(), &update.signature)
                );
                // Another receiver of the same message gets the same result, recovered once.
                assert!(std::ptr::eq(job.wait(), recovered));
            }
            // Bytes that do not decode list nothing.
            let garbage = recoverer.submit_gossip([1, 2, 3].into(), Duration::ZERO);
            assert!(garbage.wait().is_empty());
        }
    }

    /// The envelope `n` from `sender` with its signature of channel `n`'s announcement (capacity
    /// `n`, `participants` in the chain's order), the digest and the signature.
    fn announcement_signature(
        sender: &PrivateKey,
        n: u64,
        participants: [Address; 2],
    ) -> (Vec<u8>, B256, hoplite_htlc::Signature) {
        let (channel, capacity) = (ChannelId::from(n), hoplite_htlc::Amount::from(n));
        let digest = ChannelAnnouncement::digest(TOKEN_NETWORK, channel, participants, capacity);
        let signature = sender.sign_digest(&digest);
        let envelope = Envelope::Message {
            id: MessageId(n),
            message: Message::AnnouncementSignature {
                channel,
                capacity,
                signature,
            },
        };
        (envelope.encode(), digest, signature)
    }

    /// Waits (at most 30 s: the worker is idle but for the test's jobs) until a worker did
    /// `job`.
    fn wait_for_worker(job: &Pending) {
        let mut waited = 0;
        while job.0.done.get().is_none() {
            assert!(waited < 30_000, "the worker never did it");
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += 1;
        }
    }

    #[test]
    fn a_message_to_one_node_is_recovered_by_a_worker_or_left_to_the_node() {
        let sender = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let ends = [sender.address(), Address::repeat_byte(9)];
        for (workers, told) in [(0, false), (1, false), (1, true)] {
            let mut recoverer = Recoverer::new(TOKEN_NETWORK, Workers::new(workers));
            // A whole batch, so it goes to the worker.
            let jobs: Vec<_> = (0..BATCH as u64)
                .map(|n| {
                    // The channel's participants are the ends in this order, or the other (a
                    // channel the receiver opened).
                    let participants = if n % 2 == 0 { ends } else { [ends[1], ends[0]] };
                    let (bytes, digest, signature) =
                        announcement_signature(&sender, n, participants);
                    let due = Duration::from_secs(n);
                    let job =
                        recoverer.submit(bytes.into(), ends, told.then_some(participants), due);
                    (job, digest, signature)
                })
                .collect();
            for (n, (job, digest, signature)) in (0..).zip(&jobs) {
                if workers > 0 {
                    wait_for_worker(job);
                    // Told the chain's order, one recovery; else the orders are tried in
                    // turn, up to the one the sender signed.
                    let tries = if told || n % 2 == 0 { 1 } else { 2 };
                    assert_eq!(job.wait().len(), tries, "job {n}");
                    assert_eq!(job.wait().signer(digest, signature), Ok(sender.address()));
                } else {
                    // Nothing is recovered ahead: the node recovers what it needs.
                    assert!(job.wait().is_empty());
                }
            }
        }
    }

    #[test]
    fn a_message_whose_signatures_were_made_in_the_scope_needs_no_job() {
        let sender = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let stranger = PrivateKey::from_bytes(&B256::repeat_byte(6)).expect("a valid key");
        let ends = [sender.address(), Address::repeat_byte(9)];
        let ahead = SignedAhead::default();
        let (ours, theirs) = ahead.scope(|| {
            (
                announcement_signature(&sender, 1, ends),
                // Someone else's signature of the channel: known as theirs, as recovering
                // says, and the receiver refuses it.
                announcement_signature(&stranger, 2, ends),
            )
        });
        let outside = announcement_signature(&sender, 3, ends);
        // No workers: a job would be left to the node, so a result is known without one.
        let mut recoverer = Recoverer::new(TOKEN_NETWORK, Workers::new(0));
        recoverer.signing_ahead(Some(ahead));
        for (bytes, digest, signature) in [&ours, &theirs] {
            let job = recoverer.submit(bytes.clone().into(), ends, Some(ends), Duration::ZERO);
            assert_eq!(job.wait().len(), 1);
            assert_eq!(
                job.wait().signer(digest, signature),
                recover_address(digest, signature)
            );
        }
        assert_eq!(
            recover_address(&theirs.1, &theirs.2),
            Ok(stranger.address())
        );
        let (bytes, ..) = outside;
        let job = recoverer.submit(bytes.into(), ends, Some(ends), Duration::ZERO);
        assert!(
            job.wait().is_empty(),
            "signed outside the scope: left to the node"
        );
        recoverer.signing_ahead(None);
        let job = recoverer.submit(ours.0.into(), ends, Some(ends), Duration::ZERO);
        assert!(job.wait().is_empty(), "no scope told any more");
    }

    #[test]
    fn an_invoice_is_recovered_by_a_worker_or_left_to_its_payer() {
        let payee = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let invoice = |n: u8| {
            let payment = hoplite_node::PaymentId(B256::repeat_byte(n));
            Invoice::sign(&payee, TOKEN_NETWORK, payment, Amount::from(10u64), 60)
        };
        for workers in [0, 1] {
            let mut recoverer = Recoverer::new(TOKEN_NETWORK, Workers::new(workers));
            let jobs: Vec<_> = (0..BATCH as u8)
                .map(|n| recoverer.submit_invoice(invoice(n), Duration::ZERO))
                .collect();
            for (n, job) in (0..).zip(&jobs) {
                let invoice = invoice(n);
                if workers > 0 {
                    wait_for_worker(job);
                    let known = job.wait();
                    assert_eq!(known.len(), 1);
                    assert_eq!(
                        known.signer(&invoice.digest(), &invoice.signature),
                        Ok(payee.address())
                    );
                } else {
                    assert!(job.wait().is_empty());
                }
                assert!(job.bytes().is_empty());
            }
        }
    }

    #[test]
    fn a_batch_not_full_goes_when_its_first_delivery_is_next() {
        let sender = PrivateKey::from_bytes(&B256::repeat_byte(5)).expect("a valid key");
        let ends = [sender.address(), Address::repeat_byte(9)];
        let (bytes, digest, signature) = announcement_signature(&sender, 1, ends);
        let mut recoverer = Recoverer::new(TOKEN_NETWORK, Workers::new(1));
        let due = Duration::from_millis(50);
        let later = recoverer.submit(
            bytes.clone().into(),
            ends,
            None,
            due + Duration::from_millis(1),
        );
        let first = recoverer.submit(bytes.into(), ends, None, due);
        // Events before the first delivery: the batch waits for more jobs.
        recoverer.hand_over_due(due - Duration::from_nanos(1));
        assert_eq!(recoverer.batch.len(), 2);
        // The next event is that delivery: the whole batch goes, and a worker does it.
        recoverer.hand_over_due(due);
        assert!(recoverer.batch.is_empty());
        wait_for_worker(&first);
        wait_for_worker(&later);
        assert_eq!(
            first.wait().signer(&digest, &signature),
            Ok(sender.address())
        );
    }
}

//! Signing and recovery of 32-byte digests, behind one small interface with two backends.
//!
//! Signatures are Ethereum's 65 bytes `r ‖ s ‖ v` with `v ∈ {27, 28}` and low `s` (EIP-2), so
//! `ecrecover` in the contract accepts exactly the signatures accepted here. Both backends follow
//! RFC 6979 and normalise `s`, so they produce identical signatures (tested).
//!
//! [`Backend::Secp256k1`] (libsecp256k1, C) is the default: measured about 3× faster than
//! [`Backend::K256`] (pure Rust, the curve alloy uses) for signing and 5.5–6× for recovery; see
//! BENCHMARKS.md.

use alloy_primitives::{Address, B256, FixedBytes, U256, keccak256, uint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Half the secp256k1 group order: a signature with a larger `s` is malleable and rejected.
const HALF_ORDER: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

/// Which implementation of secp256k1 does the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// libsecp256k1 through the `secp256k1` crate: the fastest, the default.
    Secp256k1,
    /// The pure-Rust `k256` crate: portable, no C compiler needed.
    K256,
}

impl Backend {
    /// The backend [`PrivateKey::sign_digest`] and [`recover_address`] use.
    pub const DEFAULT: Self = Self::Secp256k1;
}

/// Why a signature is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `v` is not 27 or 28.
    #[error("recovery byte v = {0}, expected 27 or 28")]
    BadRecoveryByte(u8),
    /// `s` is above half the group order (a malleated signature).
    #[error("signature s is not in the lower half of the group order")]
    HighS,
    /// `r` or `s` is zero or out of range, or no public key matches.
    #[error("signature does not recover a public key")]
    Unrecoverable,
}

/// A key was not a valid secp256k1 scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("private key is zero or not below the group order")]
pub struct InvalidKey;

/// A 65-byte Ethereum signature `r ‖ s ‖ v`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Signature(pub FixedBytes<65>);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.0)
    }
}

impl Signature {
    fn from_parts(rs: &[u8; 64], recovery_id: u8) -> Self {
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(rs);
        bytes[64] = 27 + recovery_id;
        Self(FixedBytes(bytes))
    }

    /// `(r ‖ s, recovery id 0 or 1)` after the checks every accepted signature passes.
    fn checked_parts(&self) -> Result<(&[u8; 64], u8), SignatureError> {
        let v = self.0[64];
        if v != 27 && v != 28 {
            return Err(SignatureError::BadRecoveryByte(v));
        }
        let s = U256::from_be_slice(&self.0[32..64]);
        if s > HALF_ORDER {
            return Err(SignatureError::HighS);
        }
        let rs: &[u8; 64] = self.0[..64]
            .try_into()
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok((rs, v - 27))
    }
}

/// A node's secp256k1 private key, ready for both backends.
#[derive(Clone)]
pub struct PrivateKey {
    secp: secp256k1::SecretKey,
    k256: k256::ecdsa::SigningKey,
    address: Address,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.address)
    }
}

impl PrivateKey {
    /// The key with these 32 big-endian bytes.
    pub fn from_bytes(bytes: &B256) -> Result<Self, InvalidKey> {
        let secp = secp256k1::SecretKey::from_byte_array(bytes.0).map_err(|_| InvalidKey)?;
        let k256 = k256::ecdsa::SigningKey::from_bytes(&bytes.0.into()).map_err(|_| InvalidKey)?;
        let public = secp256k1::PublicKey::from_secret_key_global(&secp);
        let address = address_of(&public.serialize_uncompressed());
        Ok(Self {
            secp,
            k256,
            address,
        })
    }

    /// The Ethereum address of this key: the node's on-chain identity.
    pub fn address(&self) -> Address {
        self.address
    }

    /// `keccak256(key ‖ input)`: words only the key's holder can compute (a node's secrets
    /// and payment ids), however much of `input` others know or guess.
    pub fn derive(&self, input: &[u8]) -> B256 {
        let mut preimage = Vec::with_capacity(32 + input.len());
        preimage.extend_from_slice(&self.secp.secret_bytes());
        preimage.extend_from_slice(input);
        keccak256(preimage)
    }

    /// Signs a digest with the default backend (or takes the signature [`SignedAhead::scope`]
    /// made of it already).
    pub fn sign_digest(&self, digest: &B256) -> Signature {
        SIGNING_AHEAD.with_borrow(|ahead| match ahead {
            None => self.sign_digest_with(Backend::DEFAULT, digest),
            Some(ahead) => ahead.take(self.address, digest).unwrap_or_else(|| {
                let signature = self.sign_digest_with(Backend::DEFAULT, digest);
                ahead.made(self.address, digest, signature);
                signature
            }),
        })
    }

    /// Signs a digest with the given backend.
    pub fn sign_digest_with(&self, backend: Backend, digest: &B256) -> Signature {
        match backend {
            Backend::Secp256k1 => {
                let message = secp256k1::Message::from_digest(digest.0);
                let signature = secp256k1::SECP256K1.sign_ecdsa_recoverable(message, &self.secp);
                let (recovery_id, rs) = signature.serialize_compact();
                Signature::from_parts(&rs, i32::from(recovery_id) as u8)
            }
            Backend::K256 => {
                let (signature, recovery_id) = self
                    .k256
                    .sign_prehash_recoverable(digest.as_slice())
                    .expect("a 32-byte prehash is always signable");
                // k256 already produces low s; normalising again is a no-op kept for safety.
                let (signature, recovery_id) = match signature.normalize_s() {
                    Some(normalized) => (normalized, recovery_id.to_byte() ^ 1),
                    None => (signature, recovery_id.to_byte()),
                };
                Signature::from_parts(&signature.to_bytes().into(), recovery_id)
            }
        }
    }
}

/// The address that signed `digest`, with the default backend (or as [`Recovered::scope`]
/// already knows it).
pub fn recover_address(digest: &B256, signature: &Signature) -> Result<Address, SignatureError> {
    IN_SCOPE
        .with_borrow(|scope| lookup(scope, digest, signature))
        .unwrap_or_else(|| recover_address_with(Backend::DEFAULT, digest, signature))
}

/// Whom `known` says `signature` of `digest` recovers to (the whole pair must match).
fn lookup(
    known: &[Known],
    digest: &B256,
    signature: &Signature,
) -> Option<Result<Address, SignatureError>> {
    known
        .iter()
        .find(|(d, s, _)| d == digest && s == signature)
        .map(|(_, _, signer)| *signer)
}

/// Signers recovered before the call that needs them, on any thread: a driver recovers the
/// signatures a message carries while the message is in flight, and hands them to the call
/// that handles it ([`Self::scope`]), so the recovery, the costliest part of checking a
/// message, can run on another core.
///
/// A node that checks a signature it just made or just checked (its own policy, written into
/// its view; a channel announcement of its partner's signature and its own) knows the signer
/// already, and says so the same way.
///
/// The only ways to make one are to recover ([`Self::recover`]) and to sign ([`Self::sign`]),
/// so what a scope knows is what [`recover_address`] would compute: a call gives the same
/// results inside a scope as outside, only sooner. Every check still compares the signer with
/// whom it expects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered(Vec<Known>);

/// A digest, a signature of it, and whom it recovers to.
type Known = (B256, Signature, Result<Address, SignatureError>);

thread_local! {
    /// What the [`Recovered`] in scope on this thread knows.
    static IN_SCOPE: std::cell::RefCell<Vec<Known>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Recovered {
    /// Recovers the signer of each `(digest, signature)` (as [`recover_address`] does: a scope
    /// around the call may know it already).
    pub fn recover(signed: impl IntoIterator<Item = (B256, Signature)>) -> Self {
        Self(
            signed
                .into_iter()
                .map(|(digest, signature)| {
                    let signer = recover_address(&digest, &signature);
                    (digest, signature, signer)
                })
                .collect(),
        )
    }

    /// Signs `digest` with `key`, knowing whom the signature recovers to: `key`'s address.
    pub fn sign(key: &PrivateKey, digest: &B256) -> (Signature, Self) {
        let signature = key.sign_digest(digest);
        (
            signature,
            Self(vec![(*digest, signature, Ok(key.address()))]),
        )
    }

    /// Who signed `digest` with `signature`: as recovered or signed here, else recovered now.
    pub fn signer(&self, digest: &B256, signature: &Signature) -> Result<Address, SignatureError> {
        lookup(&self.0, digest, signature).unwrap_or_else(|| recover_address(digest, signature))
    }

    /// Adds what `other` knows.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// How many signatures it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs `call` with [`recover_address`] on this thread answering from these first. Scopes
    /// do not nest: an inner one replaces the outer until it ends.
    pub fn scope<R>(&self, call: impl FnOnce() -> R) -> R {
        /// Puts the outer scope back (none: empty) when the call ends, by returning or
        /// unwinding.
        struct Ends(Vec<Known>);
        impl Drop for Ends {
            fn drop(&mut self) {
                let outer = std::mem::take(&mut self.0);
                IN_SCOPE.with_borrow_mut(|scope| *scope = outer);
            }
        }
        let outer = IN_SCOPE.with_borrow_mut(|scope| std::mem::replace(scope, self.0.clone()));
        let _ends = Ends(outer);
        call()
    }
}

/// Signatures made before the call that needs them, on any thread: a driver that can tell
/// which digests its nodes are about to sign (a simulator's setup, where thousands of nodes
/// sign their new channels' policies and announcements in one block) has another core sign
/// them ([`Self::sign`]) while the calls run in a scope ([`Self::scope`]) where
/// [`PrivateKey::sign_digest`] takes each one that is ready instead of signing.
///
/// The only way in is [`Self::sign`], with the key itself, and signing is deterministic
/// (RFC 6979): a call makes the same signatures inside a scope as outside, only sooner, however
/// far the other thread got. Each is taken once, and a digest the call signs first is kept so
/// that the other thread does not start on it (one already at it signs it in vain). So it knows every signature made in its scope,
/// and whose it is: the receivers of those need not recover them ([`Self::recovered`]).
#[derive(Clone, Debug, Default)]
pub struct SignedAhead(Arc<Ahead>);

#[derive(Debug, Default)]
struct Ahead {
    /// By digest and signer; ordered, not hashed (a hasher's seed would be randomness).
    slots: Mutex<BTreeMap<(B256, Address), Slot>>,
    /// Set by [`SignedAhead::close`]: what is still to be signed ahead is not.
    closed: AtomicBool,
    /// Signatures taken from it.
    taken: AtomicUsize,
}

#[derive(Debug)]
enum Slot {
    /// Signed ahead, not taken yet.
    Ready(Signature),
    /// Taken, or signed by the call itself first.
    Done(Signature),
}

impl Slot {
    fn signature(&self) -> Signature {
        match *self {
            Self::Ready(signature) | Self::Done(signature) => signature,
        }
    }
}

thread_local! {
    /// The [`SignedAhead`] in scope on this thread.
    static SIGNING_AHEAD: std::cell::RefCell<Option<SignedAhead>> =
        const { std::cell::RefCell::new(None) };
}

impl SignedAhead {
    /// Signs `digest` with `key` for a scope to take, unless it is closed or the digest was
    /// signed (or taken) already.
    pub fn sign(&self, key: &PrivateKey, digest: &B256) {
        let slot = (*digest, key.address());
        if self.is_closed() || self.slots().contains_key(&slot) {
            return;
        }
        let signature = key.sign_digest_with(Backend::DEFAULT, digest);
        self.slots().entry(slot).or_insert(Slot::Ready(signature));
    }

    /// Stops signing: [`Self::sign`] does nothing from now on.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Relaxed)
    }

    /// How many signatures calls took from it.
    pub fn taken(&self) -> usize {
        self.0.taken.load(Ordering::Relaxed)
    }

    /// Runs `call` with [`PrivateKey::sign_digest`] on this thread taking from these first.
    /// Scopes do not nest: an inner one replaces the outer until it ends.
    pub fn scope<R>(&self, call: impl FnOnce() -> R) -> R {
        /// Puts the outer scope back when the call ends, by returning or unwinding.
        struct Ends(Option<SignedAhead>);
        impl Drop for Ends {
            fn drop(&mut self) {
                let outer = self.0.take();
                SIGNING_AHEAD.with_borrow_mut(|scope| *scope = outer);
            }
        }
        let outer = SIGNING_AHEAD.with_borrow_mut(|scope| scope.replace(self.clone()));
        let _ends = Ends(outer);
        call()
    }

    /// Whose each `(digest, signature)` is, if every one was made in its scope or ahead
    /// (their signers' keys made them: they recover to those signers).
    pub fn recovered(
        &self,
        signed: impl IntoIterator<Item = (B256, Signature)>,
    ) -> Option<Recovered> {
        let slots = self.slots();
        let known = signed
            .into_iter()
            .map(|(digest, signature)| {
                let (first, last) = (Address::ZERO, Address::repeat_byte(0xff));
                let (&(_, signer), _) = slots
                    .range((digest, first)..=(digest, last))
                    .find(|(_, slot)| slot.signature() == signature)?;
                Some((digest, signature, Ok(signer)))
            })
            .collect::<Option<Vec<Known>>>()?;
        Some(Recovered(known))
    }

    /// `signer`'s signature of `digest` if it was made ahead and not taken yet (then taken).
    fn take(&self, signer: Address, digest: &B256) -> Option<Signature> {
        let mut slots = self.slots();
        let slot = slots.get_mut(&(*digest, signer))?;
        let Slot::Ready(signature) = *slot else {
            return None;
        };
        *slot = Slot::Done(signature);
        self.0.taken.fetch_add(1, Ordering::Relaxed);
        Some(signature)
    }

    /// The call signed `digest` itself: nobody needs to sign it ahead.
    fn made(&self, signer: Address, digest: &B256, signature: Signature) {
        self.slots()
            .insert((*digest, signer), Slot::Done(signature));
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<(B256, Address), Slot>> {
        // A panic while the lock was held left the map whole: each change is one insert.
        self.0.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The address that signed `digest`, with the given backend.
pub fn recover_address_with(
    backend: Backend,
    digest: &B256,
    signature: &Signature,
) -> Result<Address, SignatureError> {
    let (rs, recovery_id) = signature.checked_parts()?;
    let public = match backend {
        Backend::Secp256k1 => {
            let id = secp256k1::ecdsa::RecoveryId::from_u8_masked(recovery_id);
            let signature = secp256k1::ecdsa::RecoverableSignature::from_compact(rs, id)
                .map_err(|_| SignatureError::Unrecoverable)?;
            let message = secp256k1::Message::from_digest(digest.0);
            secp256k1::SECP256K1
                .recover_ecdsa(message, &signature)
                .map_err(|_| SignatureError::Unrecoverable)?
                .serialize_uncompressed()
        }
        Backend::K256 => {
            let signature = k256::ecdsa::Signature::from_slice(rs)
                .map_err(|_| SignatureError::Unrecoverable)?;
            let id = k256::ecdsa::RecoveryId::from_byte(recovery_id)
                .ok_or(SignatureError::Unrecoverable)?;
            let key =
                k256::ecdsa::VerifyingKey::recover_from_prehash(digest.as_slice(), &signature, id)
                    .map_err(|_| SignatureError::Unrecoverable)?;
            let point = key.to_encoded_point(false);
            point
                .as_bytes()
                .try_into()
                .map_err(|_| SignatureError::Unrecoverable)?
        }
    };
    Ok(address_of(&public))
}

/// A compressed secp256k1 public key (33 bytes): what a peer needs to encrypt to a node.
pub type PublicKey = FixedBytes<33>;

/// The public key that signed `digest` (compressed): a node's key from any of its signatures.
pub fn recover_public_key(
    digest: &B256,
    signature: &Signature,
) -> Result<PublicKey, SignatureError> {
    let (rs, recovery_id) = signature.checked_parts()?;
    let id = secp256k1::ecdsa::RecoveryId::from_u8_masked(recovery_id);
    let signature = secp256k1::ecdsa::RecoverableSignature::from_compact(rs, id)
        .map_err(|_| SignatureError::Unrecoverable)?;
    let message = secp256k1::Message::from_digest(digest.0);
    let key = secp256k1::SECP256K1
        .recover_ecdsa(message, &signature)
        .map_err(|_| SignatureError::Unrecoverable)?;
    Ok(FixedBytes(key.serialize()))
}

impl PrivateKey {
    /// Our public key, compressed.
    pub fn public_key(&self) -> PublicKey {
        FixedBytes(secp256k1::PublicKey::from_secret_key_global(&self.secp).serialize())
    }

    /// The ECDH secret we share with the holder of `public` (`sha256` of the shared point,
    /// libsecp256k1's definition); `None` if `public` is not a point on the curve.
    pub fn shared_secret(&self, public: &PublicKey) -> Option<B256> {
        let public = secp256k1::PublicKey::from_slice(public.as_slice()).ok()?;
        Some(B256::from(
            secp256k1::ecdh::SharedSecret::new(&public, &self.secp).secret_bytes(),
        ))
    }
}

/// `keccak256(x ‖ y)[12..]` of an uncompressed public key `0x04 ‖ x ‖ y`.
fn address_of(uncompressed: &[u8; 65]) -> Address {
    Address::from_slice(&keccak256(&uncompressed[1..])[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_made_ahead_is_the_keys_own_taken_once_and_only_by_its_key() {
        let alice = PrivateKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let bob = PrivateKey::from_bytes(&B256::repeat_byte(2)).unwrap();
        let [first, second, third] = [b"one", b"two", b"six"].map(keccak256);
        let ahead = SignedAhead::default();
        ahead.sign(&alice, &first);
        ahead.sign(&alice, &second);
        let seen = ahead.scope(|| {
            [
                alice.sign_digest(&first),
                // Bob's signature of a digest Alice's key signed ahead is Bob's.
                bob.sign_digest(&second),
                alice.sign_digest(&first),
                alice.sign_digest(&third),
            ]
        });
        let own = |key: &PrivateKey, digest| key.sign_digest_with(Backend::DEFAULT, digest);
        assert_eq!(
            seen,
            [
                own(&alice, &first),
                own(&bob, &second),
                own(&alice, &first),
                own(&alice, &third)
            ]
        );
        assert_eq!(ahead.taken(), 1, "the second call for `first` signs itself");
        // Outside the scope nothing is taken; what a call signed first is not signed ahead
        // after it, and nothing is once closed.
        assert_eq!(alice.sign_digest(&second), own(&alice, &second));
        ahead.sign(&alice, &third);
        ahead.close();
        ahead.sign(&bob, &first);
        ahead.scope(|| {
            assert_eq!(alice.sign_digest(&second), own(&alice, &second));
            assert_eq!(alice.sign_digest(&third), own(&alice, &third));
            assert_eq!(bob.sign_digest(&first), own(&bob, &first));
        });
        assert_eq!(
            ahead.taken(),
            2,
            "only Alice's `second`, made before the close"
        );
        // It knows whose each signature made ahead or in its scope is, and nothing else.
        let signed = [(first, own(&alice, &first)), (second, own(&bob, &second))];
        let recovered = ahead
            .recovered(signed)
            .expect("both were made in its scope");
        for (digest, signature) in signed {
            assert_eq!(
                recovered.signer(&digest, &signature),
                recover_address_with(Backend::K256, &digest, &signature)
            );
        }
        assert!(ahead.recovered([(first, own(&bob, &first))]).is_some());
        let not_made = keccak256(b"ten");
        assert!(
            ahead
                .recovered([(not_made, own(&alice, &not_made))])
                .is_none()
        );
        assert!(
            ahead.recovered([(first, own(&alice, &second))]).is_none(),
            "a signature of another digest"
        );
    }

    #[test]
    fn a_scope_answers_what_it_holds_and_only_while_the_call_runs() {
        let alice = PrivateKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let digest = keccak256(b"proof");
        let other = keccak256(b"another proof");
        let signature = alice.sign_digest(&digest);
        let mut bad_v = signature;
        bad_v.0[64] = 29;
        let recovered = Recovered::recover([(digest, signature), (other, bad_v)]);
        assert_eq!(recovered.len(), 2);
        assert_eq!(
            recovered.0[0].2,
            Ok(alice.address()),
            "recovers as recover_address does"
        );
        assert_eq!(recovered.0[1].2, recover_address(&other, &bad_v));
        assert!(recovered.0[1].2.is_err());

        // Plant a wrong answer (only this module can): the scope is what answers.
        let planted = Address::repeat_byte(0xee);
        let plant = Recovered(vec![(digest, signature, Ok(planted))]);
        assert_eq!(
            plant.scope(|| recover_address(&digest, &signature)),
            Ok(planted)
        );
        // Another digest under the same signature is recovered, not looked up; so is another
        // signature of the same digest.
        let not_held = plant.scope(|| recover_address(&other, &signature));
        assert_eq!(
            not_held,
            recover_address_with(Backend::K256, &other, &signature)
        );
        assert_ne!(not_held, Ok(planted));
        let bob = PrivateKey::from_bytes(&B256::repeat_byte(2)).unwrap();
        let bobs = bob.sign_digest(&digest);
        assert_eq!(
            plant.scope(|| recover_address(&digest, &bobs)),
            Ok(bob.address())
        );
        // An inner scope replaces the outer until it ends, then the outer is back.
        let inner = Recovered::recover([(other, signature)]);
        let seen = plant.scope(|| {
            let inside = inner.scope(|| recover_address(&digest, &signature));
            (inside, recover_address(&digest, &signature))
        });
        assert_eq!(seen, (Ok(alice.address()), Ok(planted)));
        // Signing knows its signer: the same signature as sign_digest, recovering to the key.
        let (signed, mut known) = Recovered::sign(&alice, &other);
        assert_eq!(signed, alice.sign_digest(&other));
        assert_eq!(
            known.signer(&other, &signed),
            recover_address(&other, &signed)
        );
        assert_eq!(known.signer(&other, &signed), Ok(alice.address()));
        known.extend(plant.clone());
        assert_eq!(known.len(), 2);
        assert_eq!(known.signer(&digest, &signature), Ok(planted));
        // Nor does the scope outlive its call, returning or unwinding.
        assert_eq!(recover_address(&digest, &signature), Ok(alice.address()));
        let unwound = std::panic::catch_unwind(|| plant.scope(|| panic!("the call dies")));
        assert!(unwound.is_err());
        assert_eq!(recover_address(&digest, &signature), Ok(alice.address()));
    }

    #[test]
    fn public_keys_recover_and_agree_on_a_shared_secret() {
        let alice = PrivateKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let bob = PrivateKey::from_bytes(&B256::repeat_byte(2)).unwrap();
        let digest = keccak256(b"hello");
        let recovered = recover_public_key(&digest, &alice.sign_digest(&digest)).unwrap();
        assert_eq!(recovered, alice.public_key());
        let shared = alice.shared_secret(&bob.public_key()).unwrap();
        assert_eq!(Some(shared), bob.shared_secret(&alice.public_key()));
        let carol = PrivateKey::from_bytes(&B256::repeat_byte(3)).unwrap();
        assert_ne!(Some(shared), carol.shared_secret(&alice.public_key()));
        assert_eq!(alice.shared_secret(&FixedBytes([7; 33])), None);
    }
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random_key(rng: &mut StdRng) -> PrivateKey {
        loop {
            if let Ok(key) = PrivateKey::from_bytes(&B256::from(rng.random::<[u8; 32]>())) {
                return key;
            }
        }
    }

    #[test]
    fn backends_sign_identically_and_recover_the_same_address() {
        let seed = 0x5eed_0001;
        let mut rng = StdRng::seed_from_u64(seed);
        for case in 0..300 {
            let key = random_key(&mut rng);
            let digest = B256::from(rng.random::<[u8; 32]>());
            let a = key.sign_digest_with(Backend::Secp256k1, &digest);
            let b = key.sign_digest_with(Backend::K256, &digest);
            assert_eq!(a, b, "seed {seed:#x} case {case}: signatures differ");
            for backend in [Backend::Secp256k1, Backend::K256] {
                assert_eq!(
                    recover_address_with(backend, &digest, &a),
                    Ok(key.address()),
                    "seed {seed:#x} case {case}: {backend:?}"
                );
            }
        }
    }

    #[test]
    fn known_key_has_known_address() {
        // The private key 1 is the generator point; its address is well known.
        let key = PrivateKey::from_bytes(&B256::with_last_byte(1)).unwrap();
        assert_eq!(
            key.address(),
            alloy_primitives::address!("7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
        );
        assert_eq!(PrivateKey::from_bytes(&B256::ZERO).err(), Some(InvalidKey));
        assert_eq!(
            PrivateKey::from_bytes(&B256::repeat_byte(0xff)).err(),
            Some(InvalidKey)
        );
    }

    #[test]
    fn rejects_malleated_and_malformed_signatures() {
        let key = PrivateKey::from_bytes(&B256::repeat_byte(7)).unwrap();
        let digest = keccak256(b"hoplite");
        let good = key.sign_digest(&digest);

        // (r, n - s, v ^ 1) is the same signature mirrored: ecrecover-valid, but malleable.
        let order = HALF_ORDER * U256::from(2) + U256::from(1);
        let s = U256::from_be_slice(&good.0[32..64]);
        let mut high = good;
        high.0[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
        high.0[64] = 55 - high.0[64]; // 27 <-> 28
        let mut bad_v = good;
        bad_v.0[64] = 1;
        let mut zero_r = good;
        zero_r.0[..32].fill(0);
        for backend in [Backend::Secp256k1, Backend::K256] {
            assert_eq!(
                recover_address_with(backend, &digest, &high),
                Err(SignatureError::HighS)
            );
            assert_eq!(
                recover_address_with(backend, &digest, &bad_v),
                Err(SignatureError::BadRecoveryByte(1))
            );
            assert_eq!(
                recover_address_with(backend, &digest, &zero_r),
                Err(SignatureError::Unrecoverable)
            );
            let other = recover_address_with(backend, &keccak256(b"other"), &good);
            assert_ne!(other, Ok(key.address()));
        }
    }
}

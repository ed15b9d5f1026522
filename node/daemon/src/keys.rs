//! The node's secrets, each a file in the data directory readable by its owner only: the
//! secp256k1 key (its Ethereum account, its channel signatures and its libp2p identity), as
//! hex in `<data_dir>/key`, and the API's bearer token in `<data_dir>/api-token`.

use alloy_primitives::{Address, B256, keccak256};
use anyhow::{Context, bail};
use hoplite_htlc::PrivateKey;
use libp2p::PeerId;
use libp2p::identity::{self, secp256k1};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file name of the key in the data directory.
pub const KEY_FILE: &str = "key";

/// The file name of the API's bearer token in the data directory.
pub const API_TOKEN_FILE: &str = "api-token";

/// The key's 32 bytes, and what is made of them.
pub struct NodeKey {
    bytes: B256,
    /// For signing channel states and invoices.
    pub private: PrivateKey,
}

impl NodeKey {
    /// The libp2p identity made of the same key: a peer's PeerId carries its public key, so
    /// its Ethereum address follows from it ([`address_of_peer`]).
    pub fn libp2p(&self) -> identity::Keypair {
        let secret = secp256k1::SecretKey::try_from_bytes(self.bytes.0)
            .expect("a valid PrivateKey is a valid secp256k1 secret");
        identity::Keypair::from(secp256k1::Keypair::from(secret))
    }

    /// The key's 32 bytes, for the chain's transaction signer.
    pub fn bytes(&self) -> &B256 {
        &self.bytes
    }
}

/// Loads `<data_dir>/key`, refusing one others can read; without one, imports `import` (a
/// file holding the key in hex) or generates a new key from the OS's randomness.
pub fn load_or_create(data_dir: &Path, import: Option<&Path>) -> anyhow::Result<NodeKey> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        if import.is_some() {
            bail!(
                "{} already holds a key: importing another would orphan its channels",
                path.display()
            );
        }
        return parse(&read_private(&path)?)
            .with_context(|| format!("reading the key in {}", path.display()));
    }
    let bytes = match import {
        Some(source) => {
            let text = fs::read_to_string(source)
                .with_context(|| format!("reading the key to import from {}", source.display()))?;
            *parse(&text)
                .with_context(|| format!("the key in {}", source.display()))?
                .bytes()
        }
        None => generate(),
    };
    let key = from_bytes(bytes)?;
    write_private(&path, &alloy_primitives::hex::encode(bytes))?;
    Ok(key)
}

/// Loads the API's bearer token, refusing one others can read; creates a random one at the
/// first start.
pub fn load_or_create_api_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(API_TOKEN_FILE);
    if path.exists() {
        let token = read_private(&path)?.trim().to_owned();
        if token.len() < 32 {
            bail!(
                "{} holds no token: remove it and start again",
                path.display()
            );
        }
        return Ok(token);
    }
    let token = alloy_primitives::hex::encode(generate());
    write_private(&path, &token)?;
    Ok(token)
}

/// Reads a secret file, refusing it if others may read it.
fn read_private(path: &Path) -> anyhow::Result<String> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a new secret file, mode 0600, and syncs it.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{text}")?;
    file.sync_all()?;
    Ok(())
}

#[allow(clippy::disallowed_methods)] // A real key needs the OS's randomness.
fn generate() -> B256 {
    use rand::TryRngCore;
    let mut bytes = B256::ZERO;
    loop {
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes.0)
            .expect("the OS has randomness");
        // All but a 2⁻¹²⁸ share of 32-byte strings are valid keys.
        if PrivateKey::from_bytes(&bytes).is_ok() {
            return bytes;
        }
    }
}

fn parse(text: &str) -> anyhow::Result<NodeKey> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or(text);
    let bytes: B256 = hex
        .parse()
        .context("a key is 32 bytes in hex (64 hex digits)")?;
    from_bytes(bytes)
}

fn from_bytes(bytes: B256) -> anyhow::Result<NodeKey> {
    let private = PrivateKey::from_bytes(&bytes).context("not a valid secp256k1 key")?;
    Ok(NodeKey { bytes, private })
}

/// The Ethereum address whose key made `peer`: `None` for a PeerId of another key type (or a
/// hashed one), whose holder can't own a channel and gets nothing from us.
pub fn address_of_peer(peer: &PeerId) -> Option<Address> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    // Keys up to 42 bytes are inlined in the PeerId (multihash "identity", code 0).
    if multihash.code() != 0 {
        return None;
    }
    let public = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let uncompressed = public.try_into_secp256k1().ok()?.to_bytes_uncompressed();
    Some(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder that goes when dropped.
    fn temp_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("hoplite-keys-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn a_peer_id_names_the_address_of_its_key() {
        let temp = temp_dir("peer");
        let dir = temp.path();
        let key = load_or_create(dir, None).unwrap();
        let peer = key.libp2p().public().to_peer_id();
        assert_eq!(address_of_peer(&peer), Some(key.private.address()));
        let other = identity::Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(address_of_peer(&other), None);
    }

    #[test]
    fn a_key_is_kept_private_and_loaded_again() {
        let temp = temp_dir("mode");
        let dir = temp.path();
        let first = load_or_create(dir, None).unwrap();
        let path = dir.join(KEY_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_or_create(dir, None).unwrap();
        assert_eq!(again.private.address(), first.private.address());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create(dir, None).err().unwrap().to_string();
        assert!(error.contains("readable by others"), "{error}");
    }

    #[test]
    fn the_api_token_is_made_once_kept_private_and_refused_when_readable() {
        let temp = temp_dir("token");
        let dir = temp.path();
        let token = load_or_create_api_token(dir).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(load_or_create_api_token(dir).unwrap(), token);
        let path = dir.join(API_TOKEN_FILE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let error = load_or_create_api_token(dir).unwrap_err().to_string();
        assert!(error.contains("readable by others"), "{error}");
    }

    #[test]
    fn an_imported_key_is_used_and_a_bad_one_refused() {
        let temp = temp_dir("import");
        let dir = temp.path();
        let source = dir.join("import.hex");
        fs::write(&source, format!("0x{}\n", "11".repeat(32))).unwrap();
        let node = dir.join("node");
        fs::create_dir_all(&node).unwrap();
        let key = load_or_create(&node, Some(&source)).unwrap();
        assert_eq!(key.bytes(), &B256::repeat_byte(0x11));
        let error = load_or_create(&node, Some(&source))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("already holds a key"), "{error}");
        fs::write(&source, "zz").unwrap();
        let fresh = dir.join("fresh");
        fs::create_dir_all(&fresh).unwrap();
        let error = format!("{:#}", load_or_create(&fresh, Some(&source)).err().unwrap());
        assert!(error.contains("64 hex digits"), "{error}");
        assert!(!fresh.join(KEY_FILE).exists());
    }
}

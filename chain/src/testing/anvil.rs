//! A local anvil node, and the test network on it (feature `rpc`).

use super::{ALICE, BOB, CAROL, CHAIN_ID, TestNet};
use crate::backend::Backend;
use crate::rpc::RpcBackend;
use alloy_primitives::{B256, U256, b256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use hoplite_htlc::testing::key_bytes;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The key of [`super::DEPLOYER`], anvil's first dev account (its default mnemonic; never use it
/// anywhere real).
pub const DEPLOYER_KEY: B256 =
    b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");

impl TestNet<RpcBackend> {
    /// A fresh network on `anvil`; the parties get ether for gas from anvil's cheat call.
    pub async fn on_anvil(anvil: &Anvil) -> Self {
        let signer = |bytes: B256| PrivateKeySigner::from_bytes(&bytes).expect("valid key");
        let deployer = RpcBackend::connect(anvil.url(), signer(DEPLOYER_KEY))
            .await
            .expect("anvil answers");
        let mut backends = Vec::new();
        for who in [ALICE, BOB, CAROL] {
            let backend = RpcBackend::connect(anvil.url(), signer(key_bytes(9, who as u8)))
                .await
                .expect("anvil answers");
            let ether = U256::from(10u64).pow(U256::from(20u64));
            backend
                .provider()
                .raw_request::<_, serde_json::Value>(
                    "anvil_setBalance".into(),
                    (backend.account(), ether),
                )
                .await
                .expect("anvil_setBalance");
            backends.push(backend);
        }
        let backends: [RpcBackend; 3] = backends.try_into().expect("three parties");
        Self::deploy(deployer, backends).await
    }
}

/// A local anvil node on a free loopback port, stopped when dropped. [`Anvil::start`] installs
/// the pinned anvil first (`scripts/install-tools.sh anvil`) if it is missing.
pub struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    /// Installs (if needed) and starts anvil with chain id [`CHAIN_ID`] under Cancun rules.
    ///
    /// # Panics
    /// If anvil can't be installed or started: the message says what to fix. Tests never skip
    /// the JSON-RPC backend silently.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Anvil::start`] that also mines a block every `seconds` (not only one per
    /// transaction), as a real chain does: a node's clock-bound duties see blocks go by.
    pub fn mining_every(seconds: u64) -> Self {
        Self::start_with(&["--block-time", &seconds.to_string()])
    }

    /// [`Anvil::start`] that mines only when asked (`evm_mine`): sent transactions wait in its
    /// pool, as they do on a busy chain.
    pub fn mining_on_request() -> Self {
        Self::start_with(&["--no-mining"])
    }

    fn start_with(extra: &[&str]) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // Tests start anvils in parallel; one install per process (the script also locks).
        static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
        let installed = INSTALLED.get_or_init(|| {
            match Command::new(root.join("scripts/install-tools.sh"))
                .arg("anvil")
                .status()
            {
                Ok(status) if status.success() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        if let Err(error) = installed {
            panic!(
                "could not install anvil ({error}): run scripts/install-tools.sh anvil \
                 (needs npm and the npm registry)"
            );
        }
        let binary = root.join(".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        let mut child = Command::new(&binary)
            .args(["--port", "0", "--host", "127.0.0.1", "--hardfork", "cancun"])
            .args(["--chain-id", &CHAIN_ID.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("Listening on ").map(str::to_owned));
        let Some(address) = address else {
            let status = child.kill().and_then(|()| child.wait());
            panic!("anvil exited before listening ({status:?})");
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: format!("http://{address}"),
        }
    }

    /// Its JSON-RPC endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // Already gone is fine: there is nothing left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

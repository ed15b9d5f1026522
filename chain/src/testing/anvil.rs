//! A local anvil node, and the test network on it (feature `rpc`).

use super::{ALICE, BOB, CAROL, TestNet};
use crate::anvil::{AnvilProcess, pinned_binary};
use crate::backend::Backend;
use crate::rpc::RpcBackend;
use alloy_primitives::{B256, U256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use hoplite_htlc::testing::key_bytes;
use std::path::PathBuf;
use std::sync::OnceLock;

pub use crate::anvil::DEPLOYER_KEY;

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
    process: AnvilProcess,
}

impl Anvil {
    /// Installs (if needed) and starts anvil with chain id [`super::CHAIN_ID`] under Cancun
    /// rules.
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
        // Tests start anvils in parallel; one install per process (the script also locks).
        static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let binary = BINARY
            .get_or_init(|| pinned_binary().map_err(|e| e.to_string()))
            .as_ref()
            .unwrap_or_else(|error| panic!("{error}"));
        let args = [&["--port", "0"], extra].concat();
        let process =
            AnvilProcess::spawn(binary, &args, None, false).unwrap_or_else(|e| panic!("{e}"));
        Self { process }
    }

    /// Its JSON-RPC endpoint.
    pub fn url(&self) -> &str {
        self.process.url()
    }
}

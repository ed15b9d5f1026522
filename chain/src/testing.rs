//! A token network with three funded parties on either backend, for tests, examples and
//! benchmarks (feature `test-utils`). Alice (0) and Bob (1) hold channels; Carol (2) is a third
//! party: a watchtower, a settler, or an intruder. [`Anvil`] runs a local anvil node for the
//! JSON-RPC backend.

use crate::backend::{Backend, Mine};
use crate::client::Chain;
use crate::contracts::{TestToken, TokenNetwork};
use crate::deploy::Deployment;
use crate::evm::{EvmBackend, InProcessEvm, SharedEvm};
use crate::rpc::RpcBackend;
use alloy_primitives::{Address, B256, U256, address, b256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolStruct};
use hoplite_htlc::eip712::BalanceProofUpdate;
use hoplite_htlc::testing::{key, key_bytes};
use hoplite_htlc::{
    Amount, BalanceProof, ChannelId, Nonce, PrivateKey, Signature, SignedBalanceProof,
    TokenNetwork as Domain,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// The chain id of every test network.
pub const CHAIN_ID: u64 = 1337;
/// Deploys the contracts: anvil's first dev account.
pub const DEPLOYER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// Its well-known key (anvil's default mnemonic; never use it anywhere real).
const DEPLOYER_KEY: B256 =
    b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
/// The challenge window of test channels, in blocks.
pub const SETTLE_TIMEOUT: u32 = 40;
/// Party indices.
pub const ALICE: usize = 0;
/// Party indices.
pub const BOB: usize = 1;
/// Party indices.
pub const CAROL: usize = 2;
/// Tokens each party starts with.
pub const START_TOKENS: u64 = 1000;

/// `n` token units.
pub fn tokens(n: u64) -> U256 {
    U256::from(n)
}

/// Balance data as a participant signs it for its own direction.
pub fn balance(transferred: u64, locked: u64, locks_root: B256) -> TokenNetwork::BalanceData {
    TokenNetwork::BalanceData {
        transferredAmount: tokens(transferred),
        lockedAmount: tokens(locked),
        locksRoot: locks_root,
    }
}

/// The state of a direction nobody paid in.
pub fn nothing() -> TokenNetwork::BalanceData {
    TokenNetwork::BalanceData::default()
}

/// The party keys: the same on every backend.
fn party_key(who: usize) -> PrivateKey {
    key(9, who as u8)
}

/// The contracts and three parties with [`START_TOKENS`] each, all approved for deposits.
pub struct TestNet<B> {
    /// Alice's, Bob's and Carol's access to the chain.
    pub parties: [Chain<B>; 3],
    /// Their keys.
    pub keys: [PrivateKey; 3],
}

impl TestNet<EvmBackend> {
    /// A fresh network on the in-process EVM.
    pub async fn in_process() -> Self {
        let evm: SharedEvm = Arc::new(Mutex::new(InProcessEvm::new(CHAIN_ID)));
        let backends =
            [ALICE, BOB, CAROL].map(|who| EvmBackend::new(evm.clone(), party_key(who).address()));
        Self::deploy(EvmBackend::new(evm, DEPLOYER), backends).await
    }

    /// The in-process chain.
    pub fn evm(&self) -> std::sync::MutexGuard<'_, InProcessEvm> {
        self.parties[ALICE].backend().evm()
    }
}

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

impl<B: Mine> TestNet<B> {
    /// Deploys the contracts from `deployer`, mints and approves for each party.
    async fn deploy(mut deployer: B, backends: [B; 3]) -> Self {
        let contracts = Deployment::with_test_token(&mut deployer)
            .await
            .expect("the committed bytecode deploys");
        let mut parties = backends.map(|backend| Chain::new(backend, contracts));
        for chain in &mut parties {
            let mint = TestToken::mintCall {
                to: chain.account(),
                amount: tokens(START_TOKENS),
            };
            chain
                .backend_mut()
                .transact(contracts.token, mint.abi_encode().into())
                .await
                .expect("mint");
            chain.approve_deposits(U256::MAX).await.expect("approve");
        }
        Self {
            parties,
            keys: [ALICE, BOB, CAROL].map(party_key),
        }
    }

    /// A party's access to the chain.
    pub fn chain(&mut self, who: usize) -> &mut Chain<B> {
        &mut self.parties[who]
    }

    /// A party's address.
    pub fn address(&self, who: usize) -> Address {
        self.keys[who].address()
    }

    /// The EIP-712 domain of the TokenNetwork.
    pub fn domain(&self) -> Domain {
        self.parties[ALICE].domain()
    }

    /// Token balance of a party.
    pub async fn tokens_of(&mut self, who: usize) -> U256 {
        let account = self.address(who);
        self.parties[CAROL]
            .token_balance(account)
            .await
            .expect("balanceOf")
            .to_u256()
    }

    /// Tokens the TokenNetwork holds.
    pub async fn held_by_contract(&mut self) -> U256 {
        let network = self.parties[CAROL].contracts().token_network;
        self.parties[CAROL]
            .token_balance(network)
            .await
            .expect("balanceOf")
            .to_u256()
    }

    /// Alice opens a channel with Bob, and each deposits its part of `deposits` (if not 0).
    pub async fn open(&mut self, deposits: [u64; 2]) -> ChannelId {
        let bob = self.address(BOB);
        let (id, _) = self.parties[ALICE]
            .open_channel(bob, SETTLE_TIMEOUT)
            .await
            .expect("open");
        for who in [ALICE, BOB] {
            if deposits[who] > 0 {
                let me = self.address(who);
                self.parties[who]
                    .set_total_deposit(id, me, Amount::from(deposits[who]))
                    .await
                    .expect("deposit");
            }
        }
        self.assert_state_rebuilt(id).await;
        id
    }

    /// Checks that the state rebuilt from events hashes to what the contract stores.
    pub async fn assert_state_rebuilt(&mut self, id: ChannelId) {
        let chain = &mut self.parties[CAROL];
        let channel = chain.channel(id).await.expect("events").expect("opened");
        let network = chain.contracts().token_network;
        let stored = chain
            .view(network, &TokenNetwork::channelHashCall::new((id.0,)))
            .await
            .expect("channelHash");
        assert_eq!(
            stored,
            channel.stored_word(),
            "state rebuilt from events of {id:?}"
        );
    }

    /// `signer`'s balance proof `nonce` over `balance`.
    pub fn proof(
        &self,
        signer: usize,
        id: ChannelId,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> SignedBalanceProof {
        self.proof_on(self.domain(), signer, id, nonce, balance)
    }

    /// The same, under another domain (another chain or contract).
    pub fn proof_on(
        &self,
        domain: Domain,
        signer: usize,
        id: ChannelId,
        nonce: u64,
        balance: &TokenNetwork::BalanceData,
    ) -> SignedBalanceProof {
        let proof = BalanceProof {
            token_network: domain,
            channel_id: id,
            nonce: Nonce(nonce),
            transferred_amount: Amount::from(balance.transferredAmount),
            locked_amount: Amount::from(balance.lockedAmount),
            locks_root: balance.locksRoot,
        };
        proof.sign(&self.keys[signer], &domain.domain_separator())
    }

    /// `signer`'s signature of any EIP-712 message under the TokenNetwork's domain.
    pub fn sign_typed<T: SolStruct>(&self, signer: usize, value: &T) -> Signature {
        self.keys[signer].sign_digest(&self.domain().typed_digest(value))
    }

    /// `signer`'s consent that anyone may submit `proof` for it (what a watchtower holds).
    pub fn consent(&self, signer: usize, proof: &SignedBalanceProof) -> Signature {
        let update = BalanceProofUpdate {
            channelId: proof.proof.channel_id.0,
            balanceProof: proof.proof.signing_hash(),
        };
        self.sign_typed(signer, &update)
    }

    /// Mines `blocks` blocks.
    pub async fn mine(&mut self, blocks: u64) {
        self.parties[CAROL]
            .backend_mut()
            .mine(blocks)
            .await
            .expect("mine");
    }

    /// Mines until the challenge window of a channel closed now is over.
    pub async fn mine_past_window(&mut self) {
        self.mine(u64::from(SETTLE_TIMEOUT) + 1).await;
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

//! Real `hoplite` processes on loopback over a real anvil: the contracts deployed, each
//! daemon's account funded, its config written, its API reached over HTTP.

#![allow(dead_code)] // Each test file uses its own part.

use alloy_primitives::{Address, B256, U256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use hoplite_chain::Chain;
use hoplite_chain::deploy::Deployment;
use hoplite_chain::rpc::RpcBackend;
use hoplite_chain::testing::{Anvil, DEPLOYER_KEY};
use serde_json::{Value, json};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tokens minted to each daemon's account.
pub const MINTED: u64 = 1_000_000;

/// A chain with the contracts, and the daemons on it.
pub struct Localnet {
    pub anvil: Anvil,
    pub deployment: Deployment,
    pub chain: Chain<RpcBackend>,
    pub daemons: Vec<Daemon>,
    pub dir: PathBuf,
    /// Held while the network lives (last, so it goes after the daemons): one network at a
    /// time, so timings are not measured against another test's load on two cores.
    _turn: MutexGuard<'static, ()>,
}

/// Whose turn it is to run a network.
static TURN: Mutex<()> = Mutex::new(());

/// Waits for this test's turn to run a network (see [`Localnet`]); held until dropped.
pub fn take_turn() -> MutexGuard<'static, ()> {
    // A test that failed while holding it leaves nothing behind: its processes are killed.
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One `hoplite node` process.
pub struct Daemon {
    pub index: usize,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub key_file: PathBuf,
    pub api: String,
    pub p2p_port: u16,
    pub address: Address,
    pub key: B256,
    /// Its `RUST_LOG`.
    pub log: &'static str,
    child: Option<Child>,
    http: reqwest::Client,
}

/// Ports handed out so far.
static PORTS: AtomicU16 = AtomicU16::new(0);

/// A loopback port free for TCP and UDP (QUIC), below Linux's ephemeral range (32768 on), so
/// no outgoing connection takes it between here and the daemon's bind; each process starts
/// at its own offset.
fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id() % 1_000 * 12;
    for _ in 0..SPAN {
        let n = u32::from(PORTS.fetch_add(1, Ordering::Relaxed));
        let port = u16::try_from(FIRST + (offset + n) % SPAN).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

impl Localnet {
    /// Anvil mining a block a second, the contracts, and `n` daemons funded with ether and
    /// [`MINTED`] tokens, each bootstrapping to the one before (a line of connections).
    pub async fn start(name: &str, n: usize) -> Self {
        Self::start_with(name, n, "").await
    }

    /// [`Localnet::start`] with `node_toml` added to every daemon's `[node]` section.
    pub async fn start_with(name: &str, n: usize, node_toml: &str) -> Self {
        Self::start_logging(name, n, node_toml, "info,hoplite=debug").await
    }

    /// [`Localnet::start_with`], the daemons logging what `log` lets through (`RUST_LOG`).
    // Blocking on the turn is the point: each test has a runtime and a thread of its own.
    #[allow(clippy::await_holding_lock)]
    pub async fn start_logging(name: &str, n: usize, node_toml: &str, log: &'static str) -> Self {
        let turn = take_turn();
        let dir = std::env::temp_dir().join(format!("hoplite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let anvil = Anvil::mining_every(1);
        let signer = PrivateKeySigner::from_bytes(&DEPLOYER_KEY).expect("a key");
        let mut deployer = RpcBackend::connect(anvil.url(), signer)
            .await
            .expect("anvil answers");
        let deployment = Deployment::with_test_token(&mut deployer)
            .await
            .expect("deployed");
        let mut chain = Chain::new(deployer, deployment);
        let mut daemons = Vec::new();
        let mut ports = Vec::new();
        for index in 0..n {
            let key = B256::from(U256::from(0xC0FFEE_u64 + index as u64));
            let address = PrivateKeySigner::from_bytes(&key).expect("a key").address();
            let ether = U256::from(10u64).pow(U256::from(20u64));
            chain
                .backend()
                .provider()
                .raw_request::<_, Value>("anvil_setBalance".into(), (address, ether))
                .await
                .expect("anvil_setBalance");
            chain
                .mint_test_tokens(address, U256::from(MINTED))
                .await
                .expect("mint");
            let p2p_port = free_port();
            let bootstrap: Vec<String> = ports
                .last()
                .map(|p: &u16| format!("/ip4/127.0.0.1/tcp/{p}"))
                .into_iter()
                .collect();
            ports.push(p2p_port);
            let daemon = Daemon::configure(
                &dir,
                anvil.url(),
                &deployment,
                index,
                key,
                address,
                p2p_port,
                &bootstrap,
                node_toml,
                log,
            );
            daemons.push(daemon);
        }
        let mut net = Self {
            anvil,
            deployment,
            chain,
            daemons,
            dir,
            _turn: turn,
        };
        for daemon in &mut net.daemons {
            daemon.spawn();
        }
        for daemon in &net.daemons {
            daemon.wait_ready().await;
        }
        net
    }

    /// Each daemon opens a channel to the next with `deposit` (the partner deposits nothing);
    /// waits until every daemon knows every channel, announced, with both policies.
    pub async fn open_line(&self, deposit: u64) {
        let n = self.daemons.len();
        for i in 0..n - 1 {
            self.daemons[i]
                .post_ok(
                    "/v1/channels",
                    open_request(self.daemons[i + 1].address, deposit),
                )
                .await;
        }
        for daemon in &self.daemons {
            daemon
                .wait_until("/v1/graph", "gossip convergence", |graph| {
                    let channels = graph["channels"].as_array().expect("a list");
                    channels.len() == n - 1
                        && channels.iter().all(|c| {
                            c["announced"] == json!(true)
                                && c["policies"]
                                    .as_array()
                                    .is_some_and(|p| p.iter().all(|p| p.is_object()))
                                && amount(&c["capacity"]) == deposit
                        })
                })
                .await;
        }
    }

    /// The chain as daemon `index`'s account, for a test that acts in its place.
    pub async fn chain_as(&self, index: usize) -> Chain<RpcBackend> {
        let signer = PrivateKeySigner::from_bytes(&self.daemons[index].key).expect("a key");
        let backend = RpcBackend::connect(self.anvil.url(), signer)
            .await
            .expect("anvil answers");
        Chain::new(backend, self.deployment)
    }

    /// A token balance on-chain.
    pub async fn tokens(&mut self, account: Address) -> U256 {
        self.chain
            .token_balance(account)
            .await
            .expect("balanceOf")
            .to_u256()
    }
}

impl Daemon {
    #[allow(clippy::too_many_arguments)]
    fn configure(
        net_dir: &std::path::Path,
        rpc: &str,
        d: &Deployment,
        index: usize,
        key: B256,
        address: Address,
        p2p_port: u16,
        bootstrap: &[String],
        node_toml: &str,
        log: &'static str,
    ) -> Self {
        let dir = net_dir.join(format!("node{index}"));
        std::fs::create_dir_all(&dir).expect("a node dir");
        let key_file = dir.join("import.key");
        std::fs::write(&key_file, alloy_primitives::hex::encode(key)).expect("key written");
        let api_port = free_port();
        let config = format!(
            r#"data_dir = "{data}"
[chain]
rpc_url = "{rpc}"
token_network = "{tn}"
secret_registry = "{sr}"
token = "{token}"
deployment_block = {block}
confirmations = 0
poll_interval_ms = 200
[network]
listen = ["/ip4/127.0.0.1/tcp/{p2p_port}", "/ip4/127.0.0.1/udp/{p2p_port}/quic-v1"]
bootstrap = {bootstrap:?}
[api]
listen = "127.0.0.1:{api_port}"
[node]
alias = "node{index}"
resend_after_s = 2
{node_toml}
"#,
            data = dir.join("data").display(),
            rpc = rpc,
            tn = d.token_network,
            sr = d.secret_registry,
            token = d.token,
            block = d.block,
        );
        let config_path = dir.join("node.toml");
        std::fs::write(&config_path, config).expect("config written");
        Self {
            index,
            dir,
            config: config_path,
            key_file,
            api: format!("http://127.0.0.1:{api_port}"),
            p2p_port,
            address,
            key,
            log,
            child: None,
            http: reqwest::Client::new(),
        }
    }

    /// Starts the process (its output goes to `node.log` in its folder).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoplite"));
        command.arg("node").arg("--config").arg(&self.config);
        // The key is imported at the first start; later ones find it in the data dir.
        if !self.dir.join("data/key").exists() {
            command.arg("--import-key").arg(&self.key_file);
        }
        let child = command
            .env("RUST_LOG", self.log)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("hoplite starts");
        self.child = Some(child);
    }

    /// Its whole log, every run of it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Waits until its log says `text`.
    pub async fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "node{} never logged {text:?}:\n{}",
                self.index,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The API's bearer token (made by the daemon at its first start).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/api-token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    }

    /// A request to the API with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(self.token())
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap_or_else(|e| panic!("node{} GET /metrics: {e}", self.index));
        assert!(
            response.status().is_success(),
            "node{}: /metrics",
            self.index
        );
        response.text().await.expect("text")
    }

    /// Runs `hoplite --json <args>` against this daemon's API (the CLI); its output.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_hoplite"))
            .args(["--api", &self.api, "--json", "--token-file"])
            .arg(self.dir.join("data/api-token"))
            .args(args)
            .output()
            .expect("hoplite runs")
    }

    /// [`Daemon::cli`], expecting success; the JSON it printed.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "node{} hoplite {args:?}: {}",
            self.index,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "hoplite {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Waits until the API answers `info` (the node is up).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.request(reqwest::Method::GET, "/v1/info").send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node{} did not come up:\n{}",
                self.index,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET path`, expecting success.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("node{} GET {path}: {e}", self.index));
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert!(
            status.is_success(),
            "node{} GET {path}: {status} {body}",
            self.index
        );
        body
    }

    /// `POST path` with `body`: the status and the answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("node{} POST {path}: {e}", self.index));
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    /// `POST path`, expecting success.
    pub async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body.clone()).await;
        assert!(
            (200..300).contains(&status),
            "node{} POST {path} {body}: {status} {answer}",
            self.index
        );
        answer
    }

    /// Waits for an event of one of `kinds` (after id `after`) that `matches`; returns it.
    pub async fn wait_event(
        &self,
        kinds: &[&str],
        after: u64,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = after;
        loop {
            let events = self
                .get(&format!("/v1/events?after={seen}&wait_ms=1000"))
                .await;
            for entry in events.as_array().expect("a list") {
                seen = seen.max(entry["id"].as_u64().expect("an id"));
                let event = &entry["event"];
                if kinds.iter().any(|k| event["type"] == *k) && matches(event) {
                    return event.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "node{}: no {kinds:?} event:\n{}",
                self.index,
                self.log_tail()
            );
        }
    }

    /// Polls `path` until `done` holds of the answer.
    pub async fn wait_until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let answer = self.get(path).await;
            if done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "node{}: {what} never happened; last {path}: {answer}\n{}",
                self.index,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Freezes it (SIGSTOP): its sockets stay open and nothing it was sent is read.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused daemon go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} node{}", self.index);
    }

    /// Kills it with SIGKILL: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it with SIGTERM and waits (a graceful stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node{} did not stop on SIGTERM:\n{}",
                self.index,
                self.log_tail()
            );
        }
    }
}

impl Drop for Localnet {
    /// A passing test leaves nothing behind; a failing one keeps its folder (each daemon's
    /// log and store) to look at.
    fn drop(&mut self) {
        self.daemons.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A JSON amount.
pub fn amount(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an amount string, not {value}"))
        .parse()
        .expect("a decimal amount")
}

/// `{"partner", "deposit"}` for opening a channel.
pub fn open_request(partner: Address, deposit: u64) -> Value {
    json!({"partner": partner, "deposit": deposit.to_string()})
}

/// Pays `paid` from `payer` to `payee` by invoice and waits for both ends to hear of it.
pub async fn pay(payer: &Daemon, payee: &Daemon, paid: u64) {
    let invoice = payee
        .post_ok("/v1/invoices", json!({"amount": paid.to_string()}))
        .await;
    payer
        .post_ok("/v1/payments", json!({"invoice": invoice["invoice"]}))
        .await;
    let outcome = payer
        .wait_event(&["payment_sent", "payment_failed"], 0, |e| {
            e["payment"] == invoice["id"]
        })
        .await;
    assert_eq!(outcome["type"], "payment_sent", "{outcome}");
    payee
        .wait_event(&["payment_received"], 0, |e| e["payment"] == invoice["id"])
        .await;
}

//! `hoplite localnet`: a whole network on this machine in one command. It starts anvil (the
//! pinned one from the source tree's `.tools/`), deploys the contracts and a test token,
//! starts N daemons on loopback with their own data dirs, funds them, opens a connected set
//! of channels (both sides deposit), waits until every node knows every channel and policy,
//! and prints how to reach each node. Ctrl-C (or SIGTERM) stops the daemons, then anvil;
//! the folder goes too unless `--keep`, in which case `--dir` starts the same network again
//! (anvil's state is saved on exit and loaded at start).
//!
//! Layout of the folder: `anvil.log`, `anvil-state.json`, `localnet.json` (the contracts and
//! every node's address, API, token file and config, for scripts), and `node<i>/` with
//! `node.toml`, `node.log` and `data/`.

// It waits on real processes, by the wall clock.
#![allow(clippy::disallowed_methods)]

use crate::client::{Client, Connection};
use crate::keys;
use alloy_primitives::{Address, U256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use anyhow::{Context, bail};
use hoplite_chain::Chain;
use hoplite_chain::anvil::{AnvilProcess, DEPLOYER_KEY, pinned_binary};
use hoplite_chain::deploy::Deployment;
use hoplite_chain::rpc::RpcBackend;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tokens minted to each node.
const MINTED: u64 = 1_000_000_000;
/// How long the network may take to come up.
const READY_WITHIN: Duration = Duration::from_secs(180);
/// The most nodes.
const MAX_NODES: usize = 32;

/// `hoplite localnet`'s options.
#[derive(clap::Args, Debug)]
pub struct LocalnetArgs {
    /// How many nodes (2 to 32).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Which channels: a line (0-1-2-…), a ring (the line closed), or random (a random
    /// spanning tree and about N/2 more channels, from --seed).
    #[arg(long, value_enum, default_value_t = Topology::Line)]
    pub topology: Topology,
    /// What each side deposits in each channel, tokens.
    #[arg(long, default_value_t = 1_000_000)]
    pub deposit: u64,
    /// The folder for everything (default: a new one in the temp dir). A folder that holds a
    /// localnet kept with --keep starts that network again.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the folder (chain state and the nodes' data) when stopping, to start again.
    #[arg(long)]
    pub keep: bool,
    /// anvil listens on this port, node i's API on base+1+2i and its libp2p on base+2+2i.
    #[arg(long, default_value_t = 18_545)]
    pub base_port: u16,
    /// Seeds the random topology.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The anvil binary (default: the pinned one, installed into the source tree's .tools/
    /// by scripts/install-tools.sh).
    #[arg(long, env = "HOPLITE_ANVIL")]
    pub anvil: Option<PathBuf>,
}

/// The shape of the channel graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// 0-1, 1-2, …
    Line,
    /// A line, and the last node back to the first.
    Ring,
    /// A random spanning tree and about N/2 more channels.
    Random,
}

/// What `localnet.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    base_port: u16,
    anvil_url: String,
    token: Address,
    token_network: Address,
    secret_registry: Address,
    deployment_block: u64,
    channels: Vec<(usize, usize)>,
    deposit: u64,
    nodes: Vec<NodeInfo>,
}

/// One node, as `localnet.json` tells it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeInfo {
    alias: String,
    address: Address,
    api: String,
    p2p_port: u16,
    config: PathBuf,
    data_dir: PathBuf,
    token_file: PathBuf,
    log: PathBuf,
}

/// Runs a local network until SIGINT or SIGTERM.
pub async fn run(args: LocalnetArgs) -> anyhow::Result<()> {
    if !(2..=MAX_NODES).contains(&args.nodes) {
        bail!("--nodes must be within 2 and {MAX_NODES}");
    }
    // Listening from the start: a signal during the setup stops what has started.
    let mut signals = Signals::new()?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("hoplite-localnet-{}", std::process::id())),
    };
    let state_file = dir.join("localnet.json");
    // Only a folder made here is removed at the end: never one the user had.
    let created = !dir.exists();
    if !created && !state_file.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} holds other files: give a new or empty folder, or one a kept localnet left",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let state_file = dir.join("localnet.json");
    // Declared before the processes: dropped after them, whatever way this returns.
    let folder = Folder {
        path: dir.clone(),
        remove: created && !args.keep,
    };
    let existing: Option<State> = match std::fs::read_to_string(&state_file) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a localnet's", state_file.display()))?,
        ),
        Err(_) => None,
    };
    if let Some(state) = &existing {
        say(format!(
            "starting the network kept in {} again: {} nodes from port {}",
            dir.display(),
            state.nodes.len(),
            state.base_port
        ));
    }
    let binary = match &args.anvil {
        Some(path) => path.clone(),
        None => pinned_binary()?,
    };
    // A network started again keeps its ports (its nodes' configs name them).
    let (base_port, nodes) = existing.as_ref().map_or((args.base_port, args.nodes), |s| {
        (s.base_port, s.nodes.len())
    });
    let ports = Ports::new(base_port, nodes)?;
    ports.check_free()?;

    say(format!("starting anvil on 127.0.0.1:{}", ports.anvil));
    let anvil_state = dir.join("anvil-state.json");
    let port = ports.anvil.to_string();
    let state_path = anvil_state.display().to_string();
    let anvil = AnvilProcess::spawn(
        &binary,
        &["--port", &port, "--block-time", "1", "--state", &state_path],
        Some(&dir.join("anvil.log")),
        true,
    )?;
    let mut net = Running {
        anvil: Some(anvil),
        daemons: Vec::new(),
    };
    let setup = async {
        let state = match existing {
            Some(state) => state,
            None => {
                let state = create(&args, &dir, &ports, net.anvil_url()).await?;
                std::fs::write(&state_file, serde_json::to_string_pretty(&state)?)?;
                state
            }
        };
        for node in &state.nodes {
            net.daemons.push(spawn_daemon(node)?);
        }
        let clients = connect(&state, &mut net).await?;
        if !channels_opened(&dir) {
            open_channels(&state, &clients).await?;
            std::fs::write(dir.join(".opened"), "")?;
        }
        converge(&state, &clients, &mut net).await?;
        print_ready(&state, &dir);
        Ok::<_, anyhow::Error>(())
    };
    let outcome = tokio::select! {
        outcome = setup => outcome,
        why = signals.recv() => Err(anyhow::anyhow!("{why} before the network was ready")),
    };
    if let Err(error) = outcome {
        net.stop();
        return Err(error);
    }
    let stopped_by = net.wait(&mut signals).await;
    say(format!(
        "{}: stopping the nodes, then anvil",
        stopped_by.as_ref().unwrap_or_else(|why| why)
    ));
    net.stop();
    if !folder.remove {
        say(format!(
            "kept {}: `hoplite localnet --dir {}` starts it again",
            dir.display(),
            dir.display()
        ));
    }
    match stopped_by {
        Ok(_) => Ok(()),
        Err(why) => bail!("{why}"),
    }
}

/// A folder localnet made, removed when dropped unless kept.
struct Folder {
    path: PathBuf,
    remove: bool,
}

impl Drop for Folder {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Whether the channels were opened already (a kept network started again).
fn channels_opened(dir: &Path) -> bool {
    dir.join(".opened").exists()
}

fn say(line: String) {
    eprintln!("localnet: {line}");
}

/// The ports of a network of `nodes`.
struct Ports {
    anvil: u16,
    api: Vec<u16>,
    p2p: Vec<u16>,
}

impl Ports {
    fn new(base: u16, nodes: usize) -> anyhow::Result<Self> {
        let port = |offset: usize| {
            u16::try_from(usize::from(base) + offset)
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("--base-port {base} leaves no room for {nodes} nodes"))
        };
        Ok(Self {
            anvil: port(0)?,
            api: (0..nodes)
                .map(|i| port(1 + 2 * i))
                .collect::<Result<_, _>>()?,
            p2p: (0..nodes)
                .map(|i| port(2 + 2 * i))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Refuses a port in use, before anything starts.
    fn check_free(&self) -> anyhow::Result<()> {
        let tcp = std::iter::once(self.anvil).chain(self.api.iter().copied());
        for port in tcp.chain(self.p2p.iter().copied()) {
            TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("port {port} is in use: choose another --base-port"))?;
        }
        for &port in &self.p2p {
            UdpSocket::bind(("127.0.0.1", port)).with_context(|| {
                format!("UDP port {port} is in use: choose another --base-port")
            })?;
        }
        Ok(())
    }
}

/// Deploys the contracts, makes each node's key and config, and funds its account.
async fn create(
    args: &LocalnetArgs,
    dir: &Path,
    ports: &Ports,
    anvil_url: &str,
) -> anyhow::Result<State> {
    let deployer = PrivateKeySigner::from_bytes(&DEPLOYER_KEY)?;
    let mut backend = RpcBackend::connect(anvil_url, deployer)
        .await
        .context("connecting to anvil")?;
    let deployment = Deployment::with_test_token(&mut backend)
        .await
        .context("deploying the contracts")?;
    say(format!(
        "deployed: token {} token network {}",
        deployment.token, deployment.token_network
    ));
    let mut chain = Chain::new(backend, deployment);
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let node_dir = dir.join(format!("node{i}"));
        let data_dir = node_dir.join("data");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&data_dir)?;
        }
        let address = keys::load_or_create(&data_dir, None)?.private.address();
        let ether = U256::from(10u64).pow(U256::from(21u64));
        chain
            .backend()
            .provider()
            .raw_request::<_, Value>("anvil_setBalance".into(), (address, ether))
            .await
            .context("funding a node with ether")?;
        chain
            .mint_test_tokens(address, U256::from(MINTED))
            .await
            .context("minting tokens")?;
        let bootstrap: Vec<String> = (i > 0)
            .then(|| format!("/ip4/127.0.0.1/tcp/{}", ports.p2p[i - 1]))
            .into_iter()
            .collect();
        let config = node_dir.join("node.toml");
        let text = format!(
            r#"data_dir = {data}
[chain]
rpc_url = "{anvil_url}"
token_network = "{tn}"
secret_registry = "{sr}"
token = "{token}"
deployment_block = {block}
confirmations = 0
poll_interval_ms = 250
[network]
listen = ["/ip4/127.0.0.1/tcp/{p2p}", "/ip4/127.0.0.1/udp/{p2p}/quic-v1"]
bootstrap = {bootstrap:?}
[api]
listen = "127.0.0.1:{api}"
[node]
alias = "node{i}"
"#,
            data = toml::Value::from(data_dir.display().to_string()),
            tn = deployment.token_network,
            sr = deployment.secret_registry,
            token = deployment.token,
            block = deployment.block,
            p2p = ports.p2p[i],
            api = ports.api[i],
        );
        std::fs::write(&config, text)?;
        nodes.push(NodeInfo {
            alias: format!("node{i}"),
            address,
            api: format!("http://127.0.0.1:{}", ports.api[i]),
            p2p_port: ports.p2p[i],
            config,
            token_file: data_dir.join(keys::API_TOKEN_FILE),
            data_dir,
            log: node_dir.join("node.log"),
        });
    }
    Ok(State {
        base_port: args.base_port,
        anvil_url: anvil_url.to_owned(),
        token: deployment.token,
        token_network: deployment.token_network,
        secret_registry: deployment.secret_registry,
        deployment_block: deployment.block,
        channels: channels(args.topology, args.nodes, args.seed),
        deposit: args.deposit,
        nodes,
    })
}

/// The channels of `topology` over `n` nodes, as (opener, partner).
fn channels(topology: Topology, n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    match topology {
        Topology::Line => {}
        Topology::Ring => {
            if n > 2 {
                edges.push((n - 1, 0));
            }
        }
        Topology::Random => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            edges = (1..n).map(|i| (rng.random_range(0..i), i)).collect();
            let mut seen: BTreeSet<(usize, usize)> =
                edges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
            let possible = n * (n - 1) / 2;
            let mut extra = n / 2;
            while extra > 0 && seen.len() < possible {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                if a != b && seen.insert((a.min(b), a.max(b))) {
                    edges.push((a, b));
                    extra -= 1;
                }
            }
        }
    }
    edges
}

/// The processes of a running localnet.
struct Running {
    anvil: Option<AnvilProcess>,
    daemons: Vec<(String, Child, PathBuf)>,
}

impl Running {
    fn anvil_url(&self) -> &str {
        self.anvil.as_ref().map_or("", AnvilProcess::url)
    }

    /// The first process that is no longer running, if any.
    fn exited(&mut self) -> Option<String> {
        if let Some(anvil) = &mut self.anvil
            && !anvil.running()
        {
            return Some("anvil exited".into());
        }
        for (alias, child, log) in &mut self.daemons {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!(
                    "{alias} exited ({status}); its log: {}",
                    log.display()
                ));
            }
        }
        None
    }

    /// Waits for SIGINT or SIGTERM (`Ok`), or a process that dies (`Err`); says which.
    async fn wait(&mut self, signals: &mut Signals) -> Result<String, String> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                why = signals.recv() => return Ok(why.into()),
                _ = tick.tick() => {
                    if let Some(why) = self.exited() {
                        return Err(why);
                    }
                }
            }
        }
    }

    /// SIGTERM to every daemon (each finishes its writes and closes its peers), then anvil
    /// (which saves its state); whatever does not stop in 20 s is killed.
    fn stop(&mut self) {
        for (_, child, _) in &mut self.daemons {
            // Not one already reaped: its pid may be another process's now.
            if let Ok(None) = child.try_wait() {
                let _ = Command::new("kill").arg(child.id().to_string()).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (alias, child, _) in &mut self.daemons {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        say(format!("{alias} did not stop in 20 s: killed"));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.daemons.clear();
        if let Some(anvil) = self.anvil.take() {
            anvil.stop(Duration::from_secs(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP (the terminal closed), listened to from the start: the
/// children run in process groups of their own, so only localnet can stop them.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next one's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// Starts `hoplite node` for `node` (this very binary), its output into its log, in a process
/// group of its own: a terminal's Ctrl-C reaches localnet, which stops the nodes in order.
fn spawn_daemon(node: &NodeInfo) -> anyhow::Result<(String, Child, PathBuf)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)?;
    let child = Command::new(std::env::current_exe()?)
        .process_group(0)
        .arg("node")
        .arg("--config")
        .arg(&node.config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting a daemon")?;
    Ok((node.alias.clone(), child, node.log.clone()))
}

/// Waits for every node's API; a client of each.
async fn connect(state: &State, net: &mut Running) -> anyhow::Result<Vec<Client>> {
    let deadline = Instant::now() + READY_WITHIN;
    let mut clients = Vec::new();
    for node in &state.nodes {
        let client = loop {
            if let Some(why) = net.exited() {
                bail!("{why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not come up; its log: {}",
                    node.alias,
                    node.log.display()
                );
            }
            if node.token_file.exists() {
                let connection = Connection {
                    api: node.api.clone(),
                    token_file: Some(node.token_file.clone()),
                    json: true,
                };
                let client = Client::new(&connection, None)?;
                if client
                    .call(reqwest::Method::GET, "/v1/info", None)
                    .await
                    .is_ok()
                {
                    break client;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        clients.push(client);
    }
    say(format!("{} nodes up", clients.len()));
    Ok(clients)
}

/// Opens every channel (the opener deposits), then has each partner deposit as much.
async fn open_channels(state: &State, clients: &[Client]) -> anyhow::Result<()> {
    let deposit = state.deposit.to_string();
    for &(a, b) in &state.channels {
        clients[a]
            .call(
                reqwest::Method::POST,
                "/v1/channels",
                Some(json!({"partner": state.nodes[b].address, "deposit": deposit})),
            )
            .await
            .with_context(|| format!("node{a} opening a channel with node{b}"))?;
    }
    say(format!("opening channels: {:?}", state.channels));
    let deadline = Instant::now() + READY_WITHIN;
    for &(a, b) in &state.channels {
        let opener = state.nodes[a].address;
        let id = loop {
            let channels = clients[b]
                .call(reqwest::Method::GET, "/v1/channels", None)
                .await?;
            let found = channels.as_array().and_then(|list| {
                list.iter()
                    .find(|c| c["partner"] == json!(opener) && c["state"] == "open")
                    .and_then(|c| c["id"].as_str().map(str::to_owned))
            });
            if let Some(id) = found {
                break id;
            }
            if Instant::now() > deadline {
                bail!("node{b} never saw its channel with node{a} open");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        clients[b]
            .call(
                reqwest::Method::POST,
                &format!("/v1/channels/{id}/deposit"),
                Some(json!({"total": deposit})),
            )
            .await
            .with_context(|| format!("node{b} depositing into channel {id}"))?;
    }
    Ok(())
}

/// Waits until every node knows every channel, announced, with both policies and both
/// deposits.
async fn converge(state: &State, clients: &[Client], net: &mut Running) -> anyhow::Result<()> {
    let capacity = (2 * u128::from(state.deposit)).to_string();
    let deadline = Instant::now() + READY_WITHIN;
    for (i, client) in clients.iter().enumerate() {
        loop {
            if let Some(why) = net.exited() {
                bail!("{why}");
            }
            let graph = client.call(reqwest::Method::GET, "/v1/graph", None).await?;
            let known = graph["channels"].as_array().map_or(0, |channels| {
                channels
                    .iter()
                    .filter(|c| {
                        c["announced"] == json!(true)
                            && c["policies"]
                                .as_array()
                                .is_some_and(|p| p.iter().all(|p| p.is_object()))
                            && c["capacity"] == json!(capacity)
                    })
                    .count()
            });
            if known == state.channels.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node{i} knows {known} of {} channels; its log: {}",
                    state.channels.len(),
                    state.nodes[i].log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

fn print_ready(state: &State, dir: &Path) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "hoplite".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "localnet ready: {} nodes, {} channels of {} tokens a side, anvil at {}",
        state.nodes.len(),
        state.channels.len(),
        state.deposit,
        state.anvil_url
    );
    for node in &state.nodes {
        let _ = writeln!(out, "{} {}", node.alias, node.address);
        let _ = writeln!(out, "  api    {}", node.api);
        if let Ok(token) = std::fs::read_to_string(&node.token_file) {
            let _ = writeln!(out, "  web    {}/#token={}", node.api, token.trim());
        }
        let _ = writeln!(out, "  token  {}", node.token_file.display());
        let _ = writeln!(
            out,
            "  cli    {exe} --api {} --token-file {} info",
            node.api,
            node.token_file.display()
        );
    }
    let _ = writeln!(out, "state: {}", dir.join("localnet.json").display());
    let _ = writeln!(out, "Ctrl-C stops everything.");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(n: usize, edges: &[(usize, usize)]) -> bool {
        let mut reached = BTreeSet::from([0]);
        loop {
            let before = reached.len();
            for &(a, b) in edges {
                if reached.contains(&a) || reached.contains(&b) {
                    reached.extend([a, b]);
                }
            }
            if reached.len() == before {
                return reached.len() == n;
            }
        }
    }

    #[test]
    fn every_topology_connects_every_node_once_per_pair() {
        for topology in [Topology::Line, Topology::Ring, Topology::Random] {
            for n in [2, 3, 7, 32] {
                let edges = channels(topology, n, 9);
                assert!(connected(n, &edges), "{topology:?} over {n}: {edges:?}");
                let pairs: BTreeSet<_> = edges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
                assert_eq!(pairs.len(), edges.len(), "no pair twice");
                assert!(edges.iter().all(|&(a, b)| a != b && a < n && b < n));
            }
        }
        assert_eq!(channels(Topology::Ring, 4, 0).len(), 4);
        assert!(channels(Topology::Random, 8, 1).len() > 7);
        assert_eq!(
            channels(Topology::Random, 8, 1),
            channels(Topology::Random, 8, 1)
        );
    }
}

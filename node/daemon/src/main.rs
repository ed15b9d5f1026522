//! `hoplite`: the Hoplite daemon and its command line. `hoplite node` drives the sans-IO
//! `hoplite_node::Node` over real sockets, a real chain and a real database; `hoplite
//! localnet` runs a whole network on this machine; the other commands talk to a running node
//! through its REST API.
//!
//! # Layout
//! - `config.rs`: settings from a TOML file, flags and the environment.
//! - `keys.rs`: the node's key (generated or imported, kept mode 0600), its libp2p identity,
//!   a peer's address read from its PeerId, and the API's bearer token.
//! - `store.rs`: SQLite (WAL, `synchronous=FULL`), the node's records by kind, group commit
//!   on a writer thread.
//! - `chain.rs`: the chain over JSON-RPC: the log follower and the request submitter.
//! - `network.rs`: libp2p (TCP, QUIC, noise, yamux, identify, gossipsub, one ordered stream
//!   per peer for channel messages).
//! - `runtime.rs`: the one task that owns the node and moves its inputs and outputs.
//! - `api.rs`: the REST API (axum) on the task's command queue, behind the bearer token.
//! - `events.rs`: the API's event log (published once stored; SSE and long polls);
//!   `history.rs`: the API's payments and invoices.
//! - `client.rs`: the commands that call the API (`hoplite info`, `pay`, …) and their tables.
//! - `localnet.rs`: `hoplite localnet`: anvil, the contracts and N daemons on loopback.
//! - `metrics.rs`: the Prometheus metrics behind `GET /metrics`.
//! - `views.rs`: what the API answers, as types; the OpenAPI document is generated from them.

mod api;
mod chain;
mod client;
mod config;
mod events;
mod history;
mod keys;
mod localnet;
mod metrics;
mod network;
mod runtime;
mod store;
mod views;

use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use clap::{Parser, Subcommand};
use hoplite_chain::events::ChainEvent;
use hoplite_htlc::{BlockNumber, TokenNetwork};
use hoplite_node::Node;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// The database file in the data directory.
pub(crate) const DATABASE: &str = "node.sqlite";

#[derive(Parser)]
#[command(
    name = "hoplite",
    version,
    about = "The Hoplite payment-channel node, and a command line for it",
    after_help = "A local network to try it: `hoplite localnet --nodes 4`, then the `cli` line \
                  it prints for a node, e.g. `hoplite --api http://127.0.0.1:18546 \
                  --token-file …/node0/data/api-token pay <invoice>`."
)]
struct Cli {
    /// The node's data directory: `hoplite node` keeps its key and database there; the other
    /// commands read the API's token from it (default: ~/.hoplite).
    #[arg(long, global = true, env = "HOPLITE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    connection: client::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node: follows the chain, connects to peers, serves the REST API, until SIGINT
    /// or SIGTERM. Example: `hoplite node --config node.toml`.
    Node(NodeArgs),
    /// Runs a whole network on this machine: anvil, the contracts, N funded nodes with
    /// channels between them; prints how to reach each node. Ctrl-C stops everything.
    /// Example: `hoplite localnet --nodes 4 --topology ring`.
    Localnet(localnet::LocalnetArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The TOML config file (every setting; flags and environment variables override it).
    #[arg(long, env = "HOPLITE_CONFIG")]
    config: Option<PathBuf>,
    /// The chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545.
    #[arg(long, env = "HOPLITE_RPC_URL")]
    rpc_url: Option<String>,
    /// Where the HTTP API listens (keep it on loopback: it moves funds).
    #[arg(long, env = "HOPLITE_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// A libp2p listen address (repeatable), e.g. /ip4/127.0.0.1/tcp/9735.
    #[arg(long)]
    listen: Vec<String>,
    /// A peer to keep connected (repeatable), e.g. /ip4/127.0.0.1/tcp/9735/p2p/16Uiu2….
    #[arg(long)]
    bootstrap: Vec<String>,
    /// On first start, take the key from this file (hex) instead of generating one.
    #[arg(long)]
    import_key: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Node(mut args) => runtime.block_on(async {
            loop {
                match run_node(&args, cli.data_dir.clone()).await {
                    Err(e) if e.downcast_ref::<runtime::Reorganised>().is_some() => {
                        warn!(target: "hoplite::chain", error = %e, "starting again, to read the chain anew");
                        // The key is in the data directory now.
                        args.import_key = None;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    result => return result,
                }
            }
        }),
        Command::Localnet(args) => runtime.block_on(localnet::run(args)),
        Command::Client(command) => {
            runtime.block_on(client::run(&cli.connection, cli.data_dir, command))
        }
    }
}

async fn run_node(args: &NodeArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = config::load(
        args.config.as_deref(),
        config::Overrides {
            data_dir,
            rpc_url: args.rpc_url.clone(),
            api_listen: args.api_listen,
            listen: args.listen.clone(),
            bootstrap: args.bootstrap.clone(),
        },
    )?;
    let data_dir = &settings.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let key = keys::load_or_create(data_dir, args.import_key.as_deref())?;
    let token = keys::load_or_create_api_token(data_dir)?;
    let store = store::Store::open(&data_dir.join(DATABASE))
        .with_context(|| format!("opening {}", data_dir.join(DATABASE).display()))?;
    let stored = store.load()?;
    store::check_backup_marker(data_dir, stored.generation)?;

    let signer = PrivateKeySigner::from_bytes(key.bytes()).context("the key as a signer")?;
    let mut submitter = chain::connect(&settings.chain, signer.clone()).await?;
    let follower = chain::connect(&settings.chain, signer).await?;
    chain::approve_deposits(&mut submitter)
        .await
        .context("approving the TokenNetwork for deposits")?;
    let deployment = chain::deployment(&settings.chain);
    let stored_chain = stored_chain(
        &store,
        &follower,
        &deployment,
        stored.chain_events,
        stored.checkpoint,
    )
    .await?;
    let chain_id = hoplite_chain::Backend::chain_id(submitter.backend());
    let token_network = TokenNetwork {
        chain_id,
        address: settings.chain.token_network,
    };

    let libp2p_key = key.libp2p();
    let peer_id = libp2p_key.public().to_peer_id();
    let announced = announced_addresses(&settings.network, &peer_id);
    let mut config = hoplite_node::Config::new(token_network, random_seed());
    apply_node_settings(&mut config, &settings.node, &announced);
    let now = runtime::now();
    let block = BlockNumber(settings.chain.deployment_block);
    let restored = !stored.records.is_empty();
    let node = if restored {
        Node::restore(config, key.private.clone(), stored.records, now, block)
    } else {
        Node::new(config, key.private.clone(), now, block)
    }
    .map_err(|e| anyhow::anyhow!("the node's settings: {e}"))?;
    let checkpoint = stored_chain.1;
    info!(target: "hoplite::node", address = %node.address(), %peer_id, restored, checkpoint = ?checkpoint.map(|(n, _)| n), "starting");

    let topic = format!(
        "/hoplite/{chain_id}/{}/gossip",
        settings.chain.token_network
    );
    let mut metrics = metrics::Metrics::new();
    let (network, streams) = network::Network::start(
        libp2p_key,
        &settings.network.listen,
        &settings.network.bootstrap,
        &topic,
        metrics.libp2p_registry(),
    )?;
    let metrics = std::sync::Arc::new(metrics);
    let (committed_tx, committed) = mpsc::unbounded_channel();
    let writer = store.spawn_writer(committed_tx, metrics.store_commit_seconds.clone());
    let (updates_tx, updates) = mpsc::channel(256);
    let (requests, requests_rx) = mpsc::unbounded_channel();
    // The node is fed the stored events first, then the follower's from the checkpoint on.
    let follower = tokio::spawn(chain::follow(
        follower,
        settings.chain.clone(),
        checkpoint,
        updates_tx.clone(),
    ));
    let submitter = tokio::spawn(chain::submit(submitter, requests_rx, updates_tx));

    let (commands_tx, commands) = mpsc::channel(256);
    // Both from the store: a restart goes on with the same ids and history.
    let events = events::EventLog::new(stored.events);
    let last_event = events.newest();
    let history = history::History::new(stored.history);
    let listener = tokio::net::TcpListener::bind(settings.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", settings.api.listen))?;
    info!(target: "hoplite::api", address = %settings.api.listen, "API listening");
    let (shutdown_tx, shutdown) = watch::channel(false);
    // The API stops after the node's task, however that ended.
    let (api_stop, mut api_shutdown) = watch::channel(false);
    let api = tokio::spawn(
        axum::serve(
            listener,
            api::router(api::Api::new(
                commands_tx,
                events.clone(),
                metrics.clone(),
                token,
                data_dir.clone(),
            )),
        )
        .with_graceful_shutdown(async move {
            let _ = api_shutdown.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        info!(target: "hoplite::node", "signal: shutting down");
        let _ = shutdown_tx.send(true);
    });

    let runtime = runtime::Runtime {
        node,
        network,
        streams,
        store: writer,
        committed,
        chain: updates,
        requests,
        commands,
        events,
        unpublished: Default::default(),
        last_event,
        history,
        metrics,
        replaying: false,
        stored_gossip: stored.gossip,
        stored_chain,
        deployment,
        resumed: None,
        max_head_age: Duration::from_secs(settings.chain.max_head_age_s),
        announced,
        chain_id,
        head_timestamp: None,
        gossip: Default::default(),
        deferred: Vec::new(),
        rejected: BTreeMap::new(),
    };
    let result = runtime.run(shutdown).await;
    let _ = api_stop.send(true);
    let _ = api.await;
    // Nothing of this run may act on after it (a next run starts its own).
    for task in [signals, follower, submitter] {
        task.abort();
    }
    info!(target: "hoplite::node", "stopped");
    result
}

/// The stored chain events, decoded, and their checkpoint, if the checkpoint's block is still
/// on the chain; otherwise (a reorg deeper than the confirmations while we were down)
/// nothing, and the store forgets them: the chain is read again from the deployment.
async fn stored_chain(
    store: &store::Store,
    chain: &hoplite_chain::Chain<hoplite_chain::rpc::RpcBackend>,
    deployment: &hoplite_chain::deploy::Deployment,
    logs: Vec<hoplite_chain::backend::BlockLog>,
    checkpoint: Option<store::Checkpoint>,
) -> anyhow::Result<(Vec<ChainEvent>, Option<store::Checkpoint>)> {
    let Some((number, hash)) = checkpoint else {
        return Ok((Vec::new(), None));
    };
    let found = chain::block_hash(chain, number)
        .await
        .context("reading the checkpoint's block")?;
    // No such block yet (a lagging RPC node) is not a reorg: the follower checks again
    // before it reads on.
    if found.is_some_and(|found| found != hash) {
        warn!(target: "hoplite::chain", block = number, expected = %hash, ?found, "the last processed block left the chain: reading the chain from the deployment");
        store.forget_chain()?;
        return Ok((Vec::new(), None));
    }
    let mut events = Vec::with_capacity(logs.len());
    for log in &logs {
        let event = ChainEvent::decode(deployment, log)?.with_context(|| {
            format!(
                "a stored log of {} is not of our contracts",
                log.log.address
            )
        })?;
        events.push(event);
    }
    Ok((events, checkpoint))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// What we announce: the configured addresses, or the listen addresses that others can dial
/// (not the unspecified 0.0.0.0), each ending in our PeerId; at most four.
fn announced_addresses(network: &config::NetworkSettings, peer: &libp2p::PeerId) -> Vec<String> {
    let candidates = if network.announce.is_empty() {
        &network.listen
    } else {
        &network.announce
    };
    candidates
        .iter()
        .filter(|a| !a.contains("/0.0.0.0/") && !a.contains("/::/"))
        .map(|a| {
            if a.contains("/p2p/") {
                a.clone()
            } else {
                format!("{a}/p2p/{peer}")
            }
        })
        .filter(|a| a.len() <= hoplite_gossip::MAX_ADDRESS_LEN)
        .take(hoplite_gossip::MAX_ADDRESSES)
        .collect()
}

fn apply_node_settings(
    config: &mut hoplite_node::Config,
    node: &config::NodeSettings,
    announced: &[String],
) {
    config.alias = node.alias.clone();
    config.addresses = announced.to_vec();
    if let Some(v) = node.settle_timeout {
        config.settle_timeout = v;
    }
    if let Some(v) = node.reveal_timeout {
        config.reveal_timeout = v;
    }
    if let Some(v) = node.base_fee {
        config.policy.base_fee = v;
    }
    if let Some(v) = node.fee_millionths {
        config.policy.fee_millionths = v;
    }
    if let Some(v) = node.resend_after_s {
        config.resend_after = Duration::from_secs(v);
    }
}

/// A fresh seed at every start: the node's random words are keyed by its private key too,
/// and a new seed keeps them from repeating after a restart.
fn random_seed() -> u64 {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_next_u64()
        .expect("the OS has randomness")
}

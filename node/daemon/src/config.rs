//! The daemon's settings: a TOML file, then flags and environment variables over it
//! (`hoplite node --help` lists them). Parsing only; nothing here opens a file but [`load`].

use alloy_primitives::Address;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `hoplite node` runs with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the key, the database and the logs live.
    pub data_dir: PathBuf,
    /// The chain and the contracts.
    pub chain: ChainSettings,
    /// Peer-to-peer networking.
    #[serde(default)]
    pub network: NetworkSettings,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiSettings,
    /// The node's protocol settings.
    #[serde(default)]
    pub node: NodeSettings,
}

/// `[chain]`: the RPC endpoint and the deployment followed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    /// JSON-RPC over HTTP, e.g. `http://127.0.0.1:8545`.
    pub rpc_url: String,
    /// The TokenNetwork contract.
    pub token_network: Address,
    /// The SecretRegistry contract.
    pub secret_registry: Address,
    /// The ERC-20 token of the token network.
    pub token: Address,
    /// The block the TokenNetwork was deployed in: logs are read from there.
    pub deployment_block: u64,
    /// Blocks a log must be under before the node sees it.
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u64,
    /// How often the head is polled, milliseconds.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The widest `eth_getLogs` range asked for (halved on an error, grown back on success).
    #[serde(default = "defaults::max_log_range")]
    pub max_log_range: u64,
    /// Payments are refused while the newest block is older than this, seconds (a lagging RPC
    /// node hides closes).
    #[serde(default = "defaults::max_head_age_s")]
    pub max_head_age_s: u64,
    /// Seconds a transaction waits for a block before it is sent again with fees 12.5% higher.
    #[serde(default = "defaults::fee_bump_after_s")]
    pub fee_bump_after_s: u64,
    /// The highest fee per gas a transaction ever offers, gwei.
    #[serde(default = "defaults::max_fee_gwei")]
    pub max_fee_gwei: u64,
}

/// `[network]`: where peers reach us and whom we call.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// libp2p listen addresses (TCP and QUIC).
    #[serde(default = "defaults::listen")]
    pub listen: Vec<String>,
    /// Peers dialled at start and kept connected (`/ip4/…/tcp/…/p2p/<PeerId>`).
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// The addresses announced to the network (default: the listen addresses with our PeerId).
    #[serde(default)]
    pub announce: Vec<String>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            bootstrap: Vec::new(),
            announce: Vec::new(),
        }
    }
}

/// `[api]`: the HTTP API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Where it listens (loopback by default: the API moves funds).
    #[serde(default = "defaults::api_listen")]
    pub listen: SocketAddr,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: defaults::api_listen(),
        }
    }
}

/// `[node]`: protocol settings (the rest keep `hoplite_node::Config`'s defaults).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// A name for people, in our node announcement.
    #[serde(default)]
    pub alias: String,
    /// The challenge window of channels we open, blocks.
    pub settle_timeout: Option<u32>,
    /// Blocks we need to register a secret on-chain.
    pub reveal_timeout: Option<u64>,
    /// Our forwarding fee: fixed part.
    pub base_fee: Option<u64>,
    /// Our forwarding fee: millionths of the amount.
    pub fee_millionths: Option<u32>,
    /// Seconds an unacknowledged message waits before it is sent again.
    pub resend_after_s: Option<u64>,
}

mod defaults {
    use std::net::SocketAddr;

    pub(super) fn confirmations() -> u64 {
        1
    }
    pub(super) fn poll_interval_ms() -> u64 {
        1_000
    }
    pub(super) fn max_log_range() -> u64 {
        2_000
    }
    pub(super) fn max_head_age_s() -> u64 {
        120
    }
    pub(super) fn fee_bump_after_s() -> u64 {
        24
    }
    pub(super) fn max_fee_gwei() -> u64 {
        1_000
    }
    pub(super) fn listen() -> Vec<String> {
        vec![
            "/ip4/0.0.0.0/tcp/9735".into(),
            "/ip4/0.0.0.0/udp/9735/quic-v1".into(),
        ]
    }
    pub(super) fn api_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9736))
    }
}

/// What flags and the environment say; each one set replaces the file's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--data-dir` / `HOPLITE_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--rpc-url` / `HOPLITE_RPC_URL`.
    pub rpc_url: Option<String>,
    /// `--api-listen` / `HOPLITE_API_LISTEN`.
    pub api_listen: Option<SocketAddr>,
    /// `--listen` (repeatable).
    pub listen: Vec<String>,
    /// `--bootstrap` (repeatable).
    pub bootstrap: Vec<String>,
}

/// Reads `file` (if any), applies `overrides`, and checks the result.
pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Settings> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("{} is not TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    if let Some(dir) = overrides.data_dir {
        table.insert("data_dir".into(), path_value(&dir)?);
    }
    let section = |table: &mut toml::Table, name: &str| -> anyhow::Result<toml::Table> {
        match table.remove(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => bail!("[{name}] must be a table"),
        }
    };
    let mut chain = section(&mut table, "chain")?;
    if let Some(url) = overrides.rpc_url {
        chain.insert("rpc_url".into(), url.into());
    }
    table.insert("chain".into(), chain.into());
    let mut network = section(&mut table, "network")?;
    if !overrides.listen.is_empty() {
        network.insert("listen".into(), overrides.listen.into());
    }
    if !overrides.bootstrap.is_empty() {
        network.insert("bootstrap".into(), overrides.bootstrap.into());
    }
    table.insert("network".into(), network.into());
    let mut api = section(&mut table, "api")?;
    if let Some(listen) = overrides.api_listen {
        api.insert("listen".into(), listen.to_string().into());
    }
    table.insert("api".into(), api.into());
    let settings: Settings = toml::Value::Table(table)
        .try_into()
        .context("the settings (file, flags and environment together)")?;
    settings.check()?;
    Ok(settings)
}

fn path_value(path: &Path) -> anyhow::Result<toml::Value> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(text.into())
}

impl Settings {
    fn check(&self) -> anyhow::Result<()> {
        let chain = &self.chain;
        if chain.poll_interval_ms == 0 || chain.poll_interval_ms > 600_000 {
            bail!("chain.poll_interval_ms must be within 1..=600000");
        }
        if chain.max_log_range == 0 {
            bail!("chain.max_log_range must be at least 1");
        }
        // A submission is abandoned after `chain::RECEIPT_TIMEOUT`: it must bump before that.
        if chain.fee_bump_after_s == 0 || chain.fee_bump_after_s > 60 {
            bail!("chain.fee_bump_after_s must be within 1..=60");
        }
        if chain.max_fee_gwei == 0 {
            bail!("chain.max_fee_gwei must be at least 1");
        }
        if chain.confirmations > 1_000 {
            bail!("chain.confirmations over 1000 would hide closes for hours");
        }
        if self.network.listen.is_empty() {
            bail!("network.listen is empty: peers could not reach the node");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
data_dir = "/var/lib/hoplite"
[chain]
rpc_url = "http://127.0.0.1:8545"
token_network = "0x1111111111111111111111111111111111111111"
secret_registry = "0x2222222222222222222222222222222222222222"
token = "0x3333333333333333333333333333333333333333"
deployment_block = 7
[network]
bootstrap = ["/ip4/127.0.0.1/tcp/9000"]
[node]
alias = "hub"
"#;

    /// `text` in a config file of a folder that goes when the first is dropped.
    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("hoplite-config-")
            .tempdir()
            .unwrap();
        let file = dir.path().join("hoplite.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let (_dir, file) = write(FILE);
        let settings = load(
            Some(&file),
            Overrides {
                rpc_url: Some("http://127.0.0.1:9999".into()),
                listen: vec!["/ip4/127.0.0.1/tcp/1".into()],
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(settings.chain.rpc_url, "http://127.0.0.1:9999");
        assert_eq!(settings.chain.deployment_block, 7);
        assert_eq!(settings.chain.confirmations, 1);
        assert_eq!(
            (settings.chain.fee_bump_after_s, settings.chain.max_fee_gwei),
            (24, 1_000)
        );
        assert_eq!(settings.network.listen, ["/ip4/127.0.0.1/tcp/1"]);
        assert_eq!(settings.network.bootstrap, ["/ip4/127.0.0.1/tcp/9000"]);
        assert_eq!(settings.api.listen, defaults::api_listen());
        assert_eq!(settings.node.alias, "hub");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_their_name() {
        let (_dir, file) = write(&format!("{FILE}\nfee = 3\n"));
        let error = format!("{:#}", load(Some(&file), Overrides::default()).unwrap_err());
        assert!(error.contains("unknown field `fee`"), "{error}");
        let (_dir, file) = write(&FILE.replace("deployment_block = 7", "deployment_block = -1"));
        let error = format!("{:#}", load(Some(&file), Overrides::default()).unwrap_err());
        assert!(error.contains("deployment_block"), "{error}");
        let (_dir, file) = write(&FILE.replace(
            "deployment_block = 7",
            "deployment_block = 7\nfee_bump_after_s = 600",
        ));
        let error = format!("{:#}", load(Some(&file), Overrides::default()).unwrap_err());
        assert!(error.contains("fee_bump_after_s"), "{error}");
        let error = format!("{:#}", load(None, Overrides::default()).unwrap_err());
        assert!(error.contains("missing field"), "{error}");
    }
}

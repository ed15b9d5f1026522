//! A local anvil node as a child process (feature `rpc`): the pinned binary, installed into
//! the source tree's `.tools/` by `scripts/install-tools.sh anvil`, started on loopback.
//! `hoplite localnet` runs one for people; `testing::Anvil` for tests.

use alloy_primitives::{B256, b256};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The chain id of local networks.
pub const CHAIN_ID: u64 = 1337;

/// The key of anvil's first dev account (its default mnemonic; never use it anywhere real):
/// it deploys the contracts and mints test tokens.
pub const DEPLOYER_KEY: B256 =
    b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");

/// Why anvil could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    /// The install script failed or is not there.
    #[error(
        "could not install anvil ({0}): run scripts/install-tools.sh anvil from the source \
         tree (needs npm and the npm registry), or give the binary's path"
    )]
    Install(String),
    /// The process did not start.
    #[error("could not start {binary}: {error}")]
    Start {
        /// What was run.
        binary: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It exited before it listened.
    #[error("anvil exited before listening ({0})")]
    Exited(String),
}

/// The pinned anvil in the source tree this crate was built from, installed first if it is
/// missing (the script is idempotent and locks against concurrent installs).
pub fn pinned_binary() -> Result<PathBuf, AnvilError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = root.join(".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if binary.exists() {
        return Ok(binary);
    }
    match Command::new(root.join("scripts/install-tools.sh"))
        .arg("anvil")
        .status()
    {
        Ok(status) if status.success() => Ok(binary),
        other => Err(AnvilError::Install(format!("{other:?}"))),
    }
}

/// A running anvil; killed when dropped unless stopped first.
pub struct AnvilProcess {
    child: Child,
    url: String,
}

impl AnvilProcess {
    /// Starts `binary` on 127.0.0.1 with chain id [`CHAIN_ID`] under Cancun rules, plus
    /// `extra` arguments (the port among them, or `--port 0` for any); returns once it
    /// listens. Its further output is drained into `log` (or dropped). With `own_group` it
    /// runs in a process group of its own: a terminal's Ctrl-C then reaches only the parent,
    /// which stops it after what depends on it (and must, however it ends).
    pub fn spawn(
        binary: &Path,
        extra: &[&str],
        log: Option<&Path>,
        own_group: bool,
    ) -> Result<Self, AnvilError> {
        let mut command = Command::new(binary);
        if own_group {
            command.process_group(0);
        }
        let mut child = command
            .args(["--host", "127.0.0.1", "--hardfork", "cancun"])
            .args(["--chain-id", &CHAIN_ID.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| AnvilError::Start {
                binary: binary.to_owned(),
                error,
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("Listening on ").map(str::to_owned));
        let Some(address) = address else {
            let status = child.kill().and_then(|()| child.wait());
            return Err(AnvilError::Exited(format!("{status:?}")));
        };
        // Keep draining its output so it never blocks on a full pipe.
        let mut sink: Box<dyn std::io::Write + Send> = match log {
            Some(path) => match std::fs::File::create(path) {
                Ok(file) => Box::new(file),
                Err(_) => Box::new(std::io::sink()),
            },
            None => Box::new(std::io::sink()),
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(sink, "{line}");
            }
        });
        Ok(Self {
            child,
            url: format!("http://{address}"),
        })
    }

    /// Its JSON-RPC endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop (SIGTERM: it writes its `--state` file) and waits up to `patience`,
    /// then kills it.
    pub fn stop(mut self, patience: std::time::Duration) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        // Counted in naps rather than read off a clock (this crate reads none).
        let nap = std::time::Duration::from_millis(50);
        for _ in 0..patience.as_millis() / nap.as_millis() {
            if !self.running() {
                return;
            }
            std::thread::sleep(nap);
        }
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        // Already gone is fine: there is nothing left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `hoplite backup` (the CLI, through the API) copies a running node's database; a node put
//! back on a copy older than the last backup refuses to start (a stale channel state can lose
//! funds), and one put back on the newest backup starts with everything it held.

use crate::common::{Localnet, amount, pay};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEPOSIT: u64 = 10_000;

fn file(answer: &serde_json::Value) -> PathBuf {
    PathBuf::from(answer["file"].as_str().expect("a file"))
}

/// Puts `file` back as the node's database.
fn restore(data_dir: &Path, file: &Path) {
    for stale in ["node.sqlite-wal", "node.sqlite-shm"] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    std::fs::copy(file, data_dir.join("node.sqlite")).expect("copied back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_and_an_older_one_is_refused() {
    let mut net = Localnet::start("backup", 2).await;
    net.open_line(DEPOSIT).await;
    let data = net.daemons[1].dir.join("data");
    pay(&net.daemons[0], &net.daemons[1], 100).await;
    let older = net.daemons[1].cli_ok(&["backup", "--name", "older.sqlite"]);
    pay(&net.daemons[0], &net.daemons[1], 200).await;
    let newer = net.daemons[1].cli_ok(&["backup", "--name", "newer.sqlite"]);
    assert!(
        newer["generation"].as_u64() > older["generation"].as_u64(),
        "{older} {newer}"
    );
    let (older, newer) = (file(&older), file(&newer));
    assert_eq!(newer, data.join("backups/newer.sqlite"));
    // A backup never overwrites a file.
    let again = net.daemons[1].cli(&["backup", "--name", "newer.sqlite"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("exists") && stderr.contains("409"),
        "{stderr}"
    );

    net.daemons[1].stop();
    restore(&data, &older);
    let refused = Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .arg("node")
        .arg("--config")
        .arg(&net.daemons[1].config)
        .output()
        .expect("hoplite runs");
    assert!(!refused.status.success(), "a stale database is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("older than the last backup"), "{stderr}");

    restore(&data, &newer);
    net.daemons[1].spawn();
    net.daemons[1].wait_ready().await;
    let channels = net.daemons[1]
        .wait_until("/v1/channels", "the channel, locks settled", |c| {
            c[0]["state"] == "open" && c[0]["partner_locked"] == "0"
        })
        .await;
    assert_eq!(amount(&channels[0]["our_balance"]), 300, "{channels}");
    pay(&net.daemons[0], &net.daemons[1], 400).await;
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

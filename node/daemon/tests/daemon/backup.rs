//! `hoplite backup` copies a running node's database; a node put back on a copy older than
//! the last backup refuses to start (a stale channel state can lose funds), and one put back
//! on the newest backup starts with everything it held.

use crate::common::{Localnet, amount, pay};
use std::path::Path;
use std::process::Command;

const DEPOSIT: u64 = 10_000;

/// Runs `hoplite backup` of `data_dir` into `file`.
fn backup(data_dir: &Path, file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(file)
        .output()
        .expect("hoplite backup runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("text")
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
    let (older, newer) = (net.dir.join("older.sqlite"), net.dir.join("newer.sqlite"));
    pay(&net.daemons[0], &net.daemons[1], 100).await;
    backup(&data, &older);
    pay(&net.daemons[0], &net.daemons[1], 200).await;
    let printed = backup(&data, &newer);
    assert!(printed.contains("generation"), "{printed}");
    // A backup never overwrites a file.
    let again = Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg(&newer)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

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

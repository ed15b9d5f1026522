//! The `hoplite` command line against a real daemon: `--json` prints what the API answers,
//! tables for people, a payment by invoice waited for, the event stream followed, and the
//! API's refusal printed with a non-zero exit.

use crate::common::{Localnet, amount};
use serde_json::Value;

const DEPOSIT: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_what_the_api_answers() {
    let mut net = Localnet::start("cli", 2).await;
    net.open_line(DEPOSIT).await;
    let (payer, payee) = (&net.daemons[0], &net.daemons[1]);

    assert_eq!(
        payer.cli_ok(&["info"])["address"],
        payer.get("/v1/info").await["address"]
    );
    assert_eq!(
        payer.cli_ok(&["channel", "list"]),
        payer.get("/v1/channels").await
    );
    assert_eq!(payer.cli_ok(&["peers"]), payer.get("/v1/peers").await);
    assert_eq!(payer.cli_ok(&["graph"]), payer.get("/v1/graph").await);
    let id = payer.get("/v1/channels").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        payer.cli_ok(&["channel", "show", &id]),
        payer.get(&format!("/v1/channels/{id}")).await
    );

    let invoice = payee.cli_ok(&["invoice", "create", "250"]);
    let text = invoice["invoice"].as_str().expect("an invoice").to_owned();
    let paid = payer.cli_ok(&["pay", &text, "--wait"]);
    assert_eq!(
        (paid["status"].as_str(), paid["id"].clone()),
        (Some("succeeded"), invoice["id"].clone())
    );
    let shown = payer.cli_ok(&["payments", paid["id"].as_str().unwrap()]);
    assert_eq!(shown, paid);
    assert_eq!(payer.cli_ok(&["payments"])[0], paid);
    let listed = payee.cli_ok(&["invoice", "list"]);
    assert_eq!(listed[0]["id"], invoice["id"]);
    let sent = payer.cli_ok(&["send", &payee.address.to_string(), "5", "--wait"]);
    assert_eq!(sent["status"], "succeeded", "{sent}");
    let balance = payer.cli_ok(&["channel", "list"])[0]["our_balance"].clone();
    assert_eq!(amount(&balance), DEPOSIT - 255);

    // The event stream, from the start, as JSON lines.
    let out = payee.cli(&["events", "--after", "0", "--count", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["id"].as_u64(), lines[1]["id"].as_u64()),
        (Some(1), Some(2))
    );

    // A table for people.
    let human = std::process::Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .args(["--api", &payer.api, "--token-file"])
        .arg(payer.dir.join("data/api-token"))
        .args(["channel", "list"])
        .output()
        .unwrap();
    let table = String::from_utf8(human.stdout).unwrap();
    assert!(
        table.starts_with("ID") && table.contains("PARTNER"),
        "{table}"
    );
    assert!(
        table.contains(&id) && table.contains(&(DEPOSIT - 255).to_string()),
        "{table}"
    );

    // The API's refusal, and a non-zero exit.
    let refused = payer.cli(&["channel", "show", "999"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("unknown_channel") && stderr.contains("404"),
        "{stderr}"
    );
    let no_token = std::process::Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .args([
            "--api",
            &payer.api,
            "--token-file",
            "/nonexistent/token",
            "info",
        ])
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("--token-file"));
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

//! `hoplite localnet --nodes 4` as a user runs it: it comes up, a payment crosses it through
//! the CLI, and Ctrl-C stops every process it started and removes its folder.

use crate::common::take_turn;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether any process's command line names `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Not a zombie: a reaped child's cmdline is empty.
            if cmdline.contains(&needle) && !cmdline.contains(" localnet --nodes") {
                found.push(cmdline);
            }
        }
    }
    found
}

/// A `hoplite localnet` process, interrupted and waited for when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            for _ in 0..300 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localnet_comes_up_pays_across_and_stops_leaving_nothing() {
    let _turn = take_turn();
    let dir = std::env::temp_dir().join(format!("hoplite-ln-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stderr_file =
        std::env::temp_dir().join(format!("hoplite-ln-test-{}.log", std::process::id()));
    // Below the range `common` hands out (20,000 on), and below the ephemeral range.
    let base = 10_000 + (std::process::id() % 900) as u16 * 10;
    let localnet = Command::new(env!("CARGO_BIN_EXE_hoplite"))
        .args([
            "localnet",
            "--nodes",
            "4",
            "--topology",
            "ring",
            "--deposit",
            "50000",
        ])
        .args(["--base-port", &base.to_string(), "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .expect("hoplite localnet starts");
    // However the test ends, nothing it started outlives it.
    let mut localnet = Stopped(localnet);
    let localnet = &mut localnet.0;
    let log = || std::fs::read_to_string(&stderr_file).unwrap_or_default();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = localnet.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !printed.iter().any(|l: &String| l.contains("Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => {
                panic!("localnet never got ready: {printed:?}\n{}", log());
            }
        }
    }
    let text = printed.join("\n");
    assert!(
        text.contains("localnet ready: 4 nodes, 4 channels"),
        "{text}"
    );
    assert_eq!(text.matches("  cli    ").count(), 4, "{text}");

    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("localnet.json")).unwrap()).unwrap();
    let cli = |node: usize, args: &[&str]| -> Value {
        let node = &state["nodes"][node];
        let out = Command::new(env!("CARGO_BIN_EXE_hoplite"))
            .args([
                "--json",
                "--api",
                node["api"].as_str().unwrap(),
                "--token-file",
            ])
            .arg(node["token_file"].as_str().unwrap())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hoplite {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Node 2 is two hops from node 0 whichever way round the ring.
    let invoice = cli(2, &["invoice", "create", "1234"]);
    let paid = cli(0, &["pay", invoice["invoice"].as_str().unwrap(), "--wait"]);
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["route"].as_array().unwrap().len(), 2, "{paid}");
    assert_eq!(paid["route"][1], state["nodes"][2]["address"]);
    assert_eq!(
        cli(2, &["invoice", "show", invoice["id"].as_str().unwrap()])["status"],
        "paid"
    );

    let running = processes_in(&dir);
    assert_eq!(running.len(), 5, "anvil and four daemons: {running:?}");
    let status = Command::new("kill")
        .args(["-INT", &localnet.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = localnet.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "localnet did not stop:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}\n{}", log());
    assert_eq!(
        processes_in(&dir),
        Vec::<String>::new(),
        "nothing left running"
    );
    assert!(!dir.exists(), "its folder went too");
    for port in [base, base + 1, base + 2] {
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("its ports are free again");
    }
    let _ = std::fs::remove_file(&stderr_file);
}

//! Payments per second through three hops of real daemons: anvil, four `hoplite` processes
//! in a line (0 → 1 → 2 → 3) on loopback, each with its SQLite store at
//! `synchronous=FULL`. `--concurrency` clients pay 1 token each from node 0 to node 3
//! without an invoice, each waiting for its payment's outcome before the next; the figures
//! are wall-clock, end to end through the HTTP API:
//!
//! ```sh
//! cargo bench -p hoplite-daemon --bench throughput -- --payments 2000 --concurrency 32
//! ```
//!
//! It prints payments per second, the median and p99 latency (the POST to the payer's
//! `payment_sent` event), and the store commits per payment over all four daemons (each
//! commit is one fsync of the WAL).

#![allow(clippy::disallowed_methods)] // A benchmark reads the wall clock.

#[path = "../tests/daemon/common/mod.rs"]
mod common;

use common::Localnet;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const DEPOSIT: u64 = 1_000_000;

/// A payment's outcome, or who waits for it.
enum Slot {
    Waiting(oneshot::Sender<(bool, Instant)>),
    Done(bool, Instant),
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
        })
        .unwrap_or(default)
}

async fn commits(net: &Localnet) -> u64 {
    let mut total = 0;
    for daemon in &net.daemons {
        total += daemon.get("/v1/info").await["store"]["commits"]
            .as_u64()
            .expect("a count");
    }
    total
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let payments = arg("--payments", 2_000);
    let concurrency = arg("--concurrency", 32).max(1);
    assert!(
        (payments as u64) * 3 < DEPOSIT,
        "at most {} payments",
        DEPOSIT / 3
    );
    eprintln!("anvil and four daemons in a line...");
    let mut net = Localnet::start_logging("bench", 4, "", "warn").await;
    net.open_line(DEPOSIT).await;
    let payer = &net.daemons[0];
    let payee = net.daemons[3].address;
    let body = json!({"payee": payee, "amount": "1"});
    // One payment first, so routes, connections and streams exist.
    let warm = payer.post_ok("/v1/payments", body.clone()).await;
    payer
        .wait_event(&["payment_sent"], 0, |e| e["payment"] == warm["id"])
        .await;
    let after = payer.get("/v1/events?after=0").await;
    let first = after
        .as_array()
        .and_then(|e| e.last())
        .map_or(0, |e| e["id"].as_u64().expect("an id"));
    let commits_before = commits(&net).await;

    let slots: Mutex<BTreeMap<String, Slot>> = Mutex::default();
    let started = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let reader = async {
        let mut seen = first;
        while !finished.load(Ordering::Relaxed) {
            let events = payer
                .get(&format!("/v1/events?after={seen}&wait_ms=200"))
                .await;
            let now = Instant::now();
            for entry in events.as_array().expect("a list") {
                seen = seen.max(entry["id"].as_u64().expect("an id"));
                let event = &entry["event"];
                let sent = event["type"] == "payment_sent";
                if !sent && event["type"] != "payment_failed" {
                    continue;
                }
                let id = event["payment"].as_str().expect("an id").to_owned();
                let mut slots = slots.lock().expect("not poisoned");
                match slots.remove(&id) {
                    Some(Slot::Waiting(tx)) => {
                        let _ = tx.send((sent, now));
                    }
                    _ => {
                        slots.insert(id, Slot::Done(sent, now));
                    }
                }
            }
        }
    };
    let begin = Instant::now();
    let client = || async {
        let mut latencies = Vec::new();
        let mut failed = 0usize;
        while started.fetch_add(1, Ordering::Relaxed) < payments {
            let sent_at = Instant::now();
            let (status, answer): (u16, Value) = payer.post("/v1/payments", body.clone()).await;
            assert_eq!(status, 200, "{answer}");
            let id = answer["id"].as_str().expect("an id").to_owned();
            let (tx, rx) = oneshot::channel();
            let early = {
                let mut slots = slots.lock().expect("not poisoned");
                match slots.remove(&id) {
                    Some(Slot::Done(sent, at)) => Some((sent, at)),
                    _ => {
                        slots.insert(id, Slot::Waiting(tx));
                        None
                    }
                }
            };
            let (sent, at) = match early {
                Some(outcome) => outcome,
                None => tokio::time::timeout(Duration::from_secs(120), rx)
                    .await
                    .expect("an outcome within 120 s")
                    .expect("the reader"),
            };
            if sent {
                latencies.push(at.duration_since(sent_at));
            } else {
                failed += 1;
            }
        }
        (latencies, failed)
    };
    let clients = async {
        let results = futures::future::join_all((0..concurrency).map(|_| client())).await;
        finished.store(true, Ordering::Relaxed);
        results
    };
    let ((), results) = tokio::join!(reader, clients);
    let wall = begin.elapsed();
    let commits = commits(&net).await - commits_before;
    let failed: usize = results.iter().map(|(_, f)| f).sum();
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    latencies.sort();
    let sent = latencies.len();
    let percentile = |p: usize| latencies[(sent * p / 100).min(sent - 1)];
    println!("payments: {payments} through 3 hops, {concurrency} at a time");
    println!("sent: {sent}, failed: {failed}");
    println!(
        "wall: {:.2} s, {:.0} payments/s",
        wall.as_secs_f64(),
        sent as f64 / wall.as_secs_f64()
    );
    println!(
        "latency: median {:.1} ms, p99 {:.1} ms",
        percentile(50).as_secs_f64() * 1e3,
        percentile(99).as_secs_f64() * 1e3
    );
    println!(
        "store commits (one fsync each), all four daemons: {commits}, {:.2} per payment",
        commits as f64 / payments as f64
    );
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

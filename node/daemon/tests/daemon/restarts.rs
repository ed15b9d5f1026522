//! A mediator restarted 20 times (SIGTERM and SIGKILL in turn) while payments stream through
//! it (0 → 1 → 2): no payment the payer heard was sent is missing at the payee, no token is
//! made or lost, and no channel is ever closed.

use crate::common::{Daemon, Localnet, amount};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const DEPOSIT: u64 = 1_000_000;
const PAID: u64 = 100;
const RESTARTS: usize = 20;

/// What the payer's stream of payments came to.
#[derive(Debug, Default)]
struct Stream {
    sent: u64,
    failed: u64,
    amount: u64,
    fees: u64,
}

/// Pays `payee` one payment at a time, each to its outcome, until `stop`.
async fn stream(
    payer: &Daemon,
    payee: alloy_primitives::Address,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> Stream {
    let mut totals = Stream::default();
    let mut after = 0;
    while !stop.load(Ordering::Relaxed) {
        let (status, answer) = payer
            .post(
                "/v1/payments",
                json!({"payee": payee, "amount": PAID.to_string()}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let payment = answer["id"].clone();
        let outcome = payer
            .wait_event(&["payment_sent", "payment_failed"], after, |e| {
                e["payment"] == payment
            })
            .await;
        after = payer
            .get("/v1/events?after=0")
            .await
            .as_array()
            .map_or(0, |events| {
                events.last().map_or(0, |e| e["id"].as_u64().unwrap())
            });
        if outcome["type"] == "payment_sent" {
            totals.sent += 1;
            totals.amount += amount(&outcome["amount"]);
            totals.fees += amount(&outcome["fee"]);
        } else {
            totals.failed += 1;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_restarts_lose_no_acknowledged_payment() {
    let mut net = Localnet::start("restarts", 3).await;
    net.open_line(DEPOSIT).await;
    let payee = net.daemons[2].address;
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let (payer, rest) = net.daemons.split_at_mut(1);
    let mediator = &mut rest[0];
    let restarts = async {
        for k in 0..RESTARTS {
            // A few payments between restarts, so each lands in a live stream.
            let mark = done.load(Ordering::Relaxed);
            for _ in 0..3_000 {
                if done.load(Ordering::Relaxed) >= mark + 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let now = done.load(Ordering::Relaxed);
            assert!(
                now >= mark + 2,
                "restart {k}: no payment ended for 60 s:\n{}",
                mediator.log_tail()
            );
            if k % 2 == 0 {
                mediator.kill_hard();
            } else {
                mediator.stop();
            }
            mediator.spawn();
            mediator.wait_ready().await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let (totals, ()) = tokio::join!(stream(&payer[0], payee, &stop, &done), restarts);
    eprintln!("{totals:?}");
    assert!(totals.sent >= 2 * RESTARTS as u64, "{totals:?}");

    for daemon in &net.daemons {
        daemon
            .wait_until("/v1/channels", "every lock resolved", |channels| {
                channels.as_array().expect("a list").iter().all(|c| {
                    c["state"] == "open" && c["our_locked"] == "0" && c["partner_locked"] == "0"
                })
            })
            .await;
        let closes = daemon
            .get("/v1/events?after=0")
            .await
            .as_array()
            .expect("a list")
            .iter()
            .filter(|e| e["event"]["type"] == "channel_closed")
            .count();
        assert_eq!(closes, 0, "node{} saw a close", daemon.index);
    }
    let payer = net.daemons[0].get("/v1/channels").await;
    assert_eq!(
        amount(&payer[0]["our_balance"]),
        DEPOSIT - totals.amount - totals.fees,
        "{payer}"
    );
    let payee = net.daemons[2].get("/v1/channels").await;
    assert_eq!(amount(&payee[0]["our_balance"]), totals.amount, "{payee}");
    let mediator: u64 = net.daemons[1]
        .get("/v1/channels")
        .await
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| amount(&c["our_balance"]))
        .sum();
    assert_eq!(mediator, DEPOSIT + totals.fees);
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

//! A mediator killed with SIGKILL in the middle of a payment (0 → 1 → 2), at three points,
//! one test each, then restarted from its data directory: the payment completes, both sides
//! of every channel agree on it to the token, and the channels carry the next payment.
//!
//! The points are held still by freezing (SIGSTOP) the daemon whose next step would move the
//! payment on, so each kill lands where it is meant to:
//! - before the mediator reads the payer's lock;
//! - holding both locks (the payee frozen, the secret not yet revealed);
//! - after paying the payee, before being paid by the payer (the payer frozen; a payment
//!   without an invoice, whose payee claims without asking the payer).

use crate::common::{Daemon, Localnet, amount, pay};
use serde_json::{Value, json};
use std::time::Duration;

const DEPOSIT: u64 = 10_000;
const PAID: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
enum Point {
    BeforeTheLock,
    HoldingBothLocks,
    PaidDownstream,
}

/// Daemon `of`'s channel with `partner`.
async fn channel(of: &Daemon, partner: &Daemon) -> Value {
    let channels = of.get("/v1/channels").await;
    channels
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["partner"] == json!(partner.address))
        .unwrap_or_else(|| panic!("node{} has no channel with node{}", of.index, partner.index))
        .clone()
}

/// Waits until the mediator shows the payment's lock in both its channels.
async fn mediator_holds_both_locks(net: &Localnet) {
    let (payer, payee) = (net.daemons[0].address, net.daemons[2].address);
    net.daemons[1]
        .wait_until("/v1/channels", "both locks", |channels| {
            let locked = |partner, side: &str| {
                channels
                    .as_array()
                    .expect("a list")
                    .iter()
                    .any(|c| c["partner"] == json!(partner) && amount(&c[side]) >= PAID)
            };
            locked(payer, "partner_locked") && locked(payee, "our_locked")
        })
        .await;
}

async fn crash_the_mediator(name: &str, point: Point) {
    let mut net = Localnet::start(name, 3).await;
    net.open_line(DEPOSIT).await;
    let invoice = net.daemons[2]
        .post_ok("/v1/invoices", json!({"amount": PAID.to_string()}))
        .await;
    let by_invoice = json!({"invoice": invoice["invoice"]});
    let mut frozen = Vec::new();
    let payment = match point {
        Point::BeforeTheLock => {
            net.daemons[1].pause();
            let payment = net.daemons[0].post_ok("/v1/payments", by_invoice).await;
            // The lock goes out; the mediator never reads it.
            net.daemons[0]
                .wait_until("/v1/channels", "the lock sent", |c| {
                    amount(&c[0]["our_locked"]) >= PAID
                })
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            payment
        }
        Point::HoldingBothLocks => {
            net.daemons[2].pause();
            frozen.push(2);
            let payment = net.daemons[0].post_ok("/v1/payments", by_invoice).await;
            mediator_holds_both_locks(&net).await;
            payment
        }
        Point::PaidDownstream => {
            // Without an invoice the payee claims without asking the payer for the secret,
            // so the payer can be frozen while the payee is paid.
            net.daemons[2].pause();
            let spontaneous = json!({"payee": net.daemons[2].address, "amount": PAID.to_string()});
            let payment = net.daemons[0].post_ok("/v1/payments", spontaneous).await;
            mediator_holds_both_locks(&net).await;
            net.daemons[0].pause();
            frozen.push(0);
            net.daemons[2].resume();
            net.daemons[2]
                .wait_event(&["payment_received"], 0, |e| e["payment"] == payment["id"])
                .await;
            payment
        }
    };
    let payment = payment["id"].clone();
    net.daemons[1].kill_hard();
    for i in frozen {
        net.daemons[i].resume();
    }
    net.daemons[1].spawn();
    net.daemons[1].wait_ready().await;

    let outcome = net.daemons[0]
        .wait_event(&["payment_sent", "payment_failed"], 0, |e| {
            e["payment"] == payment
        })
        .await;
    // The mediator is back well inside the locks' time: the payment completes.
    assert_eq!(outcome["type"], "payment_sent", "{point:?}: {outcome}");
    net.daemons[2]
        .wait_event(&["payment_received"], 0, |e| e["payment"] == payment)
        .await;
    let (paid, fee) = (PAID, amount(&outcome["fee"]));
    eprintln!("{point:?}: {outcome}");

    // Every lock resolved, and both sides of each channel agree on exactly what the outcome
    // moves: nothing made, nothing lost.
    for daemon in &net.daemons {
        daemon
            .wait_until("/v1/channels", "every lock resolved", |channels| {
                channels.as_array().expect("a list").iter().all(|c| {
                    c["state"] == "open" && c["our_locked"] == "0" && c["partner_locked"] == "0"
                })
            })
            .await;
    }
    let [payer, mediator, payee] = [&net.daemons[0], &net.daemons[1], &net.daemons[2]];
    let upstream = (
        channel(payer, mediator).await,
        channel(mediator, payer).await,
    );
    let downstream = (
        channel(mediator, payee).await,
        channel(payee, mediator).await,
    );
    for (ours, theirs) in [&upstream, &downstream] {
        assert_eq!(
            ours["our_balance"], theirs["partner_balance"],
            "{ours} {theirs}"
        );
        assert_eq!(
            ours["partner_balance"], theirs["our_balance"],
            "{ours} {theirs}"
        );
    }
    assert_eq!(amount(&upstream.0["our_balance"]), DEPOSIT - paid - fee);
    assert_eq!(amount(&upstream.1["our_balance"]), paid + fee);
    assert_eq!(amount(&downstream.0["our_balance"]), DEPOSIT - paid);
    assert_eq!(amount(&downstream.1["our_balance"]), paid);

    // The channels carry the next payment.
    pay(payer, payee, PAID).await;
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_it_reads_the_lock() {
    crash_the_mediator("crash-before", Point::BeforeTheLock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holding_both_locks() {
    crash_the_mediator("crash-holding", Point::HoldingBothLocks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_paying_downstream() {
    crash_the_mediator("crash-downstream", Point::PaidDownstream).await;
}

//! A daemon restarted from its data directory, gracefully (SIGTERM) and killed (SIGKILL),
//! between payments: every acknowledged payment is still there, the channel stays open and
//! usable, and the restarted node knows the network from its stored gossip, without waiting
//! for the next announcements, and reads the chain only after the block it had reached.

use crate::common::{Daemon, Localnet, amount, pay};
use serde_json::json;

const DEPOSIT: u64 = 10_000;

/// What the payee holds in its one channel once no lock is pending.
async fn received(payee: &Daemon) -> u64 {
    let channels = payee
        .wait_until("/v1/channels", "an open channel, locks settled", |c| {
            c[0]["state"] == "open" && c[0]["our_locked"] == "0" && c[0]["partner_locked"] == "0"
        })
        .await;
    amount(&channels[0]["our_balance"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_keeps_its_payments_and_its_channel() {
    let mut net = Localnet::start("restart", 2).await;
    net.open_line(DEPOSIT).await;
    let announced = |graph: &serde_json::Value| {
        graph["channels"][0]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p.is_object()))
            && graph["channels"][0]["capacity"] == json!(DEPOSIT.to_string())
    };
    pay(&net.daemons[0], &net.daemons[1], 100).await;
    assert_eq!(received(&net.daemons[1]).await, 100);

    // A graceful stop and start: the payment is in the database, the graph in its gossip,
    // and the chain events up to where it stopped (the open and the deposit at least).
    let before = net.daemons[1].get("/v1/info").await["block"]
        .as_u64()
        .unwrap();
    net.daemons[1].stop();
    net.daemons[1].spawn();
    net.daemons[1].wait_ready().await;
    let info = net.daemons[1].get("/v1/info").await;
    let resumed = &info["resumed"];
    assert!(resumed["block"].as_u64().unwrap() >= before, "{info}");
    assert!(resumed["events"].as_u64().unwrap() >= 2, "{info}");
    assert_eq!(received(&net.daemons[1]).await, 100);
    net.daemons[1]
        .wait_until("/v1/graph", "the stored gossip", announced)
        .await;
    pay(&net.daemons[0], &net.daemons[1], 200).await;
    assert_eq!(received(&net.daemons[1]).await, 300);

    // Killed outright, payee and then payer: what each acknowledged survives.
    for victim in [1, 0] {
        net.daemons[victim].kill_hard();
        net.daemons[victim].spawn();
        net.daemons[victim].wait_ready().await;
    }
    assert_eq!(received(&net.daemons[1]).await, 300);
    let payer = net.daemons[0].get("/v1/channels").await;
    assert_eq!(amount(&payer[0]["our_balance"]), DEPOSIT - 300, "{payer}");
    pay(&net.daemons[0], &net.daemons[1], 400).await;
    assert_eq!(received(&net.daemons[1]).await, 700);

    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

//! A reorg deeper than the confirmations (anvil replaces the last blocks, which the daemons
//! had processed with `confirmations = 0`): each daemon sees a processed block leave the
//! chain, starts again in the same process, reads the chain again where the store's
//! checkpoint is no longer valid, and goes on: its channel and balance intact, payments
//! flowing.

use crate::common::{Localnet, amount, pay};
use alloy_provider::Provider;
use serde_json::Value;

const DEPOSIT: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_reorg_makes_the_daemon_read_the_chain_again() {
    let mut net = Localnet::start("reorg", 2).await;
    net.open_line(DEPOSIT).await;
    pay(&net.daemons[0], &net.daemons[1], 100).await;
    // A few empty blocks after the last transaction, processed by both.
    let block = net.daemons[0].get("/v1/info").await["block"]
        .as_u64()
        .unwrap();
    for daemon in &net.daemons {
        daemon
            .wait_until("/v1/info", "three more blocks", |i| {
                i["block"].as_u64() >= Some(block + 3)
            })
            .await;
    }

    net.chain
        .backend()
        .provider()
        .raw_request::<_, Value>("anvil_reorg".into(), (3u64, Vec::<Value>::new()))
        .await
        .expect("anvil_reorg");

    for daemon in &net.daemons {
        daemon.wait_log("starting again").await;
        daemon.wait_ready().await;
    }
    let channels = net.daemons[1]
        .wait_until("/v1/channels", "the channel open again", |c| {
            c[0]["state"] == "open"
        })
        .await;
    assert_eq!(amount(&channels[0]["our_balance"]), 100, "{channels}");
    pay(&net.daemons[0], &net.daemons[1], 200).await;
    let channels = net.daemons[1].get("/v1/channels").await;
    assert_eq!(amount(&channels[0]["our_balance"]), 300, "{channels}");
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

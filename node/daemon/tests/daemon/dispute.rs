//! A node offline while its partner closes the channel with a stale state comes back inside
//! the challenge window, catches up on the logs it missed, submits the partner's newer proof,
//! and is paid in full on-chain.

use crate::common::{Localnet, MINTED, amount, open_request};
use hoplite_htlc::ChannelId;
use serde_json::json;

const DEPOSIT: u64 = 10_000;
const PAID: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_answers_a_stale_close_when_it_returns() {
    // A challenge window of 30 one-second blocks: long enough to be away a while.
    let mut net = Localnet::start_with("dispute", 2, "settle_timeout = 30").await;
    let (victim, cheater) = (0, 1);
    let victim_address = net.daemons[victim].address;
    net.daemons[cheater]
        .post_ok("/v1/channels", open_request(victim_address, DEPOSIT))
        .await;
    net.daemons[cheater]
        .wait_until("/v1/graph", "the channel's announcement", |g| {
            g["channels"][0]["policies"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p.is_object()))
                && g["channels"][0]["capacity"] == json!(DEPOSIT.to_string())
        })
        .await;
    let invoice = net.daemons[victim]
        .post_ok("/v1/invoices", json!({"amount": PAID.to_string()}))
        .await;
    net.daemons[cheater]
        .post_ok("/v1/payments", json!({"invoice": invoice["invoice"]}))
        .await;
    net.daemons[victim]
        .wait_event(&["payment_received"], 0, |e| e["payment"] == invoice["id"])
        .await;
    let channels = net.daemons[victim]
        .wait_until("/v1/channels", "the unlock", |c| {
            amount(&c[0]["our_balance"]) == PAID
        })
        .await;
    let id = ChannelId(channels[0]["id"].as_str().unwrap().parse().expect("an id"));

    // The victim goes offline; the cheater's daemon is stopped and the test closes in its
    // name with no proof of the victim's: the state before it was paid.
    net.daemons[victim].stop();
    net.daemons[cheater].kill_hard();
    let closed = net
        .chain_as(cheater)
        .await
        .close_channel(id, None)
        .await
        .expect("the stale close is accepted on-chain");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Back inside the window: it sees the close in the logs it missed and answers it.
    net.daemons[victim].spawn();
    net.daemons[victim].wait_ready().await;
    let event = net.daemons[victim]
        .wait_event(&["channel_closed"], 0, |e| {
            e["channel"] == json!(id.to_string())
        })
        .await;
    assert_eq!(event["closer"], json!(net.daemons[cheater].address));
    net.daemons[victim]
        .wait_event(&["channel_settled"], 0, |e| {
            e["channel"] == json!(id.to_string())
        })
        .await;
    let log = std::fs::read_to_string(net.daemons[victim].dir.join("node.log")).unwrap();
    assert!(
        log.contains("kind=\"update_non_closing\""),
        "the victim answered the close"
    );
    let victim_tokens = net.tokens(victim_address).await.to::<u64>();
    let cheater_tokens = net.tokens(net.daemons[cheater].address).await.to::<u64>();
    assert_eq!(
        victim_tokens,
        MINTED + PAID,
        "paid in full (close in block {})",
        closed.block
    );
    assert_eq!(cheater_tokens, MINTED - PAID);
    net.daemons[victim].stop();
}

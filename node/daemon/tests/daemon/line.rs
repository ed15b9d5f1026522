//! Four daemons in a line (0 - 1 - 2 - 3) as real processes on loopback over anvil: gossip
//! converges, a payment 0 → 3 succeeds through two mediators, and after cooperative closes
//! every balance on-chain agrees with what the nodes said.

use crate::common::{Localnet, MINTED, amount};
use serde_json::{Value, json};

const DEPOSIT: u64 = 10_000;
const PAID: u64 = 2_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_daemons_in_a_line_converge_pay_and_settle() {
    let mut net = Localnet::start("line", 4).await;
    let addresses: Vec<_> = net.daemons.iter().map(|d| d.address).collect();
    for (i, daemon) in net.daemons.iter().enumerate() {
        let info = daemon.get("/v1/info").await;
        assert_eq!(
            info["address"],
            json!(addresses[i]),
            "the key imported is the one used"
        );
        assert!(
            info["peer_id"]
                .as_str()
                .is_some_and(|p| p.starts_with("16Uiu2")),
            "{info}"
        );
    }

    // Each opens a channel to the next and deposits; gossip converges: every node knows the
    // three channels, announced, with both policies.
    net.open_line(DEPOSIT).await;

    // 3 makes an invoice, 0 pays it through 1 and 2.
    let invoice = net.daemons[3]
        .post_ok("/v1/invoices", json!({"amount": PAID.to_string()}))
        .await;
    let paid = net.daemons[0]
        .post_ok("/v1/payments", json!({"invoice": invoice["invoice"]}))
        .await;
    assert_eq!(paid["id"], invoice["id"]);
    let sent = net.daemons[0]
        .wait_event(&["payment_sent", "payment_failed"], 0, |e| {
            e["payment"] == invoice["id"]
        })
        .await;
    assert_eq!(sent["type"], "payment_sent", "{sent}");
    assert_eq!(amount(&sent["amount"]), PAID);
    assert_eq!(
        sent["route"],
        json!([addresses[1], addresses[2], addresses[3]]),
        "through the line"
    );
    let fee = amount(&sent["fee"]);
    assert!(fee > 0, "two mediators charge: {sent}");
    net.daemons[3]
        .wait_event(&["payment_received"], 0, |e| e["payment"] == invoice["id"])
        .await;

    // Balances agree off-chain once every lock is settled.
    let balances = |channels: &Value| -> Vec<(u64, u64, u64)> {
        channels
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| {
                (
                    amount(&c["our_balance"]),
                    amount(&c["partner_balance"]),
                    amount(&c["our_locked"]) + amount(&c["partner_locked"]),
                )
            })
            .collect()
    };
    let settled = |c: &Value| balances(c).iter().all(|(_, _, locked)| *locked == 0);
    let payer = net.daemons[0]
        .wait_until("/v1/channels", "unlock", settled)
        .await;
    assert_eq!(balances(&payer), [(DEPOSIT - PAID - fee, PAID + fee, 0)]);
    let payee = net.daemons[3]
        .wait_until("/v1/channels", "unlock", settled)
        .await;
    assert_eq!(balances(&payee), [(PAID, DEPOSIT - PAID, 0)]);

    // The openers close cooperatively; every channel settles on-chain.
    let mut closed = Vec::new();
    for i in 0..3 {
        let channels = net.daemons[i].get("/v1/channels").await;
        let channel = channels
            .as_array()
            .expect("a list")
            .iter()
            .find(|c| c["partner"] == json!(addresses[i + 1]))
            .expect("the channel to the next node")
            .clone();
        let id = channel["id"].as_str().expect("an id").to_owned();
        net.daemons[i]
            .post_ok(
                &format!("/v1/channels/{id}/close"),
                json!({"cooperative": true}),
            )
            .await;
        closed.push(id);
    }
    for (i, id) in closed.iter().enumerate() {
        net.daemons[i]
            .wait_event(&["channel_settled"], 0, |e| e["channel"] == json!(id))
            .await;
    }

    // On-chain: the payer paid the amount and the fee, the payee got the amount, the
    // mediators kept the fee between them, and no token was made or lost.
    let mut tokens = Vec::new();
    for address in &addresses {
        tokens.push(net.tokens(*address).await.to::<u64>());
    }
    assert_eq!(tokens[0], MINTED - PAID - fee);
    assert_eq!(tokens[3], MINTED + PAID);
    assert!(tokens[1] >= MINTED && tokens[2] >= MINTED, "{tokens:?}");
    assert_eq!(tokens.iter().sum::<u64>(), 4 * MINTED);
    let held = net.tokens(net.deployment.token_network).await;
    assert_eq!(
        held,
        alloy_primitives::U256::ZERO,
        "the contract holds nothing after settling"
    );

    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

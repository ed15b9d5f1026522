//! The REST API of a real daemon: every endpoint's success, each kind of bad input with its
//! status and code, and Server-Sent Events resumed by `Last-Event-ID` across a reconnect and
//! across a restart of the daemon.

use crate::common::{Daemon, Localnet, amount, pay};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DEPOSIT: u64 = 10_000;

/// A request's status and JSON answer.
async fn call(daemon: &Daemon, request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("node{}: not JSON ({e}): {text:?}", daemon.index));
    (status, body)
}

/// Expects `status` and `code`.
async fn refused(daemon: &Daemon, request: reqwest::RequestBuilder, status: u16, code: &str) {
    let (got, body) = call(daemon, request).await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message for people: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_bad_input_gets_its_status() {
    let mut net = Localnet::start("api", 2).await;
    net.open_line(DEPOSIT).await;
    let (payer, payee) = (&net.daemons[0], &net.daemons[1]);
    let url = |d: &Daemon, path: &str| format!("{}{path}", d.api);
    let http = reqwest::Client::new();

    // Authentication.
    refused(payer, http.get(url(payer, "/v1/info")), 401, "unauthorized").await;
    refused(
        payer,
        http.get(url(payer, "/v1/info")).bearer_auth("0".repeat(64)),
        401,
        "unauthorized",
    )
    .await;
    // The other node's token is not this one's.
    refused(
        payer,
        http.get(url(payer, "/v1/info")).bearer_auth(payee.token()),
        401,
        "unauthorized",
    )
    .await;

    // The dashboard's page is the one path without the token; it holds no data.
    let page = http.get(url(payer, "/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Hoplite node</title>") && !html.contains(&payer.token()));
    refused(payer, http.post(url(payer, "/")), 405, "method_not_allowed").await;
    // The document checked in is the one served.
    let served = payer.get("/v1/openapi.json").await;
    let file: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert_eq!(served, file);

    // Paths, methods, bodies.
    refused(
        payer,
        payer.request(Method::GET, "/v1/nothing"),
        404,
        "not_found",
    )
    .await;
    refused(
        payer,
        payer.request(Method::DELETE, "/v1/info"),
        405,
        "method_not_allowed",
    )
    .await;
    let invoices = || payer.request(Method::POST, "/v1/invoices");
    refused(
        payer,
        invoices()
            .header("content-type", "application/json")
            .body("{\"amount\": "),
        400,
        "malformed",
    )
    .await;
    refused(
        payer,
        invoices().body("{\"amount\": \"5\"}"),
        415,
        "unsupported_media_type",
    )
    .await;
    let huge = json!({"amount": "5", "pad": "x".repeat(100_000)});
    refused(payer, invoices().json(&huge), 413, "too_large").await;
    refused(
        payer,
        invoices().json(&json!({"amount": "-5"})),
        400,
        "malformed",
    )
    .await;
    refused(
        payer,
        invoices().json(&json!({"amount": "5", "tip": 1})),
        400,
        "malformed",
    )
    .await;
    refused(
        payer,
        invoices().json(&json!({"amount": "0"})),
        400,
        "malformed",
    )
    .await;

    // Unknown things.
    refused(
        payer,
        payer.request(Method::GET, "/v1/channels/999"),
        404,
        "unknown_channel",
    )
    .await;
    let deposit = payer
        .request(Method::POST, "/v1/channels/999/deposit")
        .json(&json!({"total": "5"}));
    refused(payer, deposit, 404, "unknown_channel").await;
    refused(
        payer,
        payer.request(Method::GET, "/v1/channels/x"),
        400,
        "malformed",
    )
    .await;
    let undecodable = payer.request(Method::GET, "/v1/channels/%FF");
    refused(payer, undecodable, 400, "malformed").await;
    // Beyond the newest event (a database put back): a reset notice, not a silent wait.
    let beyond = payer.get("/v1/events?after=1000000&wait_ms=60000").await;
    assert_eq!(beyond[0]["event"]["type"], "reset", "{beyond}");
    let nobody = format!("/v1/payments/0x{}", "ab".repeat(32));
    refused(
        payer,
        payer.request(Method::GET, &nobody),
        404,
        "unknown_payment",
    )
    .await;
    refused(
        payer,
        payer.request(Method::GET, "/v1/payments/0x12"),
        400,
        "malformed",
    )
    .await;
    let no_invoice = format!("/v1/invoices/0x{}", "ab".repeat(32));
    refused(
        payer,
        payer.request(Method::GET, &no_invoice),
        404,
        "unknown_invoice",
    )
    .await;
    refused(
        payer,
        payer.request(Method::GET, "/v1/payments?limit=0"),
        400,
        "malformed",
    )
    .await;
    let stranger = "0x00000000000000000000000000000000000000aa";
    let disconnect = payer.request(Method::DELETE, &format!("/v1/peers/{stranger}"));
    refused(payer, disconnect, 404, "unknown_peer").await;
    let dial = |address: &str| {
        payer
            .request(Method::POST, "/v1/peers")
            .json(&json!({"address": address}))
    };
    refused(payer, dial("not an address"), 400, "malformed").await;
    refused(payer, dial("/ip4/127.0.0.1/tcp/1"), 400, "malformed").await;

    // Amounts the node can't pay.
    let too_much = json!({"payee": payee.address, "amount": (DEPOSIT + 1).to_string()});
    let pay_too_much = payer.request(Method::POST, "/v1/payments").json(&too_much);
    refused(payer, pay_too_much, 422, "insufficient_balance").await;
    let huge = json!({"payee": payee.address, "amount": "1".repeat(90)});
    let pay_huge = payer.request(Method::POST, "/v1/payments").json(&huge);
    refused(payer, pay_huge, 400, "malformed").await;

    // Successes: info, peers, channels, invoices, payments, graph, backups.
    let info = payer.get("/v1/info").await;
    assert_eq!(info["address"], json!(payer.address));
    assert_eq!(info["synced"], json!(true));
    let peers = payer.get("/v1/peers").await;
    assert_eq!(peers[0]["address"], json!(payee.address), "{peers}");
    let channels = payer.get("/v1/channels").await;
    let id = channels[0]["id"].as_str().expect("an id").to_owned();
    let one = payer.get(&format!("/v1/channels/{id}")).await;
    assert_eq!(one, channels[0]);
    assert_eq!(amount(&one["our_balance"]), DEPOSIT);
    assert_eq!(one["our_locks"], json!([]));

    let invoice = payee
        .post_ok("/v1/invoices", json!({"amount": "300", "valid_for_s": 600}))
        .await;
    assert_eq!(invoice["status"], "open", "{invoice}");
    let path = format!("/v1/invoices/{}", invoice["id"].as_str().unwrap());
    assert_eq!(payee.get(&path).await, invoice);
    let paid = payer
        .post_ok("/v1/payments", json!({"invoice": invoice["invoice"]}))
        .await;
    assert_eq!(paid["id"], invoice["id"]);
    assert_eq!(paid["status"], "pending");
    let sent = payer
        .wait_until(
            &format!("/v1/payments/{}", paid["id"].as_str().unwrap()),
            "the payment",
            |p| p["status"] != "pending",
        )
        .await;
    assert_eq!(sent["status"], "succeeded", "{sent}");
    assert_eq!(sent["route"], json!([payee.address]));
    assert_eq!(
        (sent["fee"].as_str(), sent["attempts"].as_u64()),
        (Some("0"), Some(1))
    );
    let again = payer
        .request(Method::POST, "/v1/payments")
        .json(&json!({"invoice": invoice["invoice"]}));
    refused(payer, again, 409, "state_conflict").await;
    let paid_invoice = payee
        .wait_until(&path, "the invoice paid", |i| i["status"] == "paid")
        .await;
    assert!(paid_invoice["paid_at"].is_u64(), "{paid_invoice}");
    let received = payee.get("/v1/payments").await;
    assert_eq!(received[0]["direction"], "received", "{received}");
    assert_eq!(received[0]["id"], invoice["id"]);
    assert_eq!(payee.get("/v1/invoices").await[0]["status"], "paid");

    // A key pays once: the same request answers the same payment; another amount is refused.
    let keyed = json!({"payee": payee.address, "amount": "7", "idempotency_key": "order-1"});
    let first = payer.post_ok("/v1/payments", keyed.clone()).await;
    let second = payer.post_ok("/v1/payments", keyed).await;
    assert_eq!(first["id"], second["id"]);
    let other = json!({"payee": payee.address, "amount": "8", "idempotency_key": "order-1"});
    let reused = payer.request(Method::POST, "/v1/payments").json(&other);
    refused(payer, reused, 409, "state_conflict").await;
    payer
        .wait_event(&["payment_sent"], 0, |e| e["payment"] == first["id"])
        .await;
    payee
        .wait_event(&["payment_received"], 0, |e| e["payment"] == first["id"])
        .await;
    let list = payer.get("/v1/payments?limit=10").await;
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|p| &p["id"]).collect();
    assert_eq!(
        ids,
        [&first["id"], &paid["id"]],
        "newest first, the keyed one once"
    );

    // Metrics, behind the token too.
    refused(payer, http.get(url(payer, "/metrics")), 401, "unauthorized").await;
    let response = payer.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let text = response.text().await.unwrap();
    let balance = DEPOSIT - 300 - 7;
    for line in [
        "hoplite_payments_total{direction=\"sent\",outcome=\"succeeded\"} 2".to_string(),
        format!("hoplite_channel_balance_tokens{{channel=\"{id}\",side=\"ours\"}} {balance}.0"),
        "hoplite_peers 1".to_string(),
        "hoplite_pending_locks{side=\"ours\"} 0".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    for name in [
        "hoplite_gossip_verdicts_total{verdict=\"accept\"}",
        "hoplite_store_commit_seconds_count",
        "hoplite_chain_block",
        "libp2p_swarm_connections_established_total",
        "libp2p_identify_",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "no {name} in:\n{text}"
        );
    }
    let received = payee.metrics().await;
    assert!(
        received.contains("hoplite_payments_total{direction=\"received\",outcome=\"succeeded\"} 2"),
        "{received}"
    );

    // A withdrawal: the partner signs, the chain pays it to the payer's account.
    let before = net.tokens(net.daemons[0].address).await;
    let payer = &net.daemons[0];
    let too_much = payer
        .request(Method::POST, &format!("/v1/channels/{id}/withdraw"))
        .json(&json!({"amount": balance.to_string()}));
    let (status, _) = call(payer, too_much).await;
    assert_eq!(status, 200, "all of it may go");
    payer
        .wait_event(&["withdrawn", "withdraw_failed"], 0, |_| true)
        .await;
    let after = net.tokens(net.daemons[0].address).await;
    let (payer, payee) = (&net.daemons[0], &net.daemons[1]);
    assert_eq!(after - before, alloy_primitives::U256::from(balance));
    let channel_now = payer.get(&format!("/v1/channels/{id}")).await;
    assert_eq!(
        (
            amount(&channel_now["our_withdrawn"]),
            amount(&channel_now["our_balance"])
        ),
        (balance, 0),
        "{channel_now}"
    );
    let over = payer
        .request(Method::POST, &format!("/v1/channels/{id}/withdraw"))
        .json(&json!({"amount": "1"}));
    refused(payer, over, 422, "insufficient_balance").await;
    payee
        .wait_until(&format!("/v1/channels/{id}"), "the withdrawal seen", |c| {
            amount(&c["partner_withdrawn"]) == balance
        })
        .await;

    let graph = payer.get("/v1/graph").await;
    assert_eq!(graph["channels"][0]["id"], json!(id), "{graph}");
    let backup = payer.post_ok("/v1/backups", json!({})).await;
    let backups = payer.get("/v1/backups").await;
    assert_eq!(backups[0]["file"], backup["file"], "{backups}");
    let bad_name = payer
        .request(Method::POST, "/v1/backups")
        .json(&json!({"name": "../escape"}));
    refused(payer, bad_name, 400, "malformed").await;

    // Peers: dial by multiaddr, and disconnect.
    let dialled = payer
        .post_ok(
            "/v1/peers",
            json!({"address": format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", payee.p2p_port, payee.get("/v1/info").await["peer_id"].as_str().unwrap())}),
        )
        .await;
    assert!(dialled["dialing"].as_str().unwrap().contains("/p2p/"));
    let (status, _) = call(
        payer,
        payer.request(Method::DELETE, &format!("/v1/peers/{}", payee.address)),
    )
    .await;
    assert_eq!(status, 200);
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

/// Reads SSE from `daemon` after `last` until `want` payments were received; every event's
/// JSON, checked to have consecutive ids from `last + 1`.
async fn read_stream(daemon: &Daemon, last: u64, want: usize) -> Vec<Value> {
    let request = daemon
        .request(Method::GET, "/v1/events/stream")
        .header("Last-Event-ID", last.to_string());
    let mut response = request.send().await.expect("the stream opens");
    assert_eq!(response.status(), 200);
    let content = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content.starts_with("text/event-stream"), "{content}");
    let mut parser = SseLines::default();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received(&events).len() < want {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "node{}: {} of {want} events: {events:?}",
                    daemon.index,
                    events.len()
                )
            })
            .expect("the stream goes on")
            .expect("not ended");
        events.extend(parser.push(&chunk));
    }
    let expected: Vec<u64> = (last + 1..).take(events.len()).collect();
    assert_eq!(ids(&events), expected, "no gap, no repeat: {events:?}");
    events
}

/// The amounts of the payments received among `events`.
fn received(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "payment_received")
        .map(|e| amount(&e["amount"]))
        .collect()
}

/// The `id:` and `data:` of each event, checked to agree.
#[derive(Default)]
struct SseLines {
    buffer: String,
    id: Option<u64>,
}

impl SseLines {
    fn push(&mut self, chunk: &[u8]) -> Vec<Value> {
        self.buffer
            .push_str(std::str::from_utf8(chunk).expect("UTF-8"));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            if let Some(id) = line.strip_prefix("id: ") {
                self.id = Some(id.trim().parse().expect("a numeric id"));
            } else if let Some(data) = line.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data.trim()).expect("JSON data");
                assert_eq!(
                    Some(event["id"].as_u64().unwrap()),
                    self.id,
                    "id: and data agree"
                );
                out.push(event);
            }
        }
        out
    }
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_by_last_event_id_across_a_reconnect_and_a_restart() {
    let mut net = Localnet::start("sse", 2).await;
    net.open_line(DEPOSIT).await;
    let newest = |events: &Value| {
        events
            .as_array()
            .and_then(|e| e.last())
            .map_or(0, |e| e["id"].as_u64().unwrap())
    };
    let start = newest(&net.daemons[1].get("/v1/events?after=0").await);

    // Connected: two payments arrive as they happen.
    let reader = {
        let payee = &net.daemons[1];
        async move { read_stream(payee, start, 2).await }
    };
    let payments = async {
        pay(&net.daemons[0], &net.daemons[1], 10).await;
        pay(&net.daemons[0], &net.daemons[1], 11).await;
    };
    let (seen, ()) = tokio::join!(reader, payments);
    assert_eq!(received(&seen), [10, 11]);

    // Disconnected: two more; the reconnect from the last id seen gets what followed it.
    let last = *ids(&seen).last().unwrap();
    pay(&net.daemons[0], &net.daemons[1], 12).await;
    pay(&net.daemons[0], &net.daemons[1], 13).await;
    let resumed = read_stream(&net.daemons[1], last, 2).await;
    assert_eq!(received(&resumed), [12, 13]);

    // Across a restart: the events stored before it, then new ones, ids going on.
    net.daemons[1].stop();
    net.daemons[1].spawn();
    net.daemons[1].wait_ready().await;
    pay(&net.daemons[0], &net.daemons[1], 14).await;
    let after_restart = read_stream(&net.daemons[1], last, 3).await;
    assert_eq!(received(&after_restart), [12, 13, 14]);
    assert_eq!(
        after_restart[..resumed.len()],
        resumed[..],
        "the same events, the same ids"
    );
    // The long poll tells the same.
    let polled = net.daemons[1]
        .get(&format!("/v1/events?after={last}"))
        .await;
    let polled: Vec<Value> = polled
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(polled[..after_restart.len()], after_restart[..]);
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}

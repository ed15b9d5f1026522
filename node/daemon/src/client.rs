//! The `hoplite` commands that talk to a running node through its REST API: the request each
//! makes, and how its answer is shown (a table for people, the API's JSON with `--json`).
//! Rendering is kept apart from the HTTP calls, and tested on its own.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Where the node's API is and how to authenticate (every client command takes these).
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The node's API.
    #[arg(
        long,
        global = true,
        env = "HOPLITE_API",
        default_value = "http://127.0.0.1:9736"
    )]
    pub api: String,
    /// The file holding the API's bearer token (default: `<data-dir>/api-token`).
    #[arg(long, global = true, env = "HOPLITE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A command for a running node.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// The node's address, PeerId, chain, block and sync state.
    /// Example: `hoplite info`.
    Info,
    /// Peers connected now. Example: `hoplite peers`.
    Peers,
    /// Dials a peer and keeps it connected.
    /// Example: `hoplite connect /ip4/127.0.0.1/tcp/9735/p2p/16Uiu2HAm…`.
    Connect {
        /// Its multiaddr, ending in /p2p/<PeerId>.
        address: String,
    },
    /// Disconnects a peer and stops dialling it.
    /// Example: `hoplite disconnect 0x70997970C51812dc3A010C7d01b50e0d17dc79C8`.
    Disconnect {
        /// Its Ethereum address.
        address: String,
    },
    /// Channels: list, show, open, deposit, withdraw, close.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Invoices: create, list, show.
    #[command(subcommand)]
    Invoice(InvoiceCommand),
    /// Pays an invoice; the outcome comes as an event (`hoplite payments ID` shows it).
    /// Example: `hoplite pay hoplite1…`.
    Pay {
        /// The invoice's text.
        invoice: String,
        /// Wait for the outcome and print it (exit 1 if the payment failed).
        #[arg(long)]
        wait: bool,
    },
    /// Pays a node without an invoice (it must have announced a channel).
    /// Example: `hoplite send 0x7099…79C8 250 --idempotency-key order-17`.
    Send {
        /// The payee's address.
        payee: String,
        /// Tokens to pay.
        amount: String,
        /// A key of yours: sending again with the same key pays once.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the outcome and print it (exit 1 if the payment failed).
        #[arg(long)]
        wait: bool,
    },
    /// Payments sent and received, newest first; or one payment with its route and fee.
    /// Example: `hoplite payments` or `hoplite payments 0x3f…`.
    Payments {
        /// One payment's id.
        id: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Follows the node's events as they happen (Server-Sent Events), from `--after` on.
    /// Example: `hoplite events --after 120`.
    Events {
        /// Start after this event id (default: only new events).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The channels and nodes the node knows of the network. Example: `hoplite graph`.
    Graph,
    /// Backs up the running node's database into `<data-dir>/backups` (SQLite's online
    /// backup); a later start on an older database is refused.
    /// Example: `hoplite backup --name before-upgrade.sqlite`.
    Backup {
        /// The file's name in the backups folder (default: node-<seconds>.sqlite).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `hoplite channel …`.
#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Our channels with both sides' balances. Example: `hoplite channel list`.
    List,
    /// One channel, with its pending locks. Example: `hoplite channel show 3`.
    Show {
        /// The channel id.
        id: String,
    },
    /// Opens a channel with a partner and deposits into it.
    /// Example: `hoplite channel open 0x7099…79C8 100000`.
    Open {
        /// The partner's address.
        partner: String,
        /// Our deposit, tokens.
        deposit: String,
    },
    /// Raises our total deposit. Example: `hoplite channel deposit 3 150000`.
    Deposit {
        /// The channel id.
        id: String,
        /// Our new total deposit.
        total: String,
    },
    /// Takes part of our balance out of an open channel to our account (the partner signs;
    /// the channel carries no payment until the chain shows it).
    /// Example: `hoplite channel withdraw 3 5000`.
    Withdraw {
        /// The channel id.
        id: String,
        /// Tokens to take out.
        amount: String,
    },
    /// Closes a channel: cooperatively (both sign the final balances, settled at once), or
    /// with `--unilateral` (our partner's latest proof on-chain, then the challenge window).
    /// Example: `hoplite channel close 3`.
    Close {
        /// The channel id.
        id: String,
        /// Close without the partner.
        #[arg(long)]
        unilateral: bool,
    },
}

/// `hoplite invoice …`.
#[derive(Subcommand, Debug)]
pub enum InvoiceCommand {
    /// Makes an invoice to hand to a payer. Example: `hoplite invoice create 1000`.
    Create {
        /// Tokens asked for.
        amount: String,
        /// Seconds it may be paid in.
        #[arg(long, default_value_t = 3_600)]
        valid_for: u64,
    },
    /// Invoices we made, newest first. Example: `hoplite invoice list`.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One invoice: open, paid or expired. Example: `hoplite invoice show 0x3f…`.
    Show {
        /// Its payment id.
        id: String,
    },
}

/// An answer the API refused: its status and `{"code", "message"}`.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code}, HTTP {status})")]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The API's code.
    pub code: String,
    /// The API's message.
    pub message: String,
}

/// A client of one node's API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of `connection.api`, with the token read from its file (`data_dir`'s
    /// `api-token` by default).
    pub fn new(connection: &Connection, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let file = match (&connection.token_file, data_dir) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => dir.join(crate::keys::API_TOKEN_FILE),
            (None, None) => default_data_dir()?.join(crate::keys::API_TOKEN_FILE),
        };
        let token = std::fs::read_to_string(&file)
            .with_context(|| {
                format!(
                    "reading the API token from {} (give --token-file or --data-dir)",
                    file.display()
                )
            })?
            .trim()
            .to_owned();
        Ok(Self {
            http: reqwest::Client::new(),
            base: connection.api.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// One request; the answer's JSON, or the API's refusal as [`Refused`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching the node's API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the API's answer")?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("the API answered HTTP {status} with {text:?}"))?;
        if !status.is_success() {
            return Err(Refused {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("unknown").to_owned(),
                message: value["message"].as_str().unwrap_or(&text).to_owned(),
            }
            .into());
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Follows `/v1/events/stream` from `after`, handing each event's JSON to `each` until
    /// it returns false or the node stops.
    pub async fn follow_events(
        &self,
        after: Option<u64>,
        mut each: impl FnMut(Value) -> bool,
    ) -> anyhow::Result<()> {
        let mut request = self
            .http
            .get(format!("{}/v1/events/stream", self.base))
            .bearer_auth(&self.token);
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let mut response = request
            .send()
            .await
            .with_context(|| format!("reaching the node's API at {}", self.base))?;
        if !response.status().is_success() {
            let status = response.status();
            bail!("the API answered HTTP {status}: {}", response.text().await?);
        }
        let mut parser = SseParser::default();
        while let Some(chunk) = response.chunk().await? {
            for data in parser.push(&chunk) {
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if !each(value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Waits for the outcome of payment `id`.
    async fn outcome(&self, id: &str) -> anyhow::Result<Value> {
        loop {
            let payment = self.get(&format!("/v1/payments/{id}")).await?;
            if payment["status"] != "pending" {
                return Ok(payment);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// `~/.hoplite`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: give --data-dir")?;
    Ok(PathBuf::from(home).join(".hoplite"))
}

/// The `data:` of each Server-Sent Event, from chunks as they arrive.
#[derive(Default)]
pub struct SseParser {
    buffer: String,
    data: Vec<String>,
}

impl SseParser {
    /// Takes a chunk; the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut done = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data
                    .push(data.strip_prefix(' ').unwrap_or(data).to_owned());
            }
        }
        done
    }
}

/// Runs `command` against the node; what it prints goes to stdout.
pub async fn run(
    connection: &Connection,
    data_dir: Option<PathBuf>,
    command: ClientCommand,
) -> anyhow::Result<()> {
    use ClientCommand as C;
    let client = Client::new(connection, data_dir)?;
    let json = connection.json;
    let show = |value: &Value, human: fn(&Value) -> String| {
        if json {
            println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
        } else {
            print!("{}", human(value));
        }
    };
    match command {
        C::Info => show(&client.get("/v1/info").await?, render_info),
        C::Peers => show(&client.get("/v1/peers").await?, render_peers),
        C::Connect { address } => show(
            &client
                .post("/v1/peers", json!({"address": address}))
                .await?,
            |v| format!("dialling {}\n", v["dialing"].as_str().unwrap_or("")),
        ),
        C::Disconnect { address } => show(
            &client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/peers/{address}"),
                    None,
                )
                .await?,
            |_| "disconnected\n".into(),
        ),
        C::Channel(ChannelCommand::List) => {
            show(&client.get("/v1/channels").await?, render_channels)
        }
        C::Channel(ChannelCommand::Show { id }) => show(
            &client.get(&format!("/v1/channels/{id}")).await?,
            render_channel,
        ),
        C::Channel(ChannelCommand::Open { partner, deposit }) => show(
            &client
                .post(
                    "/v1/channels",
                    json!({"partner": partner, "deposit": deposit}),
                )
                .await?,
            |_| "opening: the channel shows in `hoplite channel list` once mined\n".into(),
        ),
        C::Channel(ChannelCommand::Deposit { id, total }) => show(
            &client
                .post(
                    &format!("/v1/channels/{id}/deposit"),
                    json!({"total": total}),
                )
                .await?,
            |_| "deposit sent\n".into(),
        ),
        C::Channel(ChannelCommand::Withdraw { id, amount }) => show(
            &client
                .post(
                    &format!("/v1/channels/{id}/withdraw"),
                    json!({"amount": amount}),
                )
                .await?,
            |_| "withdrawing: a `withdrawn` event follows once it is on-chain\n".into(),
        ),
        C::Channel(ChannelCommand::Close { id, unilateral }) => show(
            &client
                .post(
                    &format!("/v1/channels/{id}/close"),
                    json!({"cooperative": !unilateral}),
                )
                .await?,
            |_| "closing\n".into(),
        ),
        C::Invoice(InvoiceCommand::Create { amount, valid_for }) => show(
            &client
                .post(
                    "/v1/invoices",
                    json!({"amount": amount, "valid_for_s": valid_for}),
                )
                .await?,
            |v| format!("{}\n", v["invoice"].as_str().unwrap_or("")),
        ),
        C::Invoice(InvoiceCommand::List { limit }) => show(
            &client.get(&format!("/v1/invoices?limit={limit}")).await?,
            render_invoices,
        ),
        C::Invoice(InvoiceCommand::Show { id }) => {
            show(&client.get(&format!("/v1/invoices/{id}")).await?, |v| {
                render_invoices(&Value::from(vec![v.clone()]))
            })
        }
        C::Pay { invoice, wait } => {
            let started = client
                .post("/v1/payments", json!({"invoice": invoice.trim()}))
                .await?;
            finish_payment(&client, started, wait, &show).await?;
        }
        C::Send {
            payee,
            amount,
            idempotency_key,
            wait,
        } => {
            let mut body = json!({"payee": payee, "amount": amount});
            if let Some(key) = idempotency_key {
                body["idempotency_key"] = Value::from(key);
            }
            let started = client.post("/v1/payments", body).await?;
            finish_payment(&client, started, wait, &show).await?;
        }
        C::Payments { id: Some(id), .. } => show(
            &client.get(&format!("/v1/payments/{id}")).await?,
            render_payment,
        ),
        C::Payments { id: None, limit } => show(
            &client.get(&format!("/v1/payments?limit={limit}")).await?,
            render_payments,
        ),
        C::Events { after, count } => {
            let mut seen = 0;
            client
                .follow_events(after, |event| {
                    if json {
                        println!("{event}");
                    } else {
                        println!("{}", render_event(&event));
                    }
                    // Notices (`gap`, `reset`) are shown, not counted.
                    if event["id"].as_u64().is_some_and(|id| id > 0) {
                        seen += 1;
                    }
                    count.is_none_or(|count| seen < count)
                })
                .await?;
        }
        C::Graph => show(&client.get("/v1/graph").await?, render_graph),
        C::Backup { name } => show(
            &client.post("/v1/backups", json!({"name": name})).await?,
            |v| {
                format!(
                    "{} (generation {})\n",
                    v["file"].as_str().unwrap_or(""),
                    v["generation"]
                )
            },
        ),
    }
    Ok(())
}

/// Shows a payment just started, or waits for its outcome first.
async fn finish_payment(
    client: &Client,
    started: Value,
    wait: bool,
    show: &impl Fn(&Value, fn(&Value) -> String),
) -> anyhow::Result<()> {
    let id = started["id"]
        .as_str()
        .context("the answer names the payment")?;
    if !wait {
        show(&started, |v| {
            format!("payment {} started\n", v["id"].as_str().unwrap_or(""))
        });
        return Ok(());
    }
    let outcome = client.outcome(id).await?;
    show(&outcome, render_payment);
    if outcome["status"] != "succeeded" {
        bail!(
            "payment {id} failed: {}",
            outcome["failure"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// A text table: a header row, then rows, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn rows(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn render_info(v: &Value) -> String {
    let mut out = String::new();
    for key in [
        "alias",
        "address",
        "peer_id",
        "chain_id",
        "token_network",
        "block",
        "synced",
        "channels",
    ] {
        out.push_str(&format!("{key:<14} {}\n", text(&v[key])));
    }
    for address in rows(&v["announced"]) {
        out.push_str(&format!("{:<14} {}\n", "announced", text(address)));
    }
    out
}

fn render_peers(v: &Value) -> String {
    let rows: Vec<Vec<String>> = rows(v)
        .iter()
        .map(|p| vec![text(&p["address"]), text(&p["peer_id"])])
        .collect();
    table(&["ADDRESS", "PEER ID"], &rows)
}

fn render_channels(v: &Value) -> String {
    let rows: Vec<Vec<String>> = rows(v)
        .iter()
        .map(|c| {
            vec![
                text(&c["id"]),
                text(&c["partner"]),
                text(&c["state"]),
                text(&c["our_balance"]),
                text(&c["partner_balance"]),
                format!("{}/{}", text(&c["our_locked"]), text(&c["partner_locked"])),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "PARTNER",
            "STATE",
            "OURS",
            "THEIRS",
            "LOCKED (OURS/THEIRS)",
        ],
        &rows,
    )
}

fn render_channel(v: &Value) -> String {
    let mut out = render_channels(&Value::from(vec![v.clone()]));
    for (side, key) in [("ours", "our_locks"), ("theirs", "partner_locks")] {
        for lock in rows(&v[key]) {
            out.push_str(&format!(
                "lock ({side}) {} expires at block {} hash {}\n",
                text(&lock["amount"]),
                text(&lock["expiration"]),
                text(&lock["secret_hash"])
            ));
        }
    }
    out
}

fn render_invoices(v: &Value) -> String {
    let rows: Vec<Vec<String>> = rows(v)
        .iter()
        .map(|i| {
            vec![
                text(&i["id"]),
                text(&i["amount"]),
                text(&i["status"]),
                text(&i["expires_at"]),
            ]
        })
        .collect();
    table(&["ID", "AMOUNT", "STATUS", "EXPIRES AT"], &rows)
}

fn render_payments(v: &Value) -> String {
    let rows: Vec<Vec<String>> = rows(v)
        .iter()
        .map(|p| {
            vec![
                text(&p["id"]),
                text(&p["direction"]),
                text(&p["status"]),
                text(&p["amount"]),
                text(&p["fee"]),
                text(&p["payee"]),
            ]
        })
        .collect();
    table(
        &["ID", "DIRECTION", "STATUS", "AMOUNT", "FEE", "PAYEE"],
        &rows,
    )
}

fn render_payment(v: &Value) -> String {
    let mut out = String::new();
    for key in [
        "id",
        "direction",
        "status",
        "payee",
        "amount",
        "fee",
        "attempts",
        "failure",
    ] {
        out.push_str(&format!("{key:<10} {}\n", text(&v[key])));
    }
    let route: Vec<String> = rows(&v["route"]).iter().map(text).collect();
    if !route.is_empty() {
        out.push_str(&format!("{:<10} {}\n", "route", route.join(" → ")));
    }
    out
}

fn render_graph(v: &Value) -> String {
    let channels: Vec<Vec<String>> = rows(&v["channels"])
        .iter()
        .map(|c| {
            let parts: Vec<String> = rows(&c["participants"]).iter().map(text).collect();
            vec![
                text(&c["id"]),
                parts.join(" ↔ "),
                text(&c["capacity"]),
                text(&c["announced"]),
            ]
        })
        .collect();
    let nodes: Vec<Vec<String>> = rows(&v["nodes"])
        .iter()
        .map(|n| vec![text(&n["address"]), text(&n["alias"])])
        .collect();
    format!(
        "{}\n{}",
        table(&["ID", "PARTICIPANTS", "CAPACITY", "ANNOUNCED"], &channels),
        table(&["NODE", "ALIAS"], &nodes)
    )
}

/// One line for an event: its id, type and fields.
pub fn render_event(event: &Value) -> String {
    let mut out = format!("#{} {}", text(&event["id"]), text(&event["type"]));
    if let Some(fields) = event.as_object() {
        for (key, value) in fields {
            if !["id", "type", "at"].contains(&key.as_str()) {
                out.push_str(&format!(" {key}={}", text(value)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_its_columns() {
        let out = table(
            &["ID", "STATE"],
            &[
                vec!["1".into(), "open".into()],
                vec!["200".into(), "closed".into()],
            ],
        );
        assert_eq!(out, "ID   STATE\n1    open\n200  closed\n");
    }

    #[test]
    fn sse_events_are_cut_from_chunks_as_they_come() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"id: 7\ndata: {\"a\"").is_empty());
        let done = parser.push(b":1}\n\n: keep-alive\n\nid: 8\r\ndata: {}\r\n\r\n");
        assert_eq!(done, ["{\"a\":1}", "{}"]);
        assert_eq!(
            parser.push(b"event: gap\ndata: {\"oldest\":3}\n\n"),
            ["{\"oldest\":3}"]
        );
    }

    #[test]
    fn an_event_line_names_its_fields() {
        let line = render_event(&json!({"id": 4, "type": "payment_sent", "at": 1, "amount": "5"}));
        assert_eq!(line, "#4 payment_sent amount=5");
    }
}

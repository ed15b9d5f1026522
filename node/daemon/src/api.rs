//! The HTTP API (axum, loopback by default): JSON in and out, amounts as decimal strings.
//! Handlers parse and check the request, then ask the node's task ([`Command`]) and wait
//! for its answer; they never touch the node themselves.
//!
//! - `GET  /v1/info`: address, PeerId, listen addresses, chain id, token network, block.
//! - `GET  /v1/peers`: connected peers.
//! - `GET  /v1/channels`: our channels with both sides' deposits, balances and locks.
//! - `POST /v1/channels` `{"partner", "deposit"}`: open a channel and deposit.
//! - `POST /v1/channels/{id}/deposit` `{"total"}`: raise our total deposit.
//! - `POST /v1/channels/{id}/close` `{"cooperative": bool}`.
//! - `POST /v1/invoices` `{"amount", "valid_for_s"?}`: an invoice to be paid.
//! - `POST /v1/payments` `{"invoice"}`: pay one; or `{"payee", "amount"}`: pay without an
//!   invoice (the payee needs a channel announcement); the outcome comes as an event.
//! - `GET  /v1/graph`: the open channels the node knows, and which are announced.
//! - `GET  /v1/events?after=N&wait_ms=M`: events after id `N`, waiting up to `M` ms for one.
//!
//! Errors are `{"code", "message"}` with 400 (malformed), 404 (unknown channel), 409 (state
//! conflict), 422 (refused amount) or 503 (stale chain, node stopping).

use crate::runtime::{Command, EventLog, parse_amount};
use alloy_primitives::Address;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hoplite_htlc::{Amount, ChannelId};
use hoplite_node::{CommandError, Invoice};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The longest a long poll of events waits.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What a handler asks the node's task.
#[derive(Debug)]
pub enum Request {
    /// The node's identity and chain.
    Info,
    /// Connected peers.
    Peers,
    /// Our channels.
    Channels,
    /// The network as the node sees it.
    Graph,
    /// Open a channel with `partner` and deposit `deposit`.
    OpenChannel {
        /// The partner.
        partner: Address,
        /// Our deposit.
        deposit: Amount,
    },
    /// Raise our deposit in `channel` to `total`.
    Deposit {
        /// The channel.
        channel: ChannelId,
        /// The new total.
        total: Amount,
    },
    /// Close `channel`.
    Close {
        /// The channel.
        channel: ChannelId,
        /// Both sign the final balances (else: unilaterally, with the challenge window).
        cooperative: bool,
    },
    /// Make an invoice.
    CreateInvoice {
        /// What we ask for.
        amount: Amount,
        /// How long it may be paid.
        valid_for: Duration,
    },
    /// Pay an invoice.
    Pay {
        /// It.
        invoice: Invoice,
    },
    /// Pay without an invoice.
    Send {
        /// To whom.
        payee: Address,
        /// How much.
        amount: Amount,
    },
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// The node refused a command.
    pub fn refused(error: &CommandError) -> Self {
        use CommandError as E;
        let (status, code) = match error {
            E::UnknownChannel(_) => (StatusCode::NOT_FOUND, "unknown_channel"),
            E::ChannelClosing(_) | E::LocksPending(_) | E::DuplicatePayment(_) => {
                (StatusCode::CONFLICT, "state_conflict")
            }
            E::PeerBacklogged(_) => (StatusCode::SERVICE_UNAVAILABLE, "peer_backlogged"),
            E::Invoice(_) | E::OwnInvoice | E::UnknownPayee(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invoice_refused")
            }
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        };
        Self::new(status, code, error.to_string())
    }

    /// The chain head is too old to act on.
    pub fn stale_chain(message: String) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "stale_chain", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"code": self.code, "message": self.message}));
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), "malformed", rejection.body_text())
    }
}

#[derive(Clone)]
struct Api {
    commands: mpsc::Sender<Command>,
    events: Arc<Mutex<EventLog>>,
    event_id: watch::Receiver<u64>,
}

impl Api {
    async fn ask(&self, request: Request) -> Result<Json<Value>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let stopping = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the node is stopping",
            )
        };
        self.commands
            .send(Command { request, reply })
            .await
            .map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?.map(Json)
    }
}

/// The API's routes over the node task's command queue.
pub fn router(
    commands: mpsc::Sender<Command>,
    events: Arc<Mutex<EventLog>>,
    event_id: watch::Receiver<u64>,
) -> Router {
    let api = Api {
        commands,
        events,
        event_id,
    };
    Router::new()
        .route(
            "/v1/info",
            get(|State(api): State<Api>| async move { api.ask(Request::Info).await }),
        )
        .route(
            "/v1/peers",
            get(|State(api): State<Api>| async move { api.ask(Request::Peers).await }),
        )
        .route(
            "/v1/graph",
            get(|State(api): State<Api>| async move { api.ask(Request::Graph).await }),
        )
        .route(
            "/v1/channels",
            get(|State(api): State<Api>| async move { api.ask(Request::Channels).await })
                .post(open_channel),
        )
        .route("/v1/channels/{id}/deposit", post(deposit))
        .route("/v1/channels/{id}/close", post(close))
        .route("/v1/invoices", post(create_invoice))
        .route("/v1/payments", post(pay))
        .route("/v1/events", get(list_events))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

fn amount(text: &str, field: &str) -> Result<Amount, ApiError> {
    parse_amount(text).ok_or_else(|| {
        ApiError::malformed(format!(
            "{field} must be a decimal amount of tokens, not {text:?}"
        ))
    })
}

fn channel_id(text: &str) -> Result<ChannelId, ApiError> {
    alloy_primitives::U256::from_str_radix(text, 10)
        .map(ChannelId)
        .map_err(|_| ApiError::malformed(format!("a channel id is a decimal number, not {text:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenChannel {
    partner: Address,
    deposit: String,
}

async fn open_channel(
    State(api): State<Api>,
    body: Result<Json<OpenChannel>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let deposit = amount(&body.deposit, "deposit")?;
    api.ask(Request::OpenChannel {
        partner: body.partner,
        deposit,
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    total: String,
}

async fn deposit(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Json<Deposit>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = Request::Deposit {
        channel: channel_id(&id)?,
        total: amount(&body.total, "total")?,
    };
    api.ask(request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default = "yes")]
    cooperative: bool,
}

fn yes() -> bool {
    true
}

async fn close(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Json<CloseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = Request::Close {
        channel: channel_id(&id)?,
        cooperative: body.cooperative,
    };
    api.ask(request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInvoice {
    amount: String,
    #[serde(default = "an_hour")]
    valid_for_s: u64,
}

fn an_hour() -> u64 {
    3_600
}

async fn create_invoice(
    State(api): State<Api>,
    body: Result<Json<CreateInvoice>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let amount = amount(&body.amount, "amount")?;
    if amount.is_zero() {
        return Err(ApiError::malformed("an invoice is for more than zero"));
    }
    if body.valid_for_s == 0 || body.valid_for_s > 365 * 24 * 3_600 {
        return Err(ApiError::malformed(
            "valid_for_s must be within 1 s and a year",
        ));
    }
    api.ask(Request::CreateInvoice {
        amount,
        valid_for: Duration::from_secs(body.valid_for_s),
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pay {
    invoice: Option<String>,
    payee: Option<Address>,
    amount: Option<String>,
}

async fn pay(
    State(api): State<Api>,
    body: Result<Json<Pay>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = match (body.invoice, body.payee, body.amount) {
        (Some(invoice), None, None) => Request::Pay {
            invoice: invoice
                .parse::<Invoice>()
                .map_err(|e| ApiError::malformed(e.to_string()))?,
        },
        (None, Some(payee), Some(paid)) => Request::Send {
            payee,
            amount: amount(&paid, "amount")?,
        },
        _ => {
            return Err(ApiError::malformed(
                "either {\"invoice\"} or {\"payee\", \"amount\"}",
            ));
        }
    };
    api.ask(request).await
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

async fn list_events(
    State(api): State<Api>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let mut newest = api.event_id.clone();
    let wait = Duration::from_millis(query.wait_ms).min(MAX_WAIT);
    // Wait (bounded) until an event after `after` exists; then answer with what there is.
    let _ = tokio::time::timeout(wait, newest.wait_for(|id| *id > query.after)).await;
    let events = api.events.lock().expect("not poisoned").after(query.after);
    Ok(Json(Value::from(events)))
}

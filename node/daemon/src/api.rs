//! The REST API (axum, loopback by default): JSON in and out, amounts as decimal strings
//! (they are uint256), every request authenticated by the bearer token in
//! `<data_dir>/api-token`. Handlers parse and check the request, then ask the node's task
//! ([`Command`]) and wait for its answer; they never touch the node themselves.
//!
//! | method and path | body | what |
//! |---|---|---|
//! | `GET /v1/info` | | address, PeerId, listen addresses, chain id, token network, block, sync |
//! | `GET /v1/peers` | | connected peers |
//! | `POST /v1/peers` | `{"address"}` | dial a multiaddr ending in `/p2p/<PeerId>` and keep it |
//! | `DELETE /v1/peers/{address}` | | disconnect a peer and stop dialling it |
//! | `GET /v1/channels` | | our channels: deposits, balances both ways, pending locks |
//! | `POST /v1/channels` | `{"partner", "deposit"}` | open a channel and deposit |
//! | `GET /v1/channels/{id}` | | one channel |
//! | `POST /v1/channels/{id}/deposit` | `{"total"}` | raise our total deposit |
//! | `POST /v1/channels/{id}/withdraw` | `{"amount"}` | take part of our balance out |
//! | `POST /v1/channels/{id}/close` | `{"cooperative"}` | close (default cooperative) |
//! | `GET /v1/invoices` | | invoices we made, newest first (`?limit=`) |
//! | `POST /v1/invoices` | `{"amount", "valid_for_s"?}` | make an invoice |
//! | `GET /v1/invoices/{id}` | | one invoice, with `open`, `paid` or `expired` |
//! | `GET /v1/payments` | | payments sent and received, newest first (`?limit=`) |
//! | `POST /v1/payments` | `{"invoice"}` or `{"payee", "amount", "idempotency_key"?}` | pay |
//! | `GET /v1/payments/{id}` | | one payment: status, route, fee, attempts, failure |
//! | `GET /v1/graph` | | the channels and nodes the node knows |
//! | `GET /v1/events` | | events after `?after=N`, waiting up to `?wait_ms=M` for one |
//! | `GET /v1/events/stream` | | Server-Sent Events from `Last-Event-ID` (or `?after=`) on |
//! | `GET /v1/backups` | | backups in `<data_dir>/backups` |
//! | `POST /v1/backups` | `{"name"?}` | an online backup into `<data_dir>/backups` |
//! | `GET /metrics` | | Prometheus metrics (OpenMetrics text) |
//! | `GET /` | | the dashboard (a static page, the one path without the token) |
//!
//! Errors are `{"code", "message"}`: 400 malformed, 401 no or bad token, 404 unknown path,
//! channel, payment or invoice, 405 wrong method, 409 state conflict (a closing channel, a
//! duplicate payment), 413 body over 64 KiB, 415 not JSON, 422 refused (an amount over the
//! balance, a bad invoice), 503 stale chain or node stopping. Bad input never answers 500.

use crate::events::EventLog;
use crate::history::InvoiceEntry;
use crate::history::Payment;
use crate::metrics::Metrics;
use crate::runtime::{Command, parse_amount, to_value};
use crate::store;
use crate::views::{self, ErrorBody};
use alloy_primitives::{Address, B256};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hoplite_htlc::{Amount, ChannelId, Violation};
use hoplite_node::{CommandError, Invoice, PaymentId};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The longest a long poll of events waits.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// The most items a list answers with.
const MAX_LIST: usize = 10_000;
/// The longest idempotency key.
const MAX_KEY_LEN: usize = 64;

/// What a handler asks the node's task.
#[derive(Debug)]
pub enum Request {
    /// The node's identity and chain.
    Info,
    /// Connected peers.
    Peers,
    /// Dial a peer and keep it connected.
    Connect(libp2p::Multiaddr),
    /// Disconnect a peer and stop dialling it.
    Disconnect(Address),
    /// Our channels.
    Channels,
    /// One channel.
    Channel(ChannelId),
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
    /// Withdraw `amount` of our balance in `channel`.
    Withdraw {
        /// The channel.
        channel: ChannelId,
        /// How much.
        amount: Amount,
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
    /// Invoices we made, newest first.
    Invoices {
        /// At most this many.
        limit: usize,
    },
    /// One invoice of ours.
    Invoice(PaymentId),
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
        /// The client's key: a second request with it answers with the first payment.
        idempotency_key: Option<String>,
    },
    /// Payments, newest first.
    Payments {
        /// At most this many.
        limit: usize,
    },
    /// One payment.
    Payment(PaymentId),
    /// Bring the metrics read off the node's state up to date.
    Metrics,
}

/// An error as the API answers it: a status, a stable code and a message for people.
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

    /// The request does not say what it should (400).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// No such thing (404); `code` names what.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The request can't be done in the state things are in (409).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "state_conflict", message)
    }

    /// More than we can pay (422).
    pub fn insufficient_balance(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_balance",
            message,
        )
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
            E::Channel(hoplite_htlc::SendError::Rule(Violation::InsufficientBalance {
                ..
            })) => (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_balance"),
            E::Invoice(_) | E::OwnInvoice | E::UnknownPayee(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invoice_refused")
            }
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        };
        Self::new(status, code, error.to_string())
    }

    /// Not now (503); `code` says why.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// The chain head is too old to act on.
    pub fn stale_chain(message: String) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "stale_chain", message)
    }

    fn stopping() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the node is stopping",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            code: self.code.into(),
            message: self.message,
        });
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("a request body is at most {MAX_BODY} bytes"),
                )
            }
            other => Self::malformed(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::malformed(rejection.body_text())
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    commands: mpsc::Sender<Command>,
    events: EventLog,
    metrics: Arc<Metrics>,
    token: Arc<str>,
    data_dir: PathBuf,
    /// One backup at a time (they share the marker and name their files by the second).
    backups: Arc<tokio::sync::Mutex<()>>,
    /// Backups made by this run, to name them apart.
    backups_made: Arc<std::sync::atomic::AtomicU64>,
}

impl Api {
    /// The API of a node: its task's command queue, its event log, its metrics, its bearer
    /// token and its data directory (for backups).
    pub fn new(
        commands: mpsc::Sender<Command>,
        events: EventLog,
        metrics: Arc<Metrics>,
        token: String,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            commands,
            events,
            metrics,
            token: token.into(),
            data_dir,
            backups: Arc::default(),
            backups_made: Arc::default(),
        }
    }

    async fn ask(&self, request: Request) -> Result<Json<Value>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command { request, reply })
            .await
            .map_err(|_| ApiError::stopping())?;
        answer.await.map_err(|_| ApiError::stopping())?.map(Json)
    }
}

/// The API's routes, every one behind the bearer token.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/peers", get(peers).post(connect))
        .route("/v1/peers/{address}", axum::routing::delete(disconnect))
        .route("/v1/graph", get(graph))
        .route("/v1/channels", get(channels).post(open_channel))
        .route("/v1/channels/{id}", get(channel))
        .route("/v1/channels/{id}/deposit", post(deposit))
        .route("/v1/channels/{id}/withdraw", post(withdraw))
        .route("/v1/channels/{id}/close", post(close))
        .route("/v1/invoices", get(invoices).post(create_invoice))
        .route("/v1/invoices/{id}", get(invoice))
        .route("/v1/payments", get(payments).post(pay))
        .route("/v1/payments/{id}", get(payment))
        .route("/v1/events", get(poll_events))
        .route("/v1/events/stream", get(stream_events))
        .route("/v1/backups", get(list_backups).post(backup))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .fallback(|| async { ApiError::not_found("not_found", "no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .with_state(api)
}

/// The dashboard: one static page, embedded, that calls the API with the token.
async fn dashboard() -> Response {
    let policy = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                  style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::response::Html(include_str!("dashboard.html")),
    )
        .into_response()
}

/// Refuses a request without `Authorization: Bearer <token>` (401), but for the dashboard's
/// page: it holds no data, and asks for the token.
async fn authenticate(State(api): State<Api>, request: HttpRequest, next: Next) -> Response {
    if request.uri().path() == "/" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same(token.trim().as_bytes(), api.token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <the token in the data directory's api-token>",
        )
        .into_response(),
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A path's parameter, or why it is not one (e.g. an escape that is not UTF-8).
fn segment(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(text)| text)
        .map_err(|e| ApiError::malformed(e.body_text()))
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

fn payment_id(text: &str) -> Result<PaymentId, ApiError> {
    text.parse::<B256>()
        .map(PaymentId)
        .map_err(|_| ApiError::malformed(format!("a payment id is 32 bytes in hex, not {text:?}")))
}

#[utoipa::path(
    get,
    path = "/v1/info",
    tag = "node",
    responses(
        (status = 200, description = "The node", body = views::Info),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn info(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Info).await
}

#[utoipa::path(
    get,
    path = "/v1/peers",
    tag = "peers",
    responses(
        (status = 200, description = "Connected peers", body = Vec<views::Peer>),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn peers(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Peers).await
}

#[utoipa::path(
    get,
    path = "/v1/graph",
    tag = "network",
    responses(
        (status = 200, description = "The channels and nodes the node knows", body = views::Graph),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn graph(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Graph).await
}

#[utoipa::path(
    get,
    path = "/v1/channels",
    tag = "channels",
    responses(
        (status = 200, description = "Our channels", body = Vec<views::Channel>),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn channels(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Channels).await
}

/// A peer to dial.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Connect {
    address: String,
}

#[utoipa::path(
    post,
    path = "/v1/peers",
    tag = "peers",
    request_body = Connect,
    responses(
        (status = 503, description = "The dial list is full (`dial_list_full`)", body = ErrorBody),
        (status = 200, description = "Dialling", body = views::Dialing),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn connect(
    State(api): State<Api>,
    body: Result<Json<Connect>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let address: libp2p::Multiaddr = body
        .address
        .parse()
        .map_err(|e| ApiError::malformed(format!("{:?} is not a multiaddr: {e}", body.address)))?;
    if !address
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
    {
        return Err(ApiError::malformed(
            "the address must end in /p2p/<PeerId>: the peer is known by its key",
        ));
    }
    api.ask(Request::Connect(address)).await
}

#[utoipa::path(
    delete,
    path = "/v1/peers/{address}",
    tag = "peers",
    params(("address" = String, Path, description = "The peer's Ethereum address")),
    responses(
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 200, description = "Disconnected", body = views::Accepted),
        (status = 404, description = "Neither connected nor dialled", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn disconnect(
    State(api): State<Api>,
    address: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let address = segment(address)?;
    let address: Address = address
        .parse()
        .map_err(|_| ApiError::malformed(format!("{address:?} is not an address")))?;
    api.ask(Request::Disconnect(address)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenChannel {
    #[schema(value_type = String)]
    partner: Address,
    deposit: String,
}

#[utoipa::path(
    post,
    path = "/v1/channels",
    tag = "channels",
    request_body = OpenChannel,
    responses(
        (status = 200, description = "Opening: the channel shows once mined", body = views::Accepted),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 422, description = "Refused (an amount over the balance, a bad invoice)", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
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

#[utoipa::path(
    get,
    path = "/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, description = "The channel id (decimal)")),
    responses(
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 200, description = "The channel", body = views::Channel),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn channel(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Channel(channel_id(&segment(id)?)?)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Deposit {
    total: String,
}

#[utoipa::path(
    post,
    path = "/v1/channels/{id}/deposit",
    tag = "channels",
    request_body = Deposit,
    params(("id" = String, Path, description = "The channel id (decimal)")),
    responses(
        (status = 200, description = "Sent", body = views::Accepted),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "State conflict", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn deposit(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Deposit>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = Request::Deposit {
        channel: channel_id(&segment(id)?)?,
        total: amount(&body.total, "total")?,
    };
    api.ask(request).await
}

/// What to withdraw.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    /// Tokens of our balance to take out.
    amount: String,
}

#[utoipa::path(
    post,
    path = "/v1/channels/{id}/withdraw",
    tag = "channels",
    request_body = WithdrawBody,
    params(("id" = String, Path, description = "The channel id (decimal)")),
    responses(
        (status = 200, description = "Asked: the partner signs, then it is sent on-chain; a `withdrawn` or `withdraw_failed` event follows", body = views::Accepted),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "Closing, a withdrawal under way, or a lock pending", body = ErrorBody),
        (status = 422, description = "More than our balance", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn withdraw(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<WithdrawBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = Request::Withdraw {
        channel: channel_id(&segment(id)?)?,
        amount: amount(&body.amount, "amount")?,
    };
    api.ask(request).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default = "yes")]
    cooperative: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(
    post,
    path = "/v1/channels/{id}/close",
    tag = "channels",
    request_body = CloseBody,
    params(("id" = String, Path, description = "The channel id (decimal)")),
    responses(
        (status = 200, description = "Closing", body = views::Accepted),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "State conflict", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn close(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<CloseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = Request::Close {
        channel: channel_id(&segment(id)?)?,
        cooperative: body.cooperative,
    };
    api.ask(request).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateInvoice {
    amount: String,
    #[serde(default = "an_hour")]
    valid_for_s: u64,
}

fn an_hour() -> u64 {
    3_600
}

#[utoipa::path(
    post,
    path = "/v1/invoices",
    tag = "invoices",
    request_body = CreateInvoice,
    responses(
        (status = 200, description = "The invoice", body = views::InvoiceView),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default = "a_hundred")]
    limit: usize,
}

fn a_hundred() -> usize {
    100
}

impl ListQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        if self.limit == 0 || self.limit > MAX_LIST {
            return Err(ApiError::malformed(format!(
                "limit must be within 1 and {MAX_LIST}"
            )));
        }
        Ok(self.limit)
    }
}

#[utoipa::path(
    get,
    path = "/v1/invoices",
    tag = "invoices",
    params(ListQuery),
    responses(
        (status = 200, description = "Our invoices, newest first", body = Vec<views::InvoiceView>),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn invoices(
    State(api): State<Api>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = query?.limit()?;
    api.ask(Request::Invoices { limit }).await
}

#[utoipa::path(
    get,
    path = "/v1/invoices/{id}",
    tag = "invoices",
    params(("id" = String, Path, description = "The payment id (0x hex)")),
    responses(
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 200, description = "The invoice", body = views::InvoiceView),
        (status = 404, description = "No such invoice", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn invoice(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Invoice(payment_id(&segment(id)?)?)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Pay {
    invoice: Option<String>,
    #[schema(value_type = Option<String>)]
    payee: Option<Address>,
    amount: Option<String>,
    idempotency_key: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = "payments",
    request_body = Pay,
    responses(
        (status = 200, description = "The payment, pending (or the earlier one of the same idempotency key)", body = Payment),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 409, description = "State conflict", body = ErrorBody),
        (status = 422, description = "Refused (an amount over the balance, a bad invoice)", body = ErrorBody),
        (status = 503, description = "Stale chain, or the node is stopping", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn pay(
    State(api): State<Api>,
    body: Result<Json<Pay>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let request = match (body.invoice, body.payee, body.amount, body.idempotency_key) {
        (Some(invoice), None, None, None) => Request::Pay {
            invoice: invoice
                .trim()
                .parse::<Invoice>()
                .map_err(|e| ApiError::malformed(e.to_string()))?,
        },
        (None, Some(payee), Some(paid), key) => {
            if key
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
            {
                return Err(ApiError::malformed(format!(
                    "idempotency_key is 1 to {MAX_KEY_LEN} bytes"
                )));
            }
            Request::Send {
                payee,
                amount: amount(&paid, "amount")?,
                idempotency_key: key,
            }
        }
        _ => {
            return Err(ApiError::malformed(
                "either {\"invoice\"} or {\"payee\", \"amount\", \"idempotency_key\"?}",
            ));
        }
    };
    api.ask(request).await
}

#[utoipa::path(
    get,
    path = "/v1/payments",
    tag = "payments",
    params(ListQuery),
    responses(
        (status = 200, description = "Payments sent and received, newest first", body = Vec<Payment>),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn payments(
    State(api): State<Api>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = query?.limit()?;
    api.ask(Request::Payments { limit }).await
}

#[utoipa::path(
    get,
    path = "/v1/payments/{id}",
    tag = "payments",
    params(("id" = String, Path, description = "The payment id (0x hex)")),
    responses(
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 200, description = "The payment", body = Payment),
        (status = 404, description = "No such payment", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn payment(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    api.ask(Request::Payment(payment_id(&segment(id)?)?)).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events after `after`, oldest first", body = Vec<views::EventEntry>),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn poll_events(
    State(api): State<Api>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let wait = Duration::from_millis(query.wait_ms).min(MAX_WAIT);
    Ok(Json(api.events.poll(query.after, wait).await))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    after: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "events",
    params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this id")),
    responses(
        (status = 200, description = "Server-Sent Events: `id:` the event id, `data:` its JSON (as in the long poll's `event`); resumed after the `Last-Event-ID` header", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn stream_events(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let last = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::malformed("Last-Event-ID is an event id"))?,
        ),
        None => None,
    };
    // A reconnecting client's Last-Event-ID wins over the URL it was first given.
    let after = last.or(query.after).unwrap_or_else(|| api.events.newest());
    Ok(Sse::new(api.events.stream(after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    name: Option<String>,
}

/// The folder backups made through the API go to.
fn backups_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("backups")
}

#[utoipa::path(
    post,
    path = "/v1/backups",
    tag = "backups",
    request_body = BackupBody,
    responses(
        (status = 500, description = "The copy failed (disk, database)", body = ErrorBody),
        (status = 200, description = "The backup made", body = views::Backup),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 409, description = "State conflict", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn backup(
    State(api): State<Api>,
    body: Result<Json<BackupBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    // Held by the copy itself: a client that hangs up does not let a second one start.
    let one_at_a_time = api.backups.clone().lock_owned().await;
    let name = match body.name {
        Some(name) => {
            let fine = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !fine {
                return Err(ApiError::malformed(
                    "a backup name is 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'",
                ));
            }
            name
        }
        // Unique: backups run one at a time, and the generation grows with each commit.
        None => format!(
            "node-{}-{}.sqlite",
            crate::runtime::now().as_secs(),
            api.backups_made
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    let dir = backups_dir(&api.data_dir);
    let file = dir.join(&name);
    let database = api.data_dir.join(crate::DATABASE);
    let made = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = one_at_a_time;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(store::BackupError::Io)?;
        store::backup(&database, &file).map(|generation| (file, generation))
    })
    .await
    .map_err(|_| ApiError::stopping())?;
    match made {
        Ok((file, generation)) => Ok(Json(to_value(&views::Backup {
            file: file.display().to_string(),
            generation,
        }))),
        Err(store::BackupError::Exists(file)) => Err(ApiError::conflict(format!(
            "{} exists: choose another name",
            file.display()
        ))),
        Err(error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "backup_failed",
            error.to_string(),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/v1/backups",
    tag = "backups",
    responses(
        (status = 200, description = "The backups in the data directory", body = Vec<views::BackupFile>),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn list_backups(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let dir = backups_dir(&api.data_dir);
    let mut list = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if !meta.is_file() || name.ends_with(".partial") {
                continue;
            }
            list.push(views::BackupFile {
                name,
                file: entry.path().display().to_string(),
                bytes: meta.len(),
            });
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(to_value(&list)))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    responses(
        (status = 200, description = "Prometheus metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn metrics(State(api): State<Api>) -> Result<Response, ApiError> {
    let _up_to_date = api.ask(Request::Metrics).await?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], api.metrics.encode()).into_response())
}

/// The OpenAPI document of the API, generated from the handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hoplite node API",
        description = "A Hoplite node's REST API: JSON, amounts as decimal strings, every request \
                       with `Authorization: Bearer <data_dir/api-token>`."
    ),
    paths(
        info, peers, connect, disconnect, channels, open_channel, channel, deposit, withdraw, close,
        invoices, create_invoice, invoice, payments, pay, payment, graph, poll_events,
        stream_events, list_backups, backup, metrics, openapi
    ),
    modifiers(&BearerToken),
    security(("token" = []))
)]
pub struct ApiDoc;

/// Declares the bearer token.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "node",
    responses(
        (status = 200, description = "This document", body = Object),
        (status = 401, description = "No or a wrong token", body = ErrorBody)
    )
)]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A payment as the API answers it.
pub fn payment_json(payment: &Payment) -> Value {
    serde_json::to_value(payment).expect("a payment serializes")
}

/// An invoice as the API answers it, with its status at `now` (seconds).
pub fn invoice_json(invoice: &InvoiceEntry, now: u64) -> Value {
    let view = crate::views::InvoiceView {
        entry: invoice.clone(),
        status: invoice.status(now),
    };
    serde_json::to_value(view).expect("an invoice serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document checked in as `node/daemon/openapi.json` is the one the handlers make
    /// (`HOPLITE_WRITE_OPENAPI=1 cargo test -p hoplite-daemon openapi` writes it anew).
    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        let document = ApiDoc::openapi();
        let generated = document.to_pretty_json().expect("JSON") + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        if std::env::var_os("HOPLITE_WRITE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("written");
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "node/daemon/openapi.json is stale: HOPLITE_WRITE_OPENAPI=1 cargo test -p \
             hoplite-daemon openapi"
        );
        let paths: Vec<&str> = document.paths.paths.keys().map(String::as_str).collect();
        assert_eq!(paths.len(), 18, "{paths:?}");
        for schema in [
            "Info",
            "Channel",
            "Payment",
            "InvoiceView",
            "ErrorBody",
            "Graph",
        ] {
            let components = document.components.as_ref().expect("components");
            assert!(components.schemas.contains_key(schema), "no {schema}");
        }
    }
}

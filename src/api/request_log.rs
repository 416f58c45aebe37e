//! Records every `/v1` request and its response as a log entry, durable before the response leaves.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::Method;
use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, ResponseError, web};
use futures_util::Stream;
use serde_json::{Map, Value};

use crate::domain::channel::Channel;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::log::{LogRecord, RelatedKind, RelatedRef};
use crate::domain::params::Params;
use crate::domain::redact::{self, MAX_STORED_BODY, REDACTED};
use crate::domain::time::now_ms;
use crate::error::ApiError;
use crate::services::auth::{Credential, Principal};
use crate::services::logs::LogEntries;
use crate::state::AppState;

pub const LOG_ID_HEADER: &str = "logbook-log-id";
pub const CHANNEL_HEADER: &str = "logbook-channel";
pub const CUSTOMER_HEADER: &str = "logbook-customer-id";

/// Per-request state: the log id (known before the handler runs, so events can cite it) and the
/// resources the handler says it touched.
pub struct LogContext {
    pub id: String,
    related: Vec<RelatedRef>,
    /// Stored instead of the request body when the handler says the body is kept elsewhere.
    body_summary: Option<String>,
}

/// Stores `summary` instead of the request body: for bodies that are stored in full elsewhere (the
/// entries of `POST /v1/logs` become logs of their own), so they are not kept twice.
pub fn summarize_request_body(req: &HttpRequest, summary: String) {
    if let Some(ctx) = req.extensions_mut().get_mut::<LogContext>() {
        ctx.body_summary = Some(summary);
    }
}

/// Marks a request whose refusal is not logged: a rate limit's 429, counted in `/metrics`
/// instead, so that a flood past the limit does not become as many writes.
pub struct NotLogged;

/// Names a resource the current request created or acted on; it shows in the log's `related`.
pub fn relate(req: &HttpRequest, kind: RelatedKind, id: &str) {
    if let Some(ctx) = req.extensions_mut().get_mut::<LogContext>()
        && !ctx.related.iter().any(|r| r.id == id) {
            ctx.related.push(RelatedRef { kind, id: id.to_owned() });
        }
}

pub async fn record_requests(mut req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else { return next.call(req).await };
    let path = req.path();
    if !state.settings.request_logging || !(path == "/v1" || path.starts_with("/v1/")) {
        return next.call(req).await;
    }
    let started = Instant::now();
    let occurred_at_ms = now_ms();
    let id = new_id(IdKind::Log);
    req.extensions_mut().insert(LogContext { id: id.clone(), related: Vec::new(), body_summary: None });

    let is_json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("json"));
    // A JSON body is captured whole (it is bounded by the body limit) so it can be redacted before it
    // is cut; anything else only as far as it is ever stored.
    let capture_limit = if is_json { state.settings.max_body_bytes } else { MAX_STORED_BODY };
    let capture = Rc::new(RefCell::new(Capture { bytes: BytesMut::new(), seen: 0, limit: capture_limit }));
    let inner = req.take_payload();
    req.set_payload(Payload::from(Box::pin(CapturingPayload { inner, capture: capture.clone() })
        as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>));

    let header_error = validate_headers(req.headers()).err();
    let mut query = query_json(req.query_string());
    let mut request_headers = headers_json(req.headers());
    redact::scrub_json(&mut query);
    redact::scrub_json(&mut request_headers);
    redact::replace_nul(&mut query);
    let response = match header_error {
        Some(err) => {
            let http = err.error_response();
            req.into_response(http)
        }
        None => next.call(req).await?,
    };

    let (http_req, response) = response.into_parts();
    // A 503 means the database is unreachable (see `db::unavailable`): its log could not be
    // written either, and trying would keep the client waiting for another connection timeout.
    if http_req.extensions().contains::<NotLogged>() || response.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        return Ok(ServiceResponse::new(http_req, response));
    }
    let (head, body) = response.into_parts();
    // A successful read answers with stored data. Copying it would multiply storage with every
    // view, and keep data (an erased customer's, say) in logs other than its own.
    let (body, response_body, response_truncated) = if http_req.method() == Method::GET && head.status().is_success() {
        let summary = match body.size() {
            BodySize::Sized(n) => format!("[a read's answer of {n} bytes, not copied]"),
            _ => "[a read's streamed answer, not copied]".to_owned(),
        };
        (body, Value::String(summary), false)
    } else {
        read_response(body, state.settings.max_body_bytes, &state).await
    };
    let mut response = head.set_body(body);

    let summary = http_req.extensions_mut().get_mut::<LogContext>().and_then(|c| c.body_summary.take());
    let (request_body, request_truncated) = match summary {
        Some(summary) => (Value::String(summary), false),
        None => {
            let request = capture.borrow();
            redact::stored_body(&request.bytes, request.seen == request.bytes.len(), &state.settings.redact_keys)
        }
    };
    let record = build_record(
        &http_req,
        id.clone(),
        occurred_at_ms,
        response.status().as_u16(),
        started.elapsed().as_millis() as i64,
        query,
        request_headers,
        (request_body, request_truncated),
        (response_body, response_truncated),
    );
    // The answer names its log only once the log is committed: a log id is a promise that it
    // can be read.
    match state.log_writer.submit(LogEntries::request(record)).await {
        Ok(_) => {
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(HeaderName::from_static(LOG_ID_HEADER), value);
            }
        }
        Err(err) => tracing::error!(error = %err, log_id = %id, "request log could not be written"),
    }
    Ok(ServiceResponse::new(http_req, response))
}

/// `Logbook-Channel` and `Logbook-Customer-Id` must be readable; a bad one refuses the request.
fn validate_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(value) = headers.get(CHANNEL_HEADER) {
        let text = value.to_str().unwrap_or_default().to_owned();
        Channel::try_from(text).map_err(|e| ApiError::malformed(format!("Header Logbook-Channel {e}.")))?;
    }
    if let Some(value) = headers.get(CUSTOMER_HEADER) {
        let ok = value.to_str().is_ok_and(|v| (1..=255).contains(&v.len()));
        if !ok {
            return Err(ApiError::malformed("Header Logbook-Customer-Id must be 1 to 255 printable characters."));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_record(
    req: &HttpRequest,
    id: String,
    occurred_at_ms: i64,
    status: u16,
    duration_ms: i64,
    query: Value,
    request_headers: Value,
    request: (Value, bool),
    response: (Value, bool),
) -> LogRecord {
    let principal = req.extensions().get::<Principal>().cloned();
    let related = req.extensions_mut().get_mut::<LogContext>().map(|c| std::mem::take(&mut c.related)).unwrap_or_default();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (mut project_id, mut channel) = (None, Channel::ANONYMOUS.to_owned());
    let (mut user_id, mut server_key_id, mut client_key_id) = (None, None, None);
    match &principal {
        Some(Principal::Admin) => channel = Channel::ADMIN.to_owned(),
        Some(Principal::Project(access)) => {
            project_id = Some(access.project.id.clone());
            channel = access.credential.channel().to_owned();
            match &access.credential {
                Credential::ServerKey(key) => {
                    server_key_id = Some(key.clone());
                    if let Some(named) = header(CHANNEL_HEADER) {
                        channel = named;
                    }
                }
                Credential::ClientKey(key) => client_key_id = Some(key.clone()),
                Credential::User(user) => user_id = Some(user.clone()),
            }
        }
        None => {}
    }
    let method = req.method().as_str().to_owned();
    let endpoint = format!("{method} {}", req.match_pattern().unwrap_or_else(|| "(unmatched)".to_owned()));
    LogRecord {
        id,
        project_id,
        occurred_at_ms,
        channel,
        endpoint,
        method,
        path: req.path().to_owned(),
        http_status: i32::from(status),
        duration_ms,
        query,
        request_headers,
        request_body: request.0,
        request_body_truncated: request.1,
        response_body: response.0,
        response_body_truncated: response.1,
        user_id,
        customer_id: header(CUSTOMER_HEADER),
        server_key_id,
        client_key_id,
        related,
    }
}

/// Buffers a sized response to store it; a streamed one (a download) is passed through untouched
/// and only noted, since holding it back would defeat streaming.
async fn read_response(body: BoxBody, limit: usize, state: &AppState) -> (BoxBody, Value, bool) {
    match body.size() {
        BodySize::None | BodySize::Sized(0) => (body, Value::Null, false),
        BodySize::Sized(n) if n as usize <= limit => match actix_web::body::to_bytes(body).await {
            Ok(bytes) => {
                let (stored, truncated) = redact::stored_body(&bytes, true, &state.settings.redact_keys);
                (BoxBody::new(bytes), stored, truncated)
            }
            Err(_) => (BoxBody::new(Bytes::new()), Value::Null, true),
        },
        BodySize::Sized(n) => (body, Value::String(format!("[{n} bytes not stored]")), true),
        BodySize::Stream => (body, Value::String("[streamed body not stored]".into()), true),
    }
}

fn query_json(query: &str) -> Value {
    let mut map = Map::new();
    for (k, v) in Params::parse(query).pairs() {
        match map.get_mut(k) {
            Some(Value::Array(values)) => values.push(Value::String(v.clone())),
            Some(existing) => *existing = Value::Array(vec![existing.take(), Value::String(v.clone())]),
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(map)
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let value = if redact::is_secret_header(name.as_str()) {
            REDACTED.to_owned()
        } else {
            headers
                .get_all(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        map.insert(name.as_str().to_owned(), Value::String(value));
    }
    Value::Object(map)
}

struct Capture {
    bytes: BytesMut,
    seen: usize,
    limit: usize,
}

/// Passes the request body through to the handler while keeping a copy (up to a limit) for the log.
struct CapturingPayload {
    inner: Payload,
    capture: Rc<RefCell<Capture>>,
}

impl Stream for CapturingPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let mut capture = self.capture.borrow_mut();
            capture.seen += chunk.len();
            let room = capture.limit.saturating_sub(capture.bytes.len());
            capture.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        polled
    }
}

//! Sendouts: one event's delivery to one endpoint, and the schedule of its attempts.

use std::time::Duration;

use super::filter::{CREATED_AFTER, CREATED_BEFORE, Context, Field, Filter, FilterErrors, Values, each};
use super::params::Params;
use super::task::wire_enum;

wire_enum!(
    SendoutStatus { Pending = "pending", Retrying = "retrying", Delivered = "delivered", Failed = "failed" }
);

wire_enum!(
    /// Why an attempt got no answer, for failure groups: `timeout`, no connection (`connect`, `dns`),
    /// `tls`, an address the SSRF policy refused (`blocked`), the answer broke off (`read`), or `other`.
    FailureKind { Timeout = "timeout", Connect = "connect", Dns = "dns", Tls = "tls", Blocked = "blocked", Read = "read", Other = "other" }
);

impl FailureKind {
    /// The kind of an attempt's `error`, read from the texts delivery writes (`services::delivery`);
    /// `None` when an answer came (its HTTP status then says what went wrong).
    pub fn of(http_status: Option<i32>, error: Option<&str>) -> Option<Self> {
        if http_status.is_some() {
            return None;
        }
        let error = error?.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| error.contains(w));
        Some(if error.starts_with("no answer within") || has(&["timed out", "timeout"]) {
            Self::Timeout
        } else if error.starts_with("the url reaches") {
            Self::Blocked
        } else if error.starts_with("reading the response failed") {
            Self::Read
        } else if has(&["dns error", "failed to lookup", "name or service not known", "no such host"]) {
            Self::Dns
        } else if has(&["certificate", "tls", "ssl", "handshake"]) {
            Self::Tls
        } else if has(&["connect", "connection refused", "connection reset"]) {
            Self::Connect
        } else {
            Self::Other
        })
    }
}

wire_enum!(
    /// `scheduled`: an attempt of the retry schedule; `manual`: a retry by hand or by a recovery.
    AttemptTrigger { Scheduled = "scheduled", Manual = "manual" }
);

/// A sendout as read: one event's delivery to one endpoint, its fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendout {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub request_id: Option<String>,
    pub status: SendoutStatus,
    pub attempt_count: i32,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
}

/// One recorded HTTP attempt of a sendout.
#[derive(Debug, Clone, PartialEq)]
pub struct SendoutAttempt {
    pub id: String,
    pub attempted_at_ms: i64,
    pub trigger: AttemptTrigger,
    /// `None` when no answer came.
    pub http_status: Option<i32>,
    pub response_headers: serde_json::Map<String, serde_json::Value>,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// The delay before the next scheduled attempt after `done` of them, jittered by up to ±20% so
/// that failures at the same moment do not retry in lockstep, and never earlier than the
/// receiver's `Retry-After`. `None` once the schedule is used up.
pub fn next_delay(schedule: &[Duration], done: usize, retry_after: Option<Duration>) -> Option<Duration> {
    let base = *schedule.get(done)?;
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    let delay = base.mul_f64(jitter);
    Some(retry_after.map_or(delay, |r| delay.max(r)))
}

/// `Retry-After` as seconds or an HTTP date, capped at a day.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate_delay(value, now)?,
    };
    Some(delay.min(Duration::from_secs(86_400)))
}

fn httpdate_delay(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = std::time::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_schedule_with_jitter_and_respect_retry_after() {
        let schedule = [Duration::ZERO, Duration::from_secs(10), Duration::from_secs(100)];
        for _ in 0..100 {
            let d = next_delay(&schedule, 1, None).unwrap();
            assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(12), "{d:?}");
        }
        assert_eq!(next_delay(&schedule, 0, None), Some(Duration::ZERO));
        assert!(next_delay(&schedule, 1, Some(Duration::from_secs(60))).unwrap() >= Duration::from_secs(60));
        assert_eq!(next_delay(&schedule, 3, None), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:27 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("9999999", now), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn failure_kinds_read_the_errors_delivery_writes() {
        let kind = |e: &str| FailureKind::of(None, Some(e));
        assert_eq!(FailureKind::of(Some(500), Some("the endpoint answered 500")), None);
        assert_eq!(kind("no answer within 15s"), Some(FailureKind::Timeout));
        assert_eq!(kind("the URL reaches a loopback address; only public addresses are allowed"), Some(FailureKind::Blocked));
        assert_eq!(kind("error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"), Some(FailureKind::Connect));
        assert_eq!(kind("error sending request: client error (Connect): dns error: failed to lookup address information"), Some(FailureKind::Dns));
        assert_eq!(kind("error sending request: invalid peer certificate: UnknownIssuer"), Some(FailureKind::Tls));
        assert_eq!(kind("reading the response failed: connection closed"), Some(FailureKind::Read));
        assert_eq!(kind("something new"), Some(FailureKind::Other));
        assert_eq!(FailureKind::of(None, None), None);
    }
}

/// The filters of `GET /v1/webhook-sendouts`, of bulk retries and of recovery tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SendoutFilter {
    pub status: Vec<SendoutStatus>,
    pub event_type: Vec<String>,
    pub webhook_id: Vec<String>,
    pub source_id: Vec<String>,
    pub request_id: Vec<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// The last attempt's HTTP status.
    pub http_status: Vec<i32>,
    /// The last attempt's failure kind (it got no answer).
    pub error: Vec<FailureKind>,
}

impl Filter for SendoutFilter {
    const RESOURCE: &'static str = "sendout";
    const FIELDS: &'static [Field] = &[
        Field::any_of("status", Values::OneOf("SendoutStatus"), ""),
        Field::any_of("event_type", Values::Text, ""),
        Field::any_of("webhook_id", Values::Text, ""),
        Field::any_of("source_id", Values::Text, "The event's source object."),
        Field::any_of("request_id", Values::Text, "The log id of the request that published the event."),
        CREATED_AFTER,
        CREATED_BEFORE,
        Field::any_of("http_status", Values::Text, "The HTTP status of the last attempt, 100 to 599 (a failure group's `http_status`)."),
        Field::any_of("error", Values::OneOf("FailureKind"), "Why the last attempt got no answer (a failure group's `error`)."),
    ];

    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let mut errors = Vec::new();
        let (created_after, created_before) = params.created_window(cx.zone, &mut errors);
        let http_status = |v: &str| match v.parse::<i32>() {
            Ok(code) if (100..=599).contains(&code) => Ok(code),
            _ => Err("is not an HTTP status from 100 to 599"),
        };
        let filter = Self {
            http_status: each(params, "http_status", http_status, &mut errors),
            error: each(params, "error", FailureKind::parse, &mut errors),
            status: each(params, "status", SendoutStatus::parse, &mut errors),
            event_type: params.all("event_type"),
            webhook_id: params.all("webhook_id"),
            source_id: params.all("source_id"),
            request_id: params.all("request_id"),
            created_after,
            created_before,
        };
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }
}

//! Sendouts: one event's delivery to one endpoint, and the schedule of its attempts.

use std::time::Duration;

use super::task::wire_enum;

wire_enum!(
    SendoutStatus { Pending = "pending", Retrying = "retrying", Delivered = "delivered", Failed = "failed" }
);

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
}

/// The filters of `GET /v1/webhook-sendouts`, of bulk retries and of recovery tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendoutFilter {
    pub status: Vec<SendoutStatus>,
    pub event_type: Vec<String>,
    pub webhook_id: Vec<String>,
    pub source_id: Vec<String>,
    pub request_id: Vec<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl SendoutFilter {
    pub const NAMES: &'static [&'static str] =
        &["status", "event_type", "webhook_id", "source_id", "request_id", "created_after", "created_before"];

    pub fn parse(params: &super::params::Params, zone: &super::time::ProjectTimeZone) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let (created_after, created_before) = params.created_window(zone, &mut errors);
        let mut status = Vec::new();
        for value in params.all("status") {
            match SendoutStatus::parse(&value) {
                Ok(s) => status.push(s),
                Err(e) => errors.push(("status".into(), format!("'{value}' {}", e.0))),
            }
        }
        let filter = Self {
            status,
            event_type: params.all("event_type"),
            webhook_id: params.all("webhook_id"),
            source_id: params.all("source_id"),
            request_id: params.all("request_id"),
            created_after,
            created_before,
        };
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }

    /// Reads filters given as a JSON object (`{"status": "failed", "webhook_id": ["whk_…"]}`): the
    /// list's parameter names, a repeated parameter as an array.
    pub fn from_json(value: &serde_json::Value, zone: &super::time::ProjectTimeZone) -> Result<Self, Vec<(String, String)>> {
        let Some(object) = value.as_object() else { return Err(vec![("filters".into(), "must be an object".into())]) };
        let mut pairs = Vec::new();
        let mut errors = Vec::new();
        for (name, v) in object {
            if !Self::NAMES.contains(&name.as_str()) {
                errors.push((format!("filters.{name}"), format!("is not a sendout filter; use {}", Self::NAMES.join(", "))));
                continue;
            }
            let texts: Vec<String> = match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_string) => {
                    items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                }
                serde_json::Value::Null => Vec::new(),
                _ => {
                    errors.push((format!("filters.{name}"), "must be a string or an array of strings".into()));
                    continue;
                }
            };
            pairs.extend(texts.into_iter().map(|t| (name.clone(), t)));
        }
        let parsed = Self::parse(&super::params::Params::from_pairs(pairs), zone)
            .map_err(|e| e.into_iter().map(|(f, m)| (format!("filters.{f}"), m)).collect::<Vec<_>>());
        match parsed {
            Ok(filter) if errors.is_empty() => Ok(filter),
            Ok(_) => Err(errors),
            Err(more) => Err(errors.into_iter().chain(more).collect()),
        }
    }
}

//! `GET /v1/stream`: Server-Sent Events of the project's changes, resumable with `Last-Event-ID`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;

use crate::api::auth::ProjectMember;
use crate::api::exports::ExportOut;
use crate::api::logs::LogSummaryOut;
use crate::api::sendouts::SendoutOut;
use crate::api::tasks::TaskOut;
use crate::domain::filter::each;
use crate::domain::params::Params;
use crate::error::{ApiError, ApiResult};
use crate::services::stream::{Change, Next, Render, Resource, Subscription, Topic};
use crate::state::AppState;

/// How often an idle stream sends a comment, so that proxies keep it open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Frames as the list endpoints show each resource: `id:` the change's position, `event:` its
/// topic, `data:` the summary.
pub fn render() -> Render {
    Arc::new(|change: &Change, zone| {
        let data = match &change.resource {
            Resource::Log(s) => serde_json::to_string(&LogSummaryOut::new(s.clone(), zone)),
            Resource::Task(t) => serde_json::to_string(&TaskOut::new(t.clone(), zone, None)),
            Resource::Export(e) => serde_json::to_string(&ExportOut::new(e.clone(), zone)),
            Resource::Sendout(s) => serde_json::to_string(&SendoutOut::new(s.clone(), zone, None)),
        };
        Bytes::from(format!("id: {}\nevent: {}\ndata: {}\n\n", change.seq, change.topic.as_str(), data.unwrap_or_default()))
    })
}

#[utoipa::path(
    operation_id = "stream_changes", tag = "stream", security(("bearer" = [])),
    params(
        ("topics" = Option<Vec<Topic>>, Query, description = "Topics to receive (repeatable); all four when absent."),
        ("last_event_id" = Option<i64>, Query, description = "Where to resume, as the `Last-Event-ID` header says (for clients that cannot set headers)."),
        ("Last-Event-ID" = Option<i64>, Header, description = "The `id` of the last event received: what came after it is sent first."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: events `log.recorded`, `task.updated`, `export.updated`, `sendout.updated`, each with an `id` and the resource's summary as its list shows it as `data`; a comment every 15 s while idle; `event: resume` with the id to reconnect from when the client fell too far behind (the stream then closes)", content_type = "text/event-stream", body = String),
    )
)]
#[get("/stream")]
async fn stream(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, params: Params) -> ApiResult<HttpResponse> {
    if let Some(unknown) = params.first_unknown(&["topics", "last_event_id"]) {
        return Err(ApiError::invalid_query(unknown, "is not a parameter of the stream; use topics or last_event_id"));
    }
    let mut errors = Vec::new();
    let topics = each(&params, "topics", Topic::parse, &mut errors);
    if let Some((field, message)) = errors.into_iter().next() {
        return Err(ApiError::invalid_query(&field, message));
    }
    let header = req.headers().get("last-event-id").map(|v| v.to_str().unwrap_or("?").to_owned());
    let query = params.one("last_event_id").map_err(|e| ApiError::invalid_query("last_event_id", e.0))?.map(str::to_owned);
    let last_seen = match header.or(query) {
        Some(v) if !v.trim().is_empty() => Some(
            v.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| ApiError::invalid_query("last_event_id", "must be the id of an event of this stream"))?,
        ),
        _ => None,
    };
    let subscription = state.feed.subscribe(member.project_id(), topics, last_seen).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // nginx would otherwise buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events(subscription)))
}

/// The stream's body: a first comment (so the client sees the stream open), then frames as they
/// come, heartbeats while idle, and a resume point when the subscriber fell behind.
fn events(subscription: Subscription) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Some(Bytes::from_static(b"retry: 2000\n: connected\n\n"));
    futures_util::stream::unfold((subscription, heartbeat, start, false), |(mut sub, mut heartbeat, start, done)| async move {
        if let Some(first) = start {
            return Some((Ok(first), (sub, heartbeat, None, false)));
        }
        if done {
            return None;
        }
        let (bytes, done) = tokio::select! {
            next = sub.next() => match next {
                Ok(Next::Frames(frames)) => (Bytes::from(frames.concat()), false),
                Ok(Next::Resume(seq)) => (resume(seq), true),
                Err(e) => {
                    tracing::warn!(error = %e, "a live stream could not read the event log; it is told to resume");
                    (resume(sub.position()), true)
                }
            },
            _ = heartbeat.tick() => (Bytes::from_static(b": heartbeat\n\n"), false),
        };
        Some((Ok(bytes), (sub, heartbeat, None, done)))
    })
}

fn resume(seq: i64) -> Bytes {
    Bytes::from(format!("id: {seq}\nevent: resume\ndata: {{\"last_event_id\":\"{seq}\"}}\n\n"))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(stream);
}

//! Webhook endpoints, sendouts and their attempts, and the idempotency keys of published events.

use entity::{event_idempotency, sendout, sendout_attempt, webhook};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use crate::domain::sendout::{FailureKind, SendoutStatus};
use crate::event_log::{AttemptOutcome, AttemptTrigger, DomainEvent, SendoutAttempted, StoredEvent};

pub async fn apply(conn: &impl ConnectionTrait, stored: &StoredEvent) -> Result<(), DbErr> {
    let at = stored.recorded_at_ms;
    match &stored.event {
        DomainEvent::WebhookCreated(e) => {
            let row = webhook::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                url: e.url.as_str().to_owned(),
                event_types: serde_json::to_string(&e.event_types).unwrap_or_default(),
                description: e.description.clone(),
                enabled: e.enabled,
                disabled_reason: None,
                rate_limit_per_second: e.rate_limit_per_second,
                secret: e.secret.as_str().to_owned(),
                previous_secret: None,
                previous_secret_until_ms: None,
                failing_since_ms: None,
                created_at_ms: at,
                updated_at_ms: at,
            };
            webhook::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::WebhookUpdated(e) => {
            let mut row = webhook::ActiveModel {
                id: Set(e.id.clone()),
                url: Set(e.url.as_str().to_owned()),
                event_types: Set(serde_json::to_string(&e.event_types).unwrap_or_default()),
                description: Set(e.description.clone()),
                enabled: Set(e.enabled),
                rate_limit_per_second: Set(e.rate_limit_per_second),
                updated_at_ms: Set(at),
                ..Default::default()
            };
            if e.enabled {
                // Enabling again starts afresh.
                row.disabled_reason = Set(None);
                row.failing_since_ms = Set(None);
            }
            webhook::Entity::update(row).exec(conn).await?;
        }
        DomainEvent::WebhookDeleted(e) => {
            webhook::Entity::delete_by_id(&e.id).exec(conn).await?;
        }
        DomainEvent::WebhookSecretRotated(e) => {
            webhook::Entity::update_many()
                .col_expr(webhook::Column::PreviousSecret, Expr::col(webhook::Column::Secret))
                .col_expr(webhook::Column::Secret, Expr::value(e.secret.as_str()))
                .col_expr(webhook::Column::PreviousSecretUntilMs, Expr::value(e.previous_secret_until_ms))
                .col_expr(webhook::Column::UpdatedAtMs, Expr::value(at))
                .filter(webhook::Column::Id.eq(&e.id))
                .exec(conn)
                .await?;
        }
        DomainEvent::WebhookDisabled(e) => {
            let row = webhook::ActiveModel {
                id: Set(e.id.clone()),
                enabled: Set(false),
                disabled_reason: Set(Some(e.reason.clone())),
                updated_at_ms: Set(at),
                ..Default::default()
            };
            webhook::Entity::update(row).exec(conn).await?;
        }
        DomainEvent::SendoutRetryRequested(e) => {
            sendout::Entity::update_many()
                .col_expr(sendout::Column::Status, Expr::value(SendoutStatus::Retrying.as_str()))
                .col_expr(sendout::Column::Generation, Expr::value(e.generation))
                .col_expr(sendout::Column::NextAttemptAtMs, Expr::value(at))
                .filter(sendout::Column::Id.eq(&e.id))
                .exec(conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

const CHUNK: usize = 512;

/// What a run of attempts does to an endpoint's `failing_since_ms`, composed in order.
#[derive(Clone, Copy)]
enum Failing {
    /// A success: the endpoint is not failing.
    Clear,
    /// A failure: failing since this attempt, unless it already was.
    StartIfHealthy(i64),
    /// A success and then a failure: failing since that failure.
    Start(i64),
}

impl Failing {
    fn then(self, next: Failing) -> Failing {
        match (self, next) {
            (_, Failing::Clear) => Failing::Clear,
            (Failing::Clear, Failing::StartIfHealthy(t)) => Failing::Start(t),
            (earlier @ (Failing::StartIfHealthy(_) | Failing::Start(_)), Failing::StartIfHealthy(_)) => earlier,
            (_, Failing::Start(t)) => Failing::Start(t),
        }
    }
}

/// Sets the state after an attempt of many sendouts in one statement (`UPDATE … FROM (VALUES …)`,
/// which SQLite and PostgreSQL share); each sendout occurs once per batch (one record a generation).
async fn update_sendouts(conn: &impl ConnectionTrait, attempts: &[(&StoredEvent, &SendoutAttempted)]) -> Result<(), DbErr> {
    if attempts.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let postgres = backend == sea_orm::DbBackend::Postgres;
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(attempts.len() * 9);
    let mut tuples = Vec::with_capacity(attempts.len());
    for (_, e) in attempts {
        let a = &e.attempt;
        let (status, next, delivered) = match e.outcome {
            AttemptOutcome::Delivered => (SendoutStatus::Delivered, None, Some(a.attempted_at_ms)),
            AttemptOutcome::Retrying { next_attempt_at_ms } => (SendoutStatus::Retrying, Some(next_attempt_at_ms), None),
            AttemptOutcome::Failed => (SendoutStatus::Failed, None, None),
            AttemptOutcome::Superseded => unreachable!("superseded attempts are counted in `count_superseded`"),
        };
        let failure = FailureKind::of(a.http_status, a.error.as_deref()).map(|k| k.as_str().to_owned());
        let row: [(sea_orm::Value, &str); 9] = [
            (e.id.clone().into(), "text"),
            (status.as_str().into(), "text"),
            (i64::from(a.trigger == AttemptTrigger::Scheduled).into(), "bigint"),
            (i64::from(e.generation + 1).into(), "bigint"),
            (next.into(), "bigint"),
            (a.attempted_at_ms.into(), "bigint"),
            (delivered.into(), "bigint"),
            (a.http_status.map(i64::from).into(), "bigint"),
            (failure.into(), "text"),
        ];
        let placeholders: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| if postgres { format!("${}::{ty}", values.len() + i + 1) } else { "?".to_owned() })
            .collect();
        tuples.push(format!("({})", placeholders.join(", ")));
        values.extend(row.into_iter().map(|(v, _)| v));
    }
    // Both name the columns of a VALUES list column1, column2, …
    let c = "v.column";
    let sql = format!(
        "UPDATE sendouts SET status = {c}2, attempt_count = sendouts.attempt_count + 1, \
         scheduled_attempts = sendouts.scheduled_attempts + {c}3, generation = {c}4, next_attempt_at_ms = {c}5, \
         sent_at_ms = COALESCE(sendouts.sent_at_ms, {c}6), delivered_at_ms = COALESCE({c}7, sendouts.delivered_at_ms), \
         last_attempt_at_ms = {c}6, last_http_status = {c}8, last_error = {c}9 \
         FROM (VALUES {}) AS v WHERE sendouts.id = {c}1",
        tuples.join(", ")
    );
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await.map(|_| ())
}

/// Counts attempts outrun by a retry by hand; the sendout's state is the newer attempt's.
async fn count_superseded(conn: &impl ConnectionTrait, attempts: &[(&StoredEvent, &SendoutAttempted)]) -> Result<(), DbErr> {
    for (_, e) in attempts {
        let a = &e.attempt;
        sendout::Entity::update_many()
            .filter(sendout::Column::Id.eq(&e.id))
            .col_expr(sendout::Column::AttemptCount, Expr::col(sendout::Column::AttemptCount).add(1))
            .col_expr(
                sendout::Column::SentAtMs,
                Expr::expr(Func::coalesce([Expr::col(sendout::Column::SentAtMs).into(), Expr::value(a.attempted_at_ms)])),
            )
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Records attempts: each sendout's new state, the attempts as one multi-row insert, and one
/// update per endpoint whose run of failures started or ended.
pub async fn record_attempts(conn: &impl ConnectionTrait, attempts: &[(&StoredEvent, &SendoutAttempted)]) -> Result<(), DbErr> {
    let mut failing: Vec<(&str, Failing)> = Vec::new();
    let (superseded, current): (Vec<_>, Vec<_>) = attempts.iter().copied().partition(|(_, e)| e.outcome == AttemptOutcome::Superseded);
    count_superseded(conn, &superseded).await?;
    let all = attempts;
    let attempts = &current[..];
    // One statement per run of distinct sendouts: a replay holds several attempts of one sendout,
    // which must apply in order.
    let mut start = 0;
    let mut seen = std::collections::HashSet::new();
    for (i, (_, e)) in attempts.iter().enumerate() {
        if !seen.insert(e.id.as_str()) {
            for chunk in super::pow2_chunks(&attempts[start..i], 128) {
                update_sendouts(conn, chunk).await?;
            }
            start = i;
            seen.clear();
            seen.insert(e.id.as_str());
        }
    }
    for chunk in super::pow2_chunks(&attempts[start..], 128) {
        update_sendouts(conn, chunk).await?;
    }
    let attempts = all;
    for (_, e) in attempts {
        let a = &e.attempt;
        let op = match e.outcome {
            AttemptOutcome::Delivered => Failing::Clear,
            AttemptOutcome::Superseded if a.http_status.is_some_and(|s| (200..300).contains(&s)) => Failing::Clear,
            // A failure outrun by a newer attempt (recorded after it, maybe in the same batch)
            // says nothing of the endpoint's state now.
            AttemptOutcome::Superseded => continue,
            _ => Failing::StartIfHealthy(a.attempted_at_ms),
        };
        match failing.iter_mut().find(|(id, _)| *id == e.webhook_id) {
            Some((_, composed)) => *composed = composed.then(op),
            None => failing.push((&e.webhook_id, op)),
        }
    }
    for chunk in super::pow2_chunks(attempts, CHUNK) {
        let rows = chunk.iter().map(|(_, e)| {
            let a = &e.attempt;
            sendout_attempt::Model {
                id: a.id.clone(),
                sendout_id: e.id.clone(),
                attempted_at_ms: a.attempted_at_ms,
                trigger: match a.trigger {
                    AttemptTrigger::Scheduled => "scheduled".into(),
                    AttemptTrigger::Manual => "manual".into(),
                },
                http_status: a.http_status,
                response_headers: serde_json::to_string(&a.response_headers).unwrap_or_default(),
                response_body: a.response_body.clone(),
                duration_ms: a.duration_ms,
                error: a.error.clone(),
            }
            .into_active_model()
        });
        sendout_attempt::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    // Written only when it changes: most attempts succeed on a healthy endpoint.
    for (id, op) in failing {
        let update = webhook::Entity::update_many().filter(webhook::Column::Id.eq(id));
        let update = match op {
            Failing::Clear => update.col_expr(webhook::Column::FailingSinceMs, Expr::value(None::<i64>)).filter(webhook::Column::FailingSinceMs.is_not_null()),
            Failing::StartIfHealthy(t) => update.col_expr(webhook::Column::FailingSinceMs, Expr::value(t)).filter(webhook::Column::FailingSinceMs.is_null()),
            Failing::Start(t) => update.col_expr(webhook::Column::FailingSinceMs, Expr::value(t)),
        };
        update.exec(conn).await?;
    }
    Ok(())
}

/// Sendouts come in bulk (an import's rows fan out), so they are inserted many rows at a time.
pub async fn insert_sendouts(conn: &impl ConnectionTrait, created: &[(&StoredEvent, &crate::event_log::SendoutCreated)]) -> Result<(), DbErr> {
    for chunk in super::pow2_chunks(created, CHUNK) {
        let rows = chunk.iter().map(|(stored, e)| {
            sendout::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                webhook_id: e.webhook_id.clone(),
                url: e.url.clone(),
                event_id: e.event_id.clone(),
                event_type: e.event_type.clone(),
                source_id: e.source_id.clone(),
                request_id: stored.metadata.request_log_id.clone(),
                status: SendoutStatus::Pending.as_str().to_owned(),
                attempt_count: 0,
                generation: 1,
                scheduled_attempts: 0,
                next_attempt_at_ms: Some(e.created_at_ms),
                created_at_ms: e.created_at_ms,
                sent_at_ms: None,
                delivered_at_ms: None,
                last_attempt_at_ms: None,
                last_http_status: None,
                last_error: None,
            }
            .into_active_model()
        });
        sendout::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(())
}

/// Remembers the idempotency keys of published events.
pub async fn insert_idempotency(conn: &impl ConnectionTrait, keys: &[(&str, &str, &str, i64)]) -> Result<(), DbErr> {
    for (project_id, key, event_id, at) in keys {
        let row = event_idempotency::Model {
            project_id: (*project_id).to_owned(),
            idempotency_key: (*key).to_owned(),
            event_id: (*event_id).to_owned(),
            created_at_ms: *at,
        };
        // A key reused after its 24 hours points at the newer event.
        event_idempotency::Entity::insert(row.into_active_model())
            .on_conflict(
                OnConflict::columns([event_idempotency::Column::ProjectId, event_idempotency::Column::IdempotencyKey])
                    .update_columns([event_idempotency::Column::EventId, event_idempotency::Column::CreatedAtMs])
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

//! Request logs: one narrow row per request for filtering, plus its related resources. Headers and
//! bodies are not copied; the detail view reads them from the event row `event_seq`.

use std::collections::BTreeSet;

use entity::{log, log_endpoint, log_related};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel};

use super::unnest::Unnest;

use crate::domain::log::LogRecord;

const CHUNK: usize = 512;

pub async fn insert(conn: &impl ConnectionTrait, records: &[(i64, &LogRecord)]) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        insert_postgres(conn, records).await?;
    } else {
        for chunk in super::pow2_chunks(records, CHUNK) {
            log::Entity::insert_many(chunk.iter().map(|(seq, r)| row(*seq, r).into_active_model())).exec_without_returning(conn).await?;
        }
    }

    let related: Vec<log_related::ActiveModel> = records
        .iter()
        .flat_map(|(_, r)| {
            r.related.iter().map(|rel| {
                log_related::Model {
                    log_id: r.id.clone(),
                    related_id: rel.id.clone(),
                    related_type: rel.kind.as_str().to_owned(),
                    project_id: r.project_id.clone(),
                }
                .into_active_model()
            })
        })
        .collect();
    for part in super::pow2_chunks(&related, CHUNK) {
        log_related::Entity::insert_many(part.iter().cloned()).exec_without_returning(conn).await?;
    }

    let endpoints: BTreeSet<(&str, &str)> =
        records.iter().filter_map(|(_, r)| Some((r.project_id.as_deref()?, r.endpoint.as_str()))).collect();
    let endpoints: Vec<log_endpoint::ActiveModel> = endpoints
        .into_iter()
        .map(|(project_id, endpoint)| log_endpoint::Model { project_id: project_id.to_owned(), endpoint: endpoint.to_owned() }.into_active_model())
        .collect();
    for part in super::pow2_chunks(&endpoints, CHUNK) {
        log_endpoint::Entity::insert_many(part.iter().cloned())
            .on_conflict_do_nothing_on([log_endpoint::Column::ProjectId, log_endpoint::Column::Endpoint])
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

fn row(event_seq: i64, r: &LogRecord) -> log::Model {
    log::Model {
        id: r.id.clone(),
        project_id: r.project_id.clone(),
        event_seq,
        occurred_at_ms: r.occurred_at_ms,
        channel: r.channel.clone(),
        failed: r.failed(),
        method: r.method.clone(),
        endpoint: r.endpoint.clone(),
        path: r.path.clone(),
        http_status: r.http_status,
        duration_ms: r.duration_ms,
        user_id: r.user_id.clone(),
        customer_id: r.customer_id.clone(),
        server_key_id: r.server_key_id.clone(),
        client_key_id: r.client_key_id.clone(),
    }
}

/// All rows in one statement of array parameters (see `super::unnest`).
async fn insert_postgres(conn: &impl ConnectionTrait, records: &[(i64, &LogRecord)]) -> Result<(), DbErr> {
    let rows: Vec<log::Model> = records.iter().map(|(seq, r)| row(*seq, r)).collect();
    Unnest::insert_into("logs")
        .text("id", rows.iter().map(|r| r.id.clone()))
        .optional_text("project_id", rows.iter().map(|r| r.project_id.clone()))
        .big_int("event_seq", rows.iter().map(|r| r.event_seq))
        .big_int("occurred_at_ms", rows.iter().map(|r| r.occurred_at_ms))
        .text("channel", rows.iter().map(|r| r.channel.clone()))
        .bool("failed", rows.iter().map(|r| r.failed))
        .text("method", rows.iter().map(|r| r.method.clone()))
        .text("endpoint", rows.iter().map(|r| r.endpoint.clone()))
        .text("path", rows.iter().map(|r| r.path.clone()))
        .int("http_status", rows.iter().map(|r| r.http_status))
        .big_int("duration_ms", rows.iter().map(|r| r.duration_ms))
        .optional_text("user_id", rows.iter().map(|r| r.user_id.clone()))
        .optional_text("customer_id", rows.iter().map(|r| r.customer_id.clone()))
        .optional_text("server_key_id", rows.iter().map(|r| r.server_key_id.clone()))
        .optional_text("client_key_id", rows.iter().map(|r| r.client_key_id.clone()))
        .exec(conn, None)
        .await?;
    Ok(())
}

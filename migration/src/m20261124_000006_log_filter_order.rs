//! The per-filter indexes of `logs` end in the list order (`occurred_at_ms, id`), so each one
//! delivers a filtered page in order: the planner picks it without statistics (SQLite chose the
//! time index and a scan over half the log for one customer when it could not tell), and nothing
//! is sorted.

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (old index, new index, column, partial). New names: a pooled connection that has not yet seen a
/// drop would take a re-created name for one that still exists.
const FILTERS: &[(&str, &str, &str, bool)] = &[
    ("logs_project_channel", "logs_page_channel", "channel", false),
    ("logs_project_failed", "logs_page_failed", "failed", false),
    ("logs_project_endpoint", "logs_page_endpoint", "endpoint", false),
    ("logs_project_user", "logs_page_user", "user_id", true),
    ("logs_project_customer", "logs_page_customer", "customer_id", true),
    ("logs_project_server_key", "logs_page_server_key", "server_key_id", true),
    ("logs_project_client_key", "logs_page_client_key", "client_key_id", true),
];

/// Statements that replace the indexes named `from` by those named `to`, ending in `tail`.
fn replace(up: bool) -> Vec<String> {
    FILTERS
        .iter()
        .flat_map(|(old, new, column, partial)| {
            let (from, to, tail) = if up { (old, new, ", id") } else { (new, old, "") };
            let only = if *partial { format!(" WHERE {column} IS NOT NULL") } else { String::new() };
            [
                format!("CREATE INDEX {to} ON logs (project_id, {column}, occurred_at_ms{tail}){only}"),
                format!("DROP INDEX {from}"),
            ]
        })
        .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = replace(true);
        exec_each(manager, &statements.iter().map(String::as_str).collect::<Vec<_>>()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = replace(false);
        exec_each(manager, &statements.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
}

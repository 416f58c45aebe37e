//! Schema migrations, run by `logbook migrate` and at every start.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_log_search;
mod m20261124_000003_tasks;
mod m20261124_000004_webhooks;
mod m20261124_000005_search_file;
mod m20261124_000006_log_filter_order;
mod m20261124_000007_event_log_indexes;
mod m20261124_000008_search_folded;
mod m20261124_000009_search_statistics;
mod m20261124_000010_search_unlogged;
mod m20261124_000011_failures_index;
mod m20261201_000012_commit_notify;
mod m20261201_000013_exports;
mod m20261201_000014_sendout_last_attempt;
mod m20261201_000015_event_log_redaction;
mod m20261201_000016_rate_limits;
mod m20261202_000017_export_browse;
mod m20261202_000018_export_cells;
mod m20261203_000019_export_grams;

pub use m20261124_000007_event_log_indexes::VERSIONED_STREAMS;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_log_search::Migration),
            Box::new(m20261124_000003_tasks::Migration),
            Box::new(m20261124_000004_webhooks::Migration),
            Box::new(m20261124_000005_search_file::Migration),
            Box::new(m20261124_000006_log_filter_order::Migration),
            Box::new(m20261124_000007_event_log_indexes::Migration),
            Box::new(m20261124_000008_search_folded::Migration),
            Box::new(m20261124_000009_search_statistics::Migration),
            Box::new(m20261124_000010_search_unlogged::Migration),
            Box::new(m20261124_000011_failures_index::Migration),
            Box::new(m20261201_000012_commit_notify::Migration),
            Box::new(m20261201_000013_exports::Migration),
            Box::new(m20261201_000014_sendout_last_attempt::Migration),
            Box::new(m20261201_000015_event_log_redaction::Migration),
            Box::new(m20261201_000016_rate_limits::Migration),
            Box::new(m20261202_000017_export_browse::Migration),
            Box::new(m20261202_000018_export_cells::Migration),
            Box::new(m20261203_000019_export_grams::Migration),
        ]
    }
}

/// Runs statements one by one: trigger bodies contain `;`, so nothing here splits SQL text.
async fn exec_each(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for stmt in statements {
        conn.execute_unprepared(stmt).await?;
    }
    Ok(())
}

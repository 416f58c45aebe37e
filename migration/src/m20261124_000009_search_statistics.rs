//! PostgreSQL keeps no planner statistics of bodies: the search index table's, and the event log's
//! payloads and metadata. Nothing plans by them (a search reads the trigram index or checks rows
//! by position), and sampling 30,000 rows of a kilobyte for histograms (the index table's bodies
//! three times over, with the two lower-cased index expressions) made an `ANALYZE` take about 2 s
//! of CPU per table, several times over during a bulk load. The other columns keep theirs: without
//! any, the planner read the not-yet-indexed tail (`event_log WHERE seq > …`) by a full scan.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn statements(target: i32) -> [String; 4] {
    [
        format!("ALTER TABLE event_log ALTER COLUMN payload SET STATISTICS {target}, ALTER COLUMN metadata SET STATISTICS {target}"),
        format!("ALTER TABLE log_search ALTER COLUMN request_body SET STATISTICS {target}, ALTER COLUMN response_body SET STATISTICS {target}"),
        format!("ALTER INDEX log_search_request ALTER COLUMN 1 SET STATISTICS {target}"),
        format!("ALTER INDEX log_search_response ALTER COLUMN 1 SET STATISTICS {target}"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, &statements(0).iter().map(String::as_str).collect::<Vec<_>>()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // -1: `default_statistics_target` again.
        exec_each(manager, &statements(-1).iter().map(String::as_str).collect::<Vec<_>>()).await
    }
}

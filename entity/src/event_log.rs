use sea_orm::entity::prelude::*;

/// One immutable state change. `seq` is the global order; `(stream_type, stream_id, stream_version)`
/// is unique, which gives optimistic concurrency per stream.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub event_id: String,
    pub project_id: Option<String>,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    /// JSON text; large request and response bodies live only here.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    #[sea_orm(column_type = "Text")]
    pub metadata: String,
    pub recorded_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// The task projection: one row per background task, current state only.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub task_type: String,
    pub status: String,
    pub processing_status: Option<String>,
    pub processed: i64,
    pub total: Option<i64>,
    pub percent: i32,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub created_by_kind: String,
    pub created_by_id: Option<String>,
    pub request_id: Option<String>,
    /// JSON array of `{type, id}`.
    pub related: String,
    /// JSON: what the worker needs to run the task.
    pub params: String,
    /// JSON object: the task's outcome so far.
    pub result: String,
    pub error_count: i64,
    /// JSON: where a resumed worker carries on.
    pub checkpoint: Option<String>,
    pub attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// An uploaded file whose rows become events; its bytes are in `file_chunks` under `file_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub task_id: String,
    pub file_id: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    pub rows_total: i64,
    pub rows_imported: i64,
    pub rows_failed: i64,
    pub created_at_ms: i64,
    pub request_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

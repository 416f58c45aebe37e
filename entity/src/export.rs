use sea_orm::entity::prelude::*;

/// A requested export: what it selects (`filters`, `fields`, JSON text, as given), where its task
/// stands, and once done the stored CSV file `file_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "exports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub task_id: String,
    pub resource: String,
    pub filters: String,
    pub fields: String,
    pub format: String,
    pub time_zone: String,
    pub status: String,
    pub created_by_kind: String,
    pub created_by_id: Option<String>,
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    pub file_id: Option<String>,
    pub error: Option<String>,
    /// A logs export's browse index, built after its file: `indexing`, `ready` or `failed`.
    pub browse_status: Option<String>,
    pub browse_indexed_rows: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// One HTTP attempt of a sendout and what the receiver answered.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sendout_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub sendout_id: String,
    pub attempted_at_ms: i64,
    pub trigger: String,
    pub http_status: Option<i32>,
    /// JSON object.
    pub response_headers: String,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// A narrow index row per request log; headers and bodies stay in the event row `event_seq`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `None` for requests that no project can be attributed to (bad token, admin calls).
    pub project_id: Option<String>,
    pub event_seq: i64,
    pub occurred_at_ms: i64,
    pub channel: String,
    pub failed: bool,
    pub method: String,
    pub endpoint: String,
    pub path: String,
    pub http_status: i32,
    pub duration_ms: i64,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

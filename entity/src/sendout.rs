use sea_orm::entity::prelude::*;

/// One event's delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sendouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub webhook_id: String,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub request_id: Option<String>,
    pub status: String,
    pub attempt_count: i32,
    /// Which scheduled attempt the current delivery job is for.
    pub generation: i32,
    /// Attempts of the retry schedule used so far (manual retries do not count).
    pub scheduled_attempts: i32,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    /// When the last attempt (of the sendout's current state) was made.
    pub last_attempt_at_ms: Option<i64>,
    /// The last attempt's HTTP status, `None` when it got no answer.
    pub last_http_status: Option<i32>,
    /// The kind of the last attempt's failure when it got no answer (`FailureKind`).
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::webhook::Entity", from = "Column::WebhookId", to = "super::webhook::Column::Id")]
    Webhook,
}

impl Related<super::webhook::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Webhook.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

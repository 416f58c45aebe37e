use sea_orm::entity::prelude::*;

/// A webhook endpoint. Secrets are kept in full: they sign every delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub url: String,
    /// JSON array of patterns.
    pub event_types: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub rate_limit_per_second: Option<i32>,
    pub secret: String,
    /// After a rotation, the old secret keeps signing until `previous_secret_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_secret_until_ms: Option<i64>,
    /// Start of the current run of failed attempts; `None` after a success.
    pub failing_since_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

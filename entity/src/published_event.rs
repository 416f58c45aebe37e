use sea_orm::entity::prelude::*;

/// A narrow index row per published event; its `data` stays in the event row `event_seq`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub created_at_ms: i64,
    pub event_seq: i64,
    pub request_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

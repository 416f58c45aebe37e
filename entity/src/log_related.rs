use sea_orm::entity::prelude::*;

/// The resources a logged request touched, for `GET /v1/logs?related_id=`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "log_related")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub log_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub related_id: String,
    pub related_type: String,
    pub project_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// Where one short value of one column of a browsable export stands, per block of rows: the
/// offsets within block `block` of the rows whose cell `col` is exactly `value`, as little-endian
/// `u16`s in ascending order. A row with `block` -1 (and `value` '') marks a column as indexed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "export_cells")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub export_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub col: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub value: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub block: i64,
    pub positions: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

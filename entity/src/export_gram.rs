use sea_orm::entity::prelude::*;

/// The trigrams of one block of a browsable export's rows, as a Bloom filter: `bits` is a bitmap
/// of `services::browse_index::GRAM_BITS` bits, little-endian 64-bit words. A row with `block` -1
/// (and no bits) marks the export as indexed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "export_grams")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub export_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub block: i64,
    pub bits: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

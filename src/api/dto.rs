//! Response shapes shared by every resource.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::pagination::Page;

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListOut<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> ListOut<T> {
    pub fn from_page<R>(page: Page<R>, to_out: impl FnMut(R) -> T) -> Self {
        let next_cursor = page.next_cursor.as_ref().map(|c| c.encode());
        Self { has_more: next_cursor.is_some(), next_cursor, data: page.rows.into_iter().map(to_out).collect() }
    }
}

/// A file's bytes as a response or a request part (`type: string, format: binary`): generated
/// clients read it as a file, not as text.
pub struct FileBody;

impl FileBody {
    pub fn object() -> utoipa::openapi::schema::ObjectBuilder {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
    }
}

impl utoipa::PartialSchema for FileBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        Self::object().into()
    }
}

impl ToSchema for FileBody {}

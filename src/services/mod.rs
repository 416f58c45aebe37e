//! Use cases. Handlers and jobs call these; they read projections and append events.

pub mod auth;
pub mod delivery;
pub mod error;
pub mod events;
pub mod files;
pub mod imports;
pub mod logs;
pub mod projects;
pub mod retention;
pub mod sendouts;
pub mod tasks;
pub mod webhooks;

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

use crate::domain::pagination::{Cursor, Limit};

/// Orders a query newest first by `(time, id)`, continues after `cursor`, and fetches one row more
/// than `limit` so the caller can tell whether another page follows.
pub fn newest_first<E: EntityTrait>(
    select: Select<E>,
    time: E::Column,
    id: E::Column,
    limit: Limit,
    cursor: Option<&Cursor>,
) -> Select<E> {
    let select = match cursor {
        Some(c) => select.filter(
            Condition::any()
                .add(time.lt(c.time_ms))
                .add(Condition::all().add(time.eq(c.time_ms)).add(id.lt(c.id.as_str()))),
        ),
        None => select,
    };
    select.order_by_desc(time).order_by_desc(id).limit(limit.get() + 1)
}

//! Table definitions shared by the server and the migrations' tests.
//!
//! `event_log` is the source of truth; every other table is a projection of it and is written only by
//! the projectors in `logbook::projections`. Times are stored as Unix milliseconds (`*_ms`) so that the
//! same range queries and ordering work identically on SQLite and PostgreSQL.

pub mod admin_token;
pub mod api_key;
pub mod event_idempotency;
pub mod event_log;
pub mod export;
pub mod export_cell;
pub mod export_gram;
pub mod export_row;
pub mod file;
pub mod file_chunk;
pub mod import;
pub mod log;
pub mod log_endpoint;
pub mod log_related;
pub mod project;
pub mod published_event;
pub mod sendout;
pub mod sendout_attempt;
pub mod task;
pub mod task_error;
pub mod user;
pub mod webhook;

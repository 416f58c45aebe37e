//! Black-box tests over HTTP against the real application and a real database.

mod errors;
mod event_log;
mod helpers;
mod imports;
mod logs;
mod openapi;
mod projects;
mod receiver;
mod recovery;
mod retention;
mod search;
mod webhooks;

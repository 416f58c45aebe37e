//! Black-box tests over HTTP against the real application and a real database.

mod aggregates;
mod cluster;
mod console;
mod conformance;
mod erasure;
mod errors;
mod credentials;
mod event_log;
mod exports;
mod helpers;
mod hostile;
mod imports;
mod isolation;
mod limits;
mod live;
mod logs;
mod openapi;
mod postgres_tcp;
mod projects;
mod publishing;
mod receiver;
mod recovery;
mod retention;
mod stream;
mod search;
mod webhooks;

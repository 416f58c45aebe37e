//! Logbook: audit logs, background tasks and webhooks, event-sourced, in one binary.

pub mod api;
pub mod config;
pub mod db;
pub mod demo;
pub mod dialect;
pub mod domain;
pub mod error;
pub mod event_log;
pub mod jobs;
pub mod metrics;
pub mod projections;
pub mod services;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod vault;

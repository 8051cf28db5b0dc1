//! tidelog: one event-sourced, CQRS server for five frontends.
//! `main.rs` only calls [`cli::run`]; tests start [`app::Server`] directly.

pub mod analytics;
pub mod app;
pub mod auth;
pub mod bilibili;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod embedded_pg;
pub mod files;
pub mod generation;
pub mod gifts;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod live;
pub mod liverooms;
pub mod projector;
pub mod social;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod tlog;

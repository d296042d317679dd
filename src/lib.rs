//! mamori: the server of an exposure-notification app.
//!
//! The binary in `main.rs` parses the command line and calls into this library, so the tests
//! build and run exactly the code the server runs.

pub mod admins;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod diagnosis_keys;
pub mod entity;
pub mod error;
pub mod exports;
pub mod graphql;
pub mod health_center_tokens;
pub mod http;
pub mod japan_time;
pub mod jobs;
pub mod metrics;
pub mod notices;
pub mod pagination;
pub mod prefectures;
pub mod profiles;
pub mod rate_limit;
pub mod secrets;
pub mod stats;
pub mod storage;
pub mod telemetry;
pub mod verification;

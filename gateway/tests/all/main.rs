//! The gateway's integration tests: one binary, one module per concern.

// Test support code may unwrap: a failure there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod admin;
mod cli;
mod config;
mod harness;
mod keys;
mod logs;
mod models;
mod providers;
mod proxy;
mod shared;
mod spend;
mod state;
mod store;
mod ui;

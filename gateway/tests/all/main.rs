//! The gateway's integration tests: one binary, one module per concern.

// Test support code may unwrap: a failure there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod cli;
mod config;
mod harness;
mod keys;
mod providers;
mod proxy;
mod spend;
mod state;
mod store;
mod ui;

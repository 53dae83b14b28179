//! The gateway's integration tests: one binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod harness;
mod keys;
mod providers;
mod proxy;

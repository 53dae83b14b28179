//! The gateway's integration tests: one binary, one module per concern.

mod harness;
mod providers;
mod proxy;

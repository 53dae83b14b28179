//! The gateway's integration tests: one binary, one module per concern.

mod cli;
mod harness;
mod providers;
mod proxy;

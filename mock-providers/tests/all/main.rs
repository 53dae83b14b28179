//! Integration tests of mock-providers: one binary, one module per concern.
//! Every server binds 127.0.0.1:0; every wait is bounded; nothing sleeps to
//! synchronise (the journal's `wait_for_completed` is the readiness signal).

// clippy's allow-unwrap-in-tests covers #[test] fns, not the helpers they share.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod cli;
mod control;
mod faults;
mod journal;
mod library;
mod selection;
mod shapes;
mod support;

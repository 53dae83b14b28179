//! drill's integration tests: the CLI surface (exit codes, located scenario errors), the
//! shipped quarterly suite end to end, sensitivity (the drill catches a gateway that contradicts
//! its documentation), and external mode against a separately started gateway.

// Helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod cli;
mod external;
mod runs;
mod sensitivity;
mod support;

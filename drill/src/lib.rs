//! The resilience drill: static audit of a config (`audit`), and signing, cosigning, verifying
//! and re-rendering the readiness memo of a run directory (`signoff`). `drill run` (scenarios,
//! harness, load, verification) arrives separately.

pub mod audit;
pub mod signoff;
pub mod signoff_cli;

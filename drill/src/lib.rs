//! The resilience drill (scenarios, load, fault phases, verification). Not built yet: the binary says so.

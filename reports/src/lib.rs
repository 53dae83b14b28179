//! Readiness memo model, rendering and signing. Not built yet.

//! drill's integration tests: the CLI surface, scenario errors, embedded runs, sensitivity.

//! Integration tests of mock-providers: one binary, one module per concern.

//! Load-generator benchmark (placeholder until written).
fn main() {}

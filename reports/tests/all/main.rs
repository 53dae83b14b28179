//! Integration tests of switchyard-reports: rendering the memo and signing/verifying a run.

mod render;
mod sign;

use switchyard_reports::Memo;

/// The realistic fixture memo.
pub fn fixture() -> Memo {
    let text = include_str!("../fixtures/memo.json");
    serde_json::from_str(text).expect("fixture parses")
}

//! Scenario files: the authoring schema (`schema`), reading with located errors (`load`) and
//! cross-field checks (`validate`).

pub mod load;
pub mod schema;
pub mod validate;

pub use load::{load, Document, Problem, ScenarioError, Source};
pub use schema::*;

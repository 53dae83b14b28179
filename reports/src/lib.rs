//! Readiness memo: the model (plain data), rendering to HTML and Markdown with embedded tera
//! templates and SVG charts, and the signing statement, DSSE envelope and verification.
//! Pure: data in, bytes out. Reading the journal and writing files belong to the drill.

pub mod chart;
pub mod model;
pub mod render;
pub mod sign;

pub use model::Memo;
pub use render::{render, RenderError, Rendered};

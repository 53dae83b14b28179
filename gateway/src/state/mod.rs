//! Declarative state (DESIGN §2.6): the versioned export document (`schema`), export from
//! the store (`export`), import as parse → validate → plan → apply (`import`), and the diff
//! of two documents (`diff`). HTTP handlers live in `admin::state`, the CLI in `run`.

pub mod diff;
pub mod export;
pub mod import;
pub mod schema;

pub use diff::{diff, StateDiff};
pub use export::{export, ExportError, ExportOptions};
pub use import::{
    apply, parse_document, plan, ConflictMode, ImportError, ImportOptions, ImportPlan,
    DEFAULT_MAX_BYTES,
};
pub use schema::{Format, Include, SecretsMode, Section, StateDocument};

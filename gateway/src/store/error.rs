//! `StoreError`: every way a store call can fail, one variant per answer the admin API gives
//! (404, 409, 400, 503, 500). Mapping to HTTP happens in `error.rs`, not here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of object the store keeps; names the subject of errors and audit entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Organization,
    Team,
    TeamMember,
    User,
    Budget,
    Key,
    Model,
    Credential,
    AccessGroup,
    Tag,
    GeneralSetting,
    RouterSettings,
    SpendLog,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 13] = [
        ObjectKind::Organization,
        ObjectKind::Team,
        ObjectKind::TeamMember,
        ObjectKind::User,
        ObjectKind::Budget,
        ObjectKind::Key,
        ObjectKind::Model,
        ObjectKind::Credential,
        ObjectKind::AccessGroup,
        ObjectKind::Tag,
        ObjectKind::GeneralSetting,
        ObjectKind::RouterSettings,
        ObjectKind::SpendLog,
    ];

    /// The kind whose [`as_str`](Self::as_str) is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Wire name, as written in the audit log's `object_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Organization => "organization",
            ObjectKind::Team => "team",
            ObjectKind::TeamMember => "team_member",
            ObjectKind::User => "user",
            ObjectKind::Budget => "budget",
            ObjectKind::Key => "key",
            ObjectKind::Model => "model",
            ObjectKind::Credential => "credential",
            ObjectKind::AccessGroup => "access_group",
            ObjectKind::Tag => "tag",
            ObjectKind::GeneralSetting => "general_setting",
            ObjectKind::RouterSettings => "router_settings",
            ObjectKind::SpendLog => "spend_log",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// Quotes a value for an error message, or says that the database did not name it.
pub(crate) struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(a value the database did not report)")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// A failed store operation. Nothing was written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (404).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: ObjectKind, id: String },

    /// A unique identity or alias is already taken (409).
    #[error("{kind} with {field} {} already exists", Shown(.value))]
    Conflict {
        kind: ObjectKind,
        field: &'static str,
        value: String,
    },

    /// The object names another object that does not exist, e.g. a key's team (400).
    #[error("{kind} {field} references unknown {target} {}", Shown(.value))]
    UnknownReference {
        kind: ObjectKind,
        field: &'static str,
        target: ObjectKind,
        value: String,
    },

    /// The object cannot be deleted while others reference it, e.g. a team with keys (409).
    #[error(
        "{kind} {id:?} is still referenced by at least one {by}\nremove or reassign those first"
    )]
    InUse {
        kind: ObjectKind,
        id: String,
        by: ObjectKind,
    },

    /// Bad input: negative budget, malformed duration, empty alias, oversized page (400).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },

    /// The database was written by a newer Switchyard; refusing to touch it.
    #[error(
        "database schema version {database} is newer than this binary supports ({binary})\n\
         upgrade switchyard, or point it at a database this version created"
    )]
    SchemaTooNew { database: i64, binary: i64 },

    /// `DATABASE_URL` names a backend Switchyard does not have.
    #[error("unsupported database URL scheme {scheme:?}\nexpected sqlite://..., sqlite::memory: or postgres://...")]
    UnsupportedUrl { scheme: String },

    /// Credential values were read or written but no salt key was configured.
    #[error("credential values need a salt key, and none is configured\nset SWITCHYARD_SALT_KEY")]
    NoSaltKey,

    /// A credential's sealed values failed authentication: wrong salt key or tampered bytes.
    #[error(
        "cannot decrypt credential {credential:?}: wrong SWITCHYARD_SALT_KEY or corrupted value"
    )]
    Decrypt { credential: String },

    /// A row could be read but not understood (hand-edited JSON, for instance).
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },

    /// The database cannot be reached or the pool is exhausted (503).
    #[error("store unavailable")]
    Unavailable(#[source] sqlx::Error),

    /// Applying the embedded migrations failed.
    #[error("migrating the database schema failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// Any other database failure (500).
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(kind: ObjectKind, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether this is the caller's fault (4xx) rather than the store's (5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound { .. }
                | StoreError::Conflict { .. }
                | StoreError::UnknownReference { .. }
                | StoreError::InUse { .. }
                | StoreError::Invalid { .. }
        )
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_thing_and_the_rule() {
        let e = StoreError::Conflict {
            kind: ObjectKind::Key,
            field: "key_alias",
            value: "prod".into(),
        };
        assert_eq!(e.to_string(), r#"key with key_alias "prod" already exists"#);
        let e = StoreError::UnknownReference {
            kind: ObjectKind::Key,
            field: "team_id",
            target: ObjectKind::Team,
            value: "t-9".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"key team_id references unknown team "t-9""#
        );
        let e = StoreError::SchemaTooNew {
            database: 9,
            binary: 1,
        };
        assert!(e
            .to_string()
            .contains("version 9 is newer than this binary supports (1)"));
        assert_eq!(ObjectKind::AccessGroup.to_string(), "access group");
    }
}

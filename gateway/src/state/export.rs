//! Export: reads the store's snapshot (one transaction) and turns it into a deterministic
//! [`StateDocument`]. Credential values are either replaced by placeholders or sealed for
//! export; nothing else secret (master key, salt, database URL, host, port) is ever read here.

use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::schema::*;
use crate::config::Config;
use crate::store::{SecretCipher, StateSnapshot, Store, StoreError};

/// What to export and how.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub secrets: SecretsMode,
    pub include: Include,
    /// Written to `source.instance`.
    pub instance: Option<String>,
    /// Seals values for `SecretsMode::Encrypted`: derived from the salt key with
    /// `SealPurpose::ExportSecrets`.
    pub export_cipher: Option<SecretCipher>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "an encrypted export needs a salt key, and none is configured\nset SWITCHYARD_SALT_KEY"
    )]
    NoSaltKey,
    #[error("sealing the values of credential {0:?} failed")]
    Seal(String),
    #[error("stored {section} {id:?} does not fit the export document: {reason}")]
    Convert {
        section: Section,
        id: String,
        reason: String,
    },
}

/// Reads the store and builds the document.
pub async fn export(
    store: &dyn Store,
    config: Option<&Config>,
    opts: &ExportOptions,
) -> Result<StateDocument, ExportError> {
    let snapshot = store.read_state().await?;
    let mut spec = spec_of(&snapshot)?;
    spec.retain(&opts.include);
    if opts.secrets == SecretsMode::Encrypted {
        if let Some(creds) = &mut spec.credentials {
            let cipher = opts.export_cipher.as_ref().ok_or(ExportError::NoSaltKey)?;
            for c in creds.iter_mut() {
                let values = store
                    .credential_values(&c.credential_name)
                    .await?
                    .unwrap_or_default();
                c.values = values
                    .iter()
                    .map(|(field, v)| {
                        cipher
                            .seal_deterministic(
                                &seal_context(&c.credential_name, field),
                                v.expose_secret().as_bytes(),
                            )
                            .map(|sealed| {
                                (
                                    field.clone(),
                                    format!("{ENCRYPTED_PREFIX}{}", hex::encode(sealed)),
                                )
                            })
                            .map_err(|_| ExportError::Seal(c.credential_name.clone()))
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
    }
    Ok(StateDocument {
        schema_version: SCHEMA_VERSION,
        kind: KIND.to_owned(),
        source: Source {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instance: opts.instance.clone(),
        },
        secrets: opts.secrets,
        spec,
        config_file: config.map(config_section),
    })
}

/// The config file's models and global router settings, sorted by model id.
pub fn config_section(config: &Config) -> ConfigFileSection {
    let mut models: Vec<ConfigModel> = config
        .model_list
        .iter()
        .map(|d| ConfigModel {
            model_id: d.id.0.clone(),
            model_name: d.model_name.clone(),
        })
        .chain(config.unserved.iter().map(|u| ConfigModel {
            model_id: u.id.0.clone(),
            model_name: u.model_name.clone(),
        }))
        .collect();
    models.sort();
    ConfigFileSection {
        models,
        router_settings: config.router_settings.clone(),
    }
}

/// Every section of the snapshot as document objects, normalized, credential values
/// redacted (and passwords left out of model URLs).
pub fn spec_of(s: &StateSnapshot) -> Result<Spec, ExportError> {
    let models: Vec<_> = s
        .models
        .iter()
        .map(|m| m.spec.without_url_password())
        .collect();
    let mut spec = Spec {
        general_settings: Some(s.general_settings.clone()),
        router_settings: Some(s.router_settings.clone().unwrap_or_default()),
        models: Some(convert_all(
            models.iter().map(|m| (m.model_id.as_str(), m)),
        )?),
        credentials: Some(
            s.credentials
                .iter()
                .map(|c| CredentialDoc {
                    credential_name: c.credential_name.clone(),
                    credential_info: c.credential_info.clone(),
                    values: c
                        .value_names
                        .iter()
                        .map(|f| (f.clone(), redacted_placeholder(&c.credential_name, f)))
                        .collect(),
                })
                .collect(),
        ),
        organizations: Some(convert_all(
            s.organizations
                .iter()
                .map(|o| (o.spec.organization_id.as_str(), &o.spec)),
        )?),
        teams: Some(convert_all(
            s.teams.iter().map(|t| (t.spec.team_id.as_str(), &t.spec)),
        )?),
        users: Some(convert_all(
            s.users.iter().map(|u| (u.spec.user_id.as_str(), &u.spec)),
        )?),
        budgets: Some(convert_all(
            s.budgets
                .iter()
                .map(|b| (b.spec.budget_id.as_str(), &b.spec)),
        )?),
        keys: Some(convert_all(
            s.keys.iter().map(|k| (k.spec.public_id.as_str(), &k.spec)),
        )?),
        access_groups: Some(convert_all(
            s.access_groups.iter().map(|g| (g.name.as_str(), g)),
        )?),
        tags: Some(convert_all(s.tags.iter().map(|t| (t.name.as_str(), t)))?),
    };
    spec.normalize();
    Ok(spec)
}

fn convert_all<'a, S, D>(
    items: impl IntoIterator<Item = (&'a str, &'a S)>,
) -> Result<Vec<D>, ExportError>
where
    S: Serialize + 'a,
    D: DocObject,
{
    items
        .into_iter()
        .map(|(id, s)| {
            convert(s).map_err(|reason| ExportError::Convert {
                section: D::SECTION,
                id: id.to_owned(),
                reason,
            })
        })
        .collect()
}

/// Converts between a store spec and a document object through JSON: the field names are
/// shared, so a field one side lacks fails here instead of vanishing silently.
pub(crate) fn convert<S: Serialize, D: DeserializeOwned>(s: &S) -> Result<D, String> {
    let mut v = serde_json::to_value(s).map_err(|e| e.to_string())?;
    // Store specs write `null` for absent optional fields; documents omit them.
    if let serde_json::Value::Object(m) = &mut v {
        m.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

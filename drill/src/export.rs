//! `drill run --export FILE` / `gateway.export`: a Switchyard export (`kind: switchyard/state`)
//! read with located errors (exit 4), checked against the scenario and its config, and, in
//! embedded mode, imported into the in-process gateway the way `POST /config/import` does.
//! Exported keys carry no secret: each scenario key is regenerated after the import
//! (`POST /key/regenerate`, by public id), which mints a new secret and keeps every setting the
//! export gave the key.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context as _};
use serde_json::json;
use switchyard::config::Config;
use switchyard::state::schema::KeyDoc;
use switchyard::state::{ImportError, Section, StateDocument};

use crate::scenario::{Problem, Scenario, ScenarioError, Source};

/// Sections drill imports: everything but credentials (a redacted export holds placeholders
/// only, and the mocks' keys are set on the config's deployments) and runtime models (refused
/// by [`check`]).
const IMPORTED: [Section; 9] = [
    Section::GeneralSettings,
    Section::RouterSettings,
    Section::Organizations,
    Section::Teams,
    Section::Users,
    Section::Budgets,
    Section::Keys,
    Section::AccessGroups,
    Section::Tags,
];

/// An export as read: its text (imported as is) and its parsed document.
#[derive(Debug, Clone)]
pub struct Export {
    pub source: Source,
    pub doc: StateDocument,
}

/// Reads and parses an export with the gateway's own parser; a bad document is a problem
/// located at `file:line:column`.
pub fn load(path: &Path) -> Result<Export, ScenarioError> {
    let source = Source::read(path)?;
    match switchyard::state::parse_document(&source.text, switchyard::state::DEFAULT_MAX_BYTES) {
        Ok(doc) => Ok(Export { source, doc }),
        Err(e) => Err(ScenarioError {
            problems: vec![problem_of(&source, e)],
        }),
    }
}

fn problem_of(src: &Source, e: ImportError) -> Problem {
    let what = "not a Switchyard export this drill reads";
    match e {
        ImportError::Parse { location, message } => {
            // `line L, column C` or `line L, column C: key.path` (the parser's format).
            let (at, path) = location
                .split_once(": ")
                .map_or((location.as_str(), ""), |(a, p)| (a, p));
            let mut nums = at
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<usize>().ok());
            let location = match (nums.next(), nums.next()) {
                (Some(l), Some(c)) => Some((l, c)),
                _ => None,
            };
            Problem {
                file: src.file(),
                location,
                path: path.to_owned(),
                message: format!("{what}: {message}"),
            }
        }
        // The gateway's message says to upgrade switchyard to import it; here the drill reads it.
        ImportError::SchemaTooNew {
            document,
            supported,
        } => src.problem(
            "schema_version",
            format!(
                "{what}: schema_version {document} is newer than this drill reads \
                 ({supported}); run the drill of the Switchyard release that exported it"
            ),
        ),
        ImportError::SchemaUnsupported { .. } => {
            src.problem("schema_version", format!("{what}: {e}"))
        }
        ImportError::WrongKind { .. } => src.problem("kind", format!("{what}: {e}")),
        other => src.problem("", format!("{what}: {other}")),
    }
}

/// The exported key a scenario key stands for: the one whose `key_alias` is the scenario
/// key's `key_alias` (default: its name).
pub fn key_of<'a>(doc: &'a StateDocument, s: &Scenario, name: &str) -> Option<&'a KeyDoc> {
    let alias = s
        .traffic
        .keys
        .get(name)
        .and_then(|k| k.key_alias.clone())
        .unwrap_or_else(|| name.to_owned());
    doc.spec
        .keys
        .iter()
        .flatten()
        .find(|k| k.key_alias.as_deref() == Some(alias.as_str()))
}

/// Problems of running `s` with `export` over `config`: the scenario's keys must be exported
/// keys and leave their settings to the export; the export's config-file deployments must be
/// the config's; runtime models are not supported.
pub fn check(export: &Export, s: &Scenario, src: &Source, config: Option<&Config>) -> Vec<Problem> {
    let mut out = Vec::new();
    if !s.traffic.teams.is_empty() {
        out.push(src.problem(
            "traffic.teams",
            "with a gateway export the teams are the export's: remove traffic.teams",
        ));
    }
    let aliases: Vec<&str> = export
        .doc
        .spec
        .keys
        .iter()
        .flatten()
        .filter_map(|k| k.key_alias.as_deref())
        .collect();
    for (name, k) in &s.traffic.keys {
        if k.team.is_some() {
            out.push(src.problem(
                &format!("traffic.keys.{name}.team"),
                "with a gateway export a key's team is the export's: remove it",
            ));
        }
        if k.router_settings.is_some() {
            out.push(src.problem(
                &format!("traffic.keys.{name}.router_settings"),
                "with a gateway export a key's router settings are the export's: remove them",
            ));
        }
        if key_of(&export.doc, s, name).is_none() {
            out.push(src.problem(
                &format!("traffic.keys.{name}"),
                format!(
                    "the export {} has no key with key_alias {:?}\nits key aliases: {}",
                    export.source.file(),
                    k.key_alias.as_deref().unwrap_or(name),
                    aliases.join(", ")
                ),
            ));
        }
    }
    let runtime = export.doc.spec.models.as_ref().map_or(0, Vec::len);
    if runtime > 0 {
        out.push(export.source.problem(
            "spec.models",
            format!(
                "{runtime} runtime models: drill run drills config-file deployments only (mocks stand in for them); move them into the config"
            ),
        ));
    }
    if let (Some(cf), Some(c)) = (&export.doc.config_file, config) {
        for (i, m) in cf.models.iter().enumerate() {
            if !c.model_list.iter().any(|d| d.id.as_str() == m.model_id) {
                out.push(export.source.problem(
                    &format!("config_file.models[{i}]"),
                    format!(
                        "deployment {:?} is not in the gateway config: the export was taken beside another config",
                        m.model_id
                    ),
                ));
            }
        }
    }
    out
}

/// Imports `export` into the gateway at `url` (embedded mode) and regenerates every scenario
/// key; returns scenario key name → its new secret.
pub async fn import(
    client: &reqwest::Client,
    url: &str,
    master_key: &str,
    export: &Export,
    s: &Scenario,
) -> anyhow::Result<BTreeMap<String, String>> {
    let include: Vec<&str> = IMPORTED.iter().map(|x| x.as_str()).collect();
    let body = json!({"document": export.source.text, "include": include.join(",")});
    crate::harness::admin_post(client, url, master_key, "/config/import", &body)
        .await
        .with_context(|| format!("importing the export {}", export.source.file()))?;
    let mut keys = BTreeMap::new();
    for name in s.traffic.keys.keys() {
        let k = key_of(&export.doc, s, name)
            .ok_or_else(|| anyhow!("key {name} is not in the export"))?;
        let v = crate::harness::admin_post(
            client,
            url,
            master_key,
            "/key/regenerate",
            &json!({"key": k.public_id}),
        )
        .await
        .with_context(|| format!("regenerating exported key {name}"))?;
        keys.insert(
            name.clone(),
            crate::harness::secret_of(&v, "/key/regenerate")?,
        );
    }
    Ok(keys)
}

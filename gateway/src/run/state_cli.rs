//! `switchyard config export|import|diff`: each talks either to a live gateway over HTTP
//! (`--url`, master key) or to the store directly (`--database-url`). The document, plan and
//! diff logic is `state/`'s; this file only moves bytes and maps outcomes to exit codes
//! (0 ok / equal / clean, 1 invalid, conflicting or different, 2 usage or infrastructure).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::cli::{
    ConflictArg, DiffArgs, DocFormat, ExportArgs, ImportArgs, ReportFormat, SecretsArg, TargetArgs,
};
use crate::config::{self, Config, LoadOptions};
use crate::state::{self, ConflictMode, Format, ImportError, ImportPlan, Include, SecretsMode};
use crate::store::{self, Actor, SealPurpose, SecretCipher, Store, StoreOptions};

/// An outcome other than success: exit code and message.
pub(crate) struct Failure(u8, String);

fn usage(msg: impl Into<String>) -> Failure {
    Failure(2, msg.into())
}

fn invalid(msg: impl Into<String>) -> Failure {
    Failure(1, msg.into())
}

pub(crate) fn finish(r: Result<(), Failure>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// How long one HTTP call to a gateway may take (a 10,000-key import takes about a second).
const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

fn http() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| usage(format!("cannot build the HTTP client: {e}")))
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn authed(req: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => req.bearer_auth(k),
        None => req,
    }
}

/// The salt-derived cipher for export secrets, from `$SWITCHYARD_SALT_KEY`.
fn export_cipher(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<SecretCipher>, Failure> {
    env("SWITCHYARD_SALT_KEY")
        .filter(|s| !s.is_empty())
        .map(|s| SecretCipher::derive(&SecretString::from(s), SealPurpose::ExportSecrets))
        .transpose()
        .map_err(|e| usage(format!("SWITCHYARD_SALT_KEY: {e}")))
}

/// Opens the store and, if given, the config file.
async fn open_direct(
    t: &TargetArgs,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn Store>, Option<Config>), Failure> {
    let config = match &t.config {
        Some(path) => Some(
            config::load_file(path, env, &LoadOptions { strict: false })
                .map_err(|e| usage(format!("{e}")))?
                .config,
        ),
        None => None,
    };
    let mut options = StoreOptions::default();
    if let Some(salt) = env("SWITCHYARD_SALT_KEY").filter(|s| !s.is_empty()) {
        let c = SecretCipher::for_credentials(&SecretString::from(salt))
            .map_err(|e| usage(format!("SWITCHYARD_SALT_KEY: {e}")))?;
        options = options.with_cipher(c);
    }
    let store = store::connect_with(url, options)
        .await
        .map_err(|e| usage(format!("cannot open the store: {e}")))?;
    Ok((store, config))
}

async fn http_error(resp: reqwest::Response) -> Failure {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let msg = body["error"]["message"]
        .as_str()
        .map_or_else(|| format!("gateway answered {status}"), str::to_owned);
    if status.is_client_error() && status != reqwest::StatusCode::UNAUTHORIZED {
        invalid(msg)
    } else {
        usage(msg)
    }
}

// ---------------------------------------------------------------------------------------
// export

pub(crate) async fn export(
    a: ExportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Failure> {
    let format = match a.format {
        DocFormat::Yaml => Format::Yaml,
        DocFormat::Json => Format::Json,
    };
    let secrets = match a.secrets {
        SecretsArg::Redacted => SecretsMode::Redacted,
        SecretsArg::Encrypted => SecretsMode::Encrypted,
    };
    let include = Include::parse(a.include.as_deref().unwrap_or_default()).map_err(usage)?;
    let text = if let Some(url) = &a.target.url {
        let mut query = vec![
            ("format", format_name(format).to_owned()),
            ("secrets", secrets.as_str().to_owned()),
        ];
        if let Some(i) = &a.include {
            query.push(("include", i.clone()));
        }
        if let Some(i) = &a.instance {
            query.push(("instance", i.clone()));
        }
        let resp = authed(
            http()?.get(format!("{}/config/export", base(url))),
            a.target.master_key.as_deref(),
        )
        .query(&query)
        .send()
        .await
        .map_err(|e| usage(format!("cannot reach {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(http_error(resp).await);
        }
        resp.text()
            .await
            .map_err(|e| usage(format!("reading the export from {url}: {e}")))?
    } else {
        let url = a.target.database_url.clone().unwrap_or_default();
        let (store, config) = open_direct(&a.target, &url, env).await?;
        let opts = state::ExportOptions {
            secrets,
            include,
            instance: a.instance.clone(),
            export_cipher: export_cipher(env)?,
        };
        let doc = state::export(store.as_ref(), config.as_ref(), &opts).await;
        store.close().await;
        doc.map_err(|e| usage(e.to_string()))?.render(format)
    };
    match &a.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| usage(format!("cannot write {}: {e}", path.display()))),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
    }
}

// ---------------------------------------------------------------------------------------
// import

pub(crate) async fn import(
    a: ImportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| usage(format!("cannot read {}: {e}", a.file.display())))?;
    let mut bindings: BTreeMap<String, SecretString> = BTreeMap::new();
    for b in &a.bind_secret {
        let (name, var) = b.split_once('=').ok_or_else(|| {
            usage(format!(
                "--bind-secret {b:?}: expected CREDENTIAL/FIELD=ENV_VAR"
            ))
        })?;
        let name = name.trim_start_matches("credentials/");
        let value = env(var).ok_or_else(|| {
            usage(format!(
                "--bind-secret {name}: environment variable {var} is not set"
            ))
        })?;
        bindings.insert(name.to_owned(), SecretString::from(value));
    }
    let changed_by = match &a.changed_by {
        Some(raw) => crate::admin::changed_by_name(raw)
            .map_err(|why| usage(format!("--changed-by: {why}")))?,
        None => None,
    };
    let on_conflict = match a.on_conflict {
        ConflictArg::Skip => ConflictMode::Skip,
        ConflictArg::Replace => ConflictMode::Replace,
        ConflictArg::Merge => ConflictMode::Merge,
    };
    let include = Include::parse(a.include.as_deref().unwrap_or_default()).map_err(usage)?;
    let (plan, applied) = if let Some(url) = &a.target.url {
        use secrecy::ExposeSecret;
        let exposed: BTreeMap<&str, &str> = bindings
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let body = json!({
            "document": text,
            "dry_run": a.dry_run,
            "on_conflict": on_conflict,
            "include": a.include,
            "bind_secrets": exposed,
        });
        let mut req = authed(
            http()?.post(format!("{}/config/import", base(url))),
            a.target.master_key.as_deref(),
        );
        if let Some(name) = &changed_by {
            req = req.header("litellm-changed-by", name);
        }
        let resp = req
            .json(&body)
            .send()
            .await
            .map_err(|e| usage(format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| usage(format!("reading the plan from {url}: {e}")))?;
            let plan: ImportPlan = serde_json::from_value(v["plan"].clone())
                .map_err(|e| usage(format!("the gateway's plan is not understood: {e}")))?;
            (plan, v["applied"].as_bool().unwrap_or(false))
        } else {
            return Err(http_error(resp).await);
        }
    } else {
        let url = a.target.database_url.clone().unwrap_or_default();
        let doc = state::parse_document(&text, state::DEFAULT_MAX_BYTES)
            .map_err(|e| invalid(format!("{}: {e}", a.file.display())))?;
        let (store, config) = open_direct(&a.target, &url, env).await?;
        let opts = state::ImportOptions {
            on_conflict,
            include,
            bindings,
            export_cipher: export_cipher(env)?,
        };
        let result = async {
            let plan = state::plan(store.as_ref(), config.as_ref(), doc, &opts).await?;
            let applied = if a.dry_run || !plan.is_clean() {
                false
            } else {
                let actor = changed_by.as_deref().map_or_else(Actor::import, Actor::new);
                state::apply(store.as_ref(), &actor, &plan).await?;
                !plan.is_noop()
            };
            Ok::<_, ImportError>((plan, applied))
        }
        .await;
        store.close().await;
        result.map_err(|e| match e {
            ImportError::Store(e) => usage(e.to_string()),
            other => invalid(format!("{}: {other}", a.file.display())),
        })?
    };
    match a.format {
        ReportFormat::Text => {
            print!("{}", plan.render());
            if applied {
                println!("applied");
            } else if a.dry_run {
                println!("dry run: nothing changed");
            }
        }
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"applied": applied, "clean": plan.is_clean(), "plan": plan})
            )
            .unwrap_or_default()
        ),
    }
    if plan.is_clean() {
        Ok(())
    } else {
        Err(invalid(format!(
            "the plan has {} conflicts; nothing was changed",
            plan.summary.conflict
        )))
    }
}

// ---------------------------------------------------------------------------------------
// diff

async fn snapshot(side: &str, key: Option<&str>) -> Result<state::StateDocument, Failure> {
    let text = if side.starts_with("http://") || side.starts_with("https://") {
        let resp = authed(http()?.get(format!("{}/config/export", base(side))), key)
            .query(&[("format", "json")])
            .send()
            .await
            .map_err(|e| usage(format!("cannot reach {side}: {e}")))?;
        if !resp.status().is_success() {
            let Failure(_, msg) = http_error(resp).await;
            return Err(usage(format!("{side}: {msg}")));
        }
        resp.text()
            .await
            .map_err(|e| usage(format!("reading the export from {side}: {e}")))?
    } else {
        std::fs::read_to_string(side).map_err(|e| usage(format!("cannot read {side}: {e}")))?
    };
    state::parse_document(&text, state::DEFAULT_MAX_BYTES)
        .map_err(|e| usage(format!("{side}: {e}")))
}

pub(crate) async fn diff(a: DiffArgs) -> Result<(), Failure> {
    let key = a.master_key.as_deref();
    let da = snapshot(&a.a, key).await?;
    let db = snapshot(&a.b, key).await?;
    let d = state::diff(&da, &db);
    match a.format {
        ReportFormat::Text => print!("{}", d.render()),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"equal": d.is_empty(), "entries": d.entries}))
                .unwrap_or_default()
        ),
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(Failure(1, String::new()))
    }
}

//! Export, import and diff of admin-managed state (issue 5), on SQLite and PostgreSQL: byte-
//! identical round trips (also across backends), no-op re-imports, conflict modes,
//! `include`, all-or-nothing apply, secrets, bad input, random states, the HTTP routes with
//! key-cache invalidation, and the CLI's exit codes.
//!
//! PostgreSQL variants run when `SWITCHYARD_TEST_POSTGRES_URL` is set; each store gets a
//! schema of its own, dropped at the end even when the test fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor;
use switchyard::config::{FallbackRule, RouterSettings};
use switchyard::state::import::Action;
use switchyard::state::{
    self, ConflictMode, Format, ImportError, ImportOptions, Include, SecretsMode, Section,
    StateDocument,
};
use switchyard::store::keys::{self, KeyPrefix};
use switchyard::store::*;

const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const SALT: &str = "state-test-salt-key";
const UPSTREAM_SECRET: &str = "sk-upstream-SEEDED-9f8e7d6c5b4a";
const SECOND_SECRET: &str = "azure-SEEDED-secret-0a1b2c3d";

fn store_options(salt: &str) -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    }
    .with_cipher(SecretCipher::for_credentials(&SecretString::from(salt.to_owned())).unwrap())
}

fn export_cipher(salt: &str) -> SecretCipher {
    SecretCipher::derive(
        &SecretString::from(salt.to_owned()),
        SealPurpose::ExportSecrets,
    )
    .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Makes empty stores of either backend for one test and drops them afterwards.
struct Stores {
    pg: Option<(String, PgPool)>,
    schemas: Mutex<Vec<String>>,
    opened: Mutex<Vec<Arc<dyn Store>>>,
}

impl Stores {
    async fn new() -> Stores {
        let pg = match std::env::var(POSTGRES_ENV) {
            Ok(url) => {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .expect("connect to SWITCHYARD_TEST_POSTGRES_URL");
                Some((url, admin))
            }
            Err(_) => None,
        };
        Stores {
            pg,
            schemas: Mutex::new(Vec::new()),
            opened: Mutex::new(Vec::new()),
        }
    }

    fn has_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// A new empty store.
    async fn fresh(&self, backend: Backend) -> Arc<dyn Store> {
        self.fresh_with(backend, SALT).await
    }

    async fn fresh_with(&self, backend: Backend, salt: &str) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => Arc::new(
                SqliteStore::connect("sqlite::memory:", store_options(salt))
                    .await
                    .unwrap(),
            ),
            Backend::Postgres => {
                let (url, admin) = self.pg.as_ref().expect("postgres configured");
                let schema = format!("sy_state_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
                    .await
                    .unwrap();
                self.schemas.lock().unwrap().push(schema.clone());
                let pool =
                    switchyard::store::pool_options::<sqlx::Postgres>(4, Duration::from_secs(30))
                        .after_connect(move |conn, _| {
                            let set = format!("SET search_path TO \"{schema}\"");
                            Box::pin(async move {
                                conn.execute(set.as_str()).await?;
                                Ok(())
                            })
                        })
                        .connect(url)
                        .await
                        .unwrap();
                Arc::new(PgStore::open(pool, store_options(salt)).await.unwrap())
            }
        };
        self.opened.lock().unwrap().push(store.clone());
        store
    }

    async fn cleanup(self) {
        let opened = std::mem::take(&mut *self.opened.lock().unwrap());
        for s in opened {
            s.close().await;
        }
        if let Some((_, admin)) = &self.pg {
            let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
            for schema in schemas {
                admin
                    .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
                    .await
                    .unwrap();
            }
            admin.close().await;
        }
    }
}

async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<Stores>, Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    let stores = Arc::new(Stores::new().await);
    if backend == Backend::Postgres && !stores.has_postgres() {
        eprintln!("skipped: postgres ({POSTGRES_ENV} not set)");
        return;
    }
    let result = AssertUnwindSafe(tokio::time::timeout(
        TEST_TIMEOUT,
        body(stores.clone(), backend),
    ))
    .catch_unwind()
    .await;
    if let Ok(stores) = Arc::try_unwrap(stores) {
        stores.cleanup().await;
    }
    match result {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("test timed out"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

macro_rules! state_test {
    ($($name:ident),* $(,)?) => {
        $(paste::paste! {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _sqlite>]() {
                run(Backend::Sqlite, $name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _postgres>]() {
                run(Backend::Postgres, $name).await
            }
        })*
    };
}

state_test!(
    round_trip_is_byte_identical_and_reimport_is_a_noop,
    conflict_modes_behave_as_documented,
    alias_held_by_another_key_is_a_conflict_and_nothing_is_written,
    include_imports_only_the_named_sections,
    failure_injected_mid_apply_leaves_target_unchanged,
    redacted_export_holds_no_secret_material,
    encrypted_secrets_need_the_right_salt,
    redacted_secrets_keep_existing_values_or_must_be_bound,
    invalid_documents_are_refused_with_every_problem_and_change_nothing,
);

fn actor() -> Actor {
    Actor::new("test")
}

fn obj(v: serde_json::Value) -> JsonObject {
    serde_json::from_value(v).unwrap()
}

fn fallbacks(group: &str, targets: &[&str]) -> RouterSettings {
    RouterSettings {
        fallbacks: Some(vec![FallbackRule {
            group: group.into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }]),
        num_retries: Some(1),
        ..Default::default()
    }
}

fn new_key(alias: &str) -> (SecretString, KeySpec) {
    let g = keys::generate(&KeyPrefix::default());
    let mut spec = KeySpec::new(g.public_id, g.hash);
    spec.key_alias = Some(alias.into());
    (g.key, spec)
}

/// Every entity type, with key- and team-level router settings and two encrypted
/// credentials. Fallback targets are runtime model groups.
fn every_kind() -> StateChanges {
    let mut c = StateChanges::default();
    let u = &mut c.upsert;
    u.general_settings
        .insert("max_request_body_bytes".into(), json!(2048));
    u.general_settings
        .insert("ui_theme".into(), json!({"z": 1, "a": [1, 2]}));
    u.router_settings = Some(fallbacks("gpt-rt", &["claude-rt"]));
    u.budgets = vec![BudgetSpec {
        max_budget: Usd::from_dollars(1000.0),
        budget_duration: Some("30d".into()),
        rpm_limit: Some(100),
        ..BudgetSpec::new("org-budget")
    }];
    u.credentials = vec![
        CredentialUpsert {
            credential_name: "openai-prod".into(),
            credential_info: obj(json!({"custom_llm_provider": "openai"})),
            values: Some(
                [("api_key".to_owned(), SecretString::from(UPSTREAM_SECRET))]
                    .into_iter()
                    .collect(),
            ),
        },
        CredentialUpsert {
            credential_name: "azure-east".into(),
            credential_info: JsonObject::new(),
            values: Some(
                [
                    ("api_key".to_owned(), SecretString::from(SECOND_SECRET)),
                    ("api_version".to_owned(), SecretString::from("2024-06-01")),
                ]
                .into_iter()
                .collect(),
            ),
        },
    ];
    u.models = vec![
        ModelSpec {
            model_id: "gpt-rt-east".into(),
            model_name: "gpt-rt".into(),
            litellm_params: obj(json!({"model": "openai/gpt-4o", "rpm": 60})),
            credential_name: Some("openai-prod".into()),
            model_info: obj(json!({"mode": "chat"})),
        },
        ModelSpec {
            model_id: "claude-rt-1".into(),
            model_name: "claude-rt".into(),
            litellm_params: obj(json!({"model": "anthropic/claude"})),
            credential_name: Some("azure-east".into()),
            model_info: JsonObject::new(),
        },
    ];
    let mut org = OrganizationSpec::new("org", "Org");
    org.budget_id = Some("org-budget".into());
    org.models = vec!["gpt-rt".into()];
    org.metadata = obj(json!({"cost_center": 42}));
    u.organizations = vec![org];
    u.users = vec![
        UserSpec {
            user_email: Some("alice@example.com".into()),
            user_role: UserRole::ProxyAdmin,
            max_budget: Usd::from_dollars(12.5),
            ..UserSpec::new("alice")
        },
        UserSpec::new("bob"),
    ];
    let mut team = TeamSpec::new("search");
    team.team_alias = Some("Search".into());
    team.organization_id = Some("org".into());
    team.models = vec!["gpt-rt".into(), "claude-rt".into()];
    team.max_budget = Usd::from_dollars(50.25);
    team.budget_duration = Some("1mo".into());
    team.tpm_limit = Some(100_000);
    team.router_settings = Some(fallbacks("gpt-rt", &["claude-rt"]));
    team.members = vec![
        TeamMember::new("alice", TeamRole::Admin),
        TeamMember::new("bob", TeamRole::User),
    ];
    u.teams = vec![team, TeamSpec::new("empty-team")];
    let (_, mut k1) = new_key("search-prod");
    k1.team_id = Some("search".into());
    k1.user_id = Some("alice".into());
    k1.models = vec!["gpt-rt".into()];
    k1.rpm_limit = Some(10);
    k1.max_parallel_requests = Some(2);
    k1.expires_at = Some("2031-01-02T03:04:05.123456Z".parse().unwrap());
    k1.metadata = obj(json!({"b": 1, "a": [3, {"y": 1, "x": 2}]}));
    k1.tags = vec!["prod".into()];
    k1.aliases = [("gpt-4".to_owned(), "gpt-rt".to_owned())].into();
    k1.router_settings = Some(RouterSettings {
        fallbacks: Some(vec![]),
        ..Default::default()
    });
    let (_, mut k2) = new_key("search-dev");
    k2.team_id = Some("search".into());
    k2.blocked = true;
    k2.router_settings = Some(fallbacks("claude-rt", &["gpt-rt"]));
    let (_, k3) = new_key("lonely");
    u.keys = vec![k1, k2, k3];
    u.access_groups = vec![AccessGroup {
        name: "beta".into(),
        models: vec!["gpt-rt".into()],
    }];
    u.tags = vec![Tag {
        name: "prod".into(),
        description: Some("production traffic".into()),
        models: vec!["gpt-rt".into()],
        metadata: obj(json!({"owner": "sre"})),
    }];
    c
}

/// Objects in `every_kind`: 2 settings, router settings, budget, 2 credentials, 2 models,
/// org, 2 users, 2 teams, 3 keys, access group, tag.
const EVERY_KIND_OBJECTS: usize = 18;

async fn seed(s: &dyn Store) {
    s.apply_state(&actor(), &every_kind()).await.unwrap();
}

fn opts(secrets: SecretsMode) -> state::ExportOptions {
    state::ExportOptions {
        secrets,
        export_cipher: Some(export_cipher(SALT)),
        ..Default::default()
    }
}

async fn export_text(s: &dyn Store, secrets: SecretsMode, format: Format) -> String {
    state::export(s, None, &opts(secrets))
        .await
        .unwrap()
        .render(format)
}

fn import_opts() -> ImportOptions {
    ImportOptions {
        export_cipher: Some(export_cipher(SALT)),
        ..Default::default()
    }
}

async fn import_text(s: &dyn Store, text: &str, o: &ImportOptions) -> state::ImportPlan {
    let doc = state::parse_document(text, state::DEFAULT_MAX_BYTES).unwrap();
    let plan = state::plan(s, None, doc, o).await.unwrap();
    state::apply(s, &Actor::new("import"), &plan).await.unwrap();
    plan
}

async fn round_trip_is_byte_identical_and_reimport_is_a_noop(stores: Arc<Stores>, b: Backend) {
    let source = stores.fresh(b).await;
    seed(source.as_ref()).await;
    for format in [Format::Yaml, Format::Json] {
        let first = export_text(source.as_ref(), SecretsMode::Encrypted, format).await;
        assert_eq!(
            export_text(source.as_ref(), SecretsMode::Encrypted, format).await,
            first,
            "two exports of unchanged state differ"
        );
        let target = stores.fresh(b).await;
        let plan = import_text(target.as_ref(), &first, &import_opts()).await;
        assert_eq!(plan.summary.create, EVERY_KIND_OBJECTS, "{}", plan.render());
        assert_eq!(
            export_text(target.as_ref(), SecretsMode::Encrypted, format).await,
            first
        );
        // Credentials arrived in clear, re-sealed at rest with the target's key.
        assert_eq!(
            target
                .credential_values("azure-east")
                .await
                .unwrap()
                .unwrap()["api_key"]
                .expose_secret(),
            SECOND_SECRET
        );
        // Importing the same document again plans nothing.
        let doc = state::parse_document(&first, state::DEFAULT_MAX_BYTES).unwrap();
        let again = state::plan(target.as_ref(), None, doc, &import_opts())
            .await
            .unwrap();
        assert!(again.is_noop() && again.is_clean(), "{}", again.render());
        assert_eq!(again.summary.unchanged, EVERY_KIND_OBJECTS);
        assert!(again.objects.is_empty());
        // Redacted re-import keeps the stored values: also a no-op.
        let redacted = export_text(source.as_ref(), SecretsMode::Redacted, format).await;
        let doc = state::parse_document(&redacted, state::DEFAULT_MAX_BYTES).unwrap();
        let plan = state::plan(target.as_ref(), None, doc, &import_opts())
            .await
            .unwrap();
        assert!(plan.is_noop(), "{}", plan.render());
    }

    // Across backends: SQLite -> PostgreSQL -> SQLite, byte-identical all the way.
    if stores.has_postgres() {
        let other = match b {
            Backend::Sqlite => Backend::Postgres,
            Backend::Postgres => Backend::Sqlite,
        };
        let first = export_text(source.as_ref(), SecretsMode::Encrypted, Format::Yaml).await;
        let there = stores.fresh(other).await;
        import_text(there.as_ref(), &first, &import_opts()).await;
        let second = export_text(there.as_ref(), SecretsMode::Encrypted, Format::Yaml).await;
        assert_eq!(second, first, "{b:?} -> {other:?} changed the export");
        let back = stores.fresh(b).await;
        import_text(back.as_ref(), &second, &import_opts()).await;
        assert_eq!(
            export_text(back.as_ref(), SecretsMode::Encrypted, Format::Yaml).await,
            first
        );
    }
}

/// A document with team `search` changed: rpm 20, metadata {b: 2}, no max_budget, no alias.
fn changed_team_doc(base: &StateDocument) -> StateDocument {
    let mut doc = base.clone();
    let teams = doc.spec.teams.as_mut().unwrap();
    let t = teams.iter_mut().find(|t| t.team_id == "search").unwrap();
    t.rpm_limit = Some(20);
    t.metadata = obj(json!({"b": 2}));
    t.max_budget = None;
    doc.spec.retain(&Include::only([Section::Teams]));
    doc
}

async fn conflict_modes_behave_as_documented(stores: Arc<Stores>, b: Backend) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    let patch = TeamPatch {
        metadata: Some(obj(json!({"a": 1}))),
        ..Default::default()
    };
    s.update_team(&actor(), "search", &patch).await.unwrap();
    let base = state::export(s.as_ref(), None, &opts(SecretsMode::Redacted))
        .await
        .unwrap();
    let doc = changed_team_doc(&base);
    let team = |s: Arc<dyn Store>| async move { s.team("search").await.unwrap().unwrap().spec };
    let before = team(s.clone()).await;

    // skip: reported, not written.
    let o = ImportOptions {
        on_conflict: ConflictMode::Skip,
        ..import_opts()
    };
    let plan = state::plan(s.as_ref(), None, doc.clone(), &o)
        .await
        .unwrap();
    assert_eq!(plan.summary.skip, 1, "{}", plan.render());
    assert_eq!(plan.summary.unchanged, 1); // empty-team
    assert!(plan.is_clean());
    let fields: Vec<&str> = plan.objects[0]
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(fields, ["max_budget", "metadata", "rpm_limit"]);
    state::apply(s.as_ref(), &actor(), &plan).await.unwrap();
    assert_eq!(team(s.clone()).await, before);

    // merge: the document's fields win, fields it leaves out and other metadata keys stay.
    let o = ImportOptions {
        on_conflict: ConflictMode::Merge,
        ..import_opts()
    };
    let plan = state::plan(s.as_ref(), None, doc.clone(), &o)
        .await
        .unwrap();
    assert_eq!(plan.summary.update, 1, "{}", plan.render());
    state::apply(s.as_ref(), &actor(), &plan).await.unwrap();
    let merged = team(s.clone()).await;
    assert_eq!(merged.rpm_limit, Some(20));
    assert_eq!(merged.max_budget, before.max_budget);
    assert_eq!(merged.metadata, obj(json!({"a": 1, "b": 2})));

    // replace (the default): the document's object exactly.
    let plan = state::plan(s.as_ref(), None, doc.clone(), &import_opts())
        .await
        .unwrap();
    assert_eq!(plan.summary.update, 1, "{}", plan.render());
    state::apply(s.as_ref(), &actor(), &plan).await.unwrap();
    let replaced = team(s.clone()).await;
    assert_eq!(replaced.rpm_limit, Some(20));
    assert_eq!(replaced.max_budget, None);
    assert_eq!(replaced.metadata, obj(json!({"b": 2})));
    assert_eq!(replaced.members, before.members);

    // Every applied change is in the audit log under the import's actor.
    let audit = s
        .audit_log(
            &AuditFilter {
                object_id: Some("search".into()),
                actor: Some("test".into()),
                ..Default::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert!(audit.items.iter().filter(|e| e.action == "update").count() >= 3);
}

async fn alias_held_by_another_key_is_a_conflict_and_nothing_is_written(
    stores: Arc<Stores>,
    b: Backend,
) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    let before = s.read_state().await.unwrap();
    let mut doc = state::export(s.as_ref(), None, &opts(SecretsMode::Redacted))
        .await
        .unwrap();
    doc.spec
        .retain(&Include::only([Section::Keys, Section::Teams]));
    // A new key (new public id) that takes an existing key's alias, plus a harmless new team.
    let (_, k) = new_key("search-prod");
    let mut kd = doc.spec.keys.as_ref().unwrap()[0].clone();
    kd.public_id = k.public_id.to_string();
    kd.token_hash = k.token_hash.as_str().to_owned();
    kd.key_alias = Some("search-prod".into());
    kd.team_id = None;
    kd.user_id = None;
    doc.spec.keys.as_mut().unwrap().push(kd);
    let mut nt = doc.spec.teams.as_ref().unwrap()[0].clone();
    nt.team_id = "new-team".into();
    nt.team_alias = None;
    doc.spec.teams.as_mut().unwrap().push(nt);
    doc.spec.normalize();
    let plan = state::plan(s.as_ref(), None, doc, &import_opts())
        .await
        .unwrap();
    assert!(!plan.is_clean());
    assert_eq!(plan.summary.conflict, 1, "{}", plan.render());
    let conflict = plan
        .objects
        .iter()
        .find(|o| o.action == Action::Conflict)
        .unwrap();
    assert_eq!(conflict.id, k.public_id.to_string());
    assert!(conflict.reason.as_ref().unwrap().contains("search-prod"));
    assert!(plan.render().contains("! keys/"));
    assert!(matches!(
        state::apply(s.as_ref(), &actor(), &plan).await,
        Err(ImportError::NotClean(1))
    ));
    assert_eq!(s.read_state().await.unwrap(), before);
}

async fn include_imports_only_the_named_sections(stores: Arc<Stores>, b: Backend) {
    let source = stores.fresh(b).await;
    seed(source.as_ref()).await;
    let text = export_text(source.as_ref(), SecretsMode::Encrypted, Format::Yaml).await;
    let target = stores.fresh(b).await;
    let o = ImportOptions {
        include: Include::parse("budgets,users,tags").unwrap(),
        ..import_opts()
    };
    let plan = import_text(target.as_ref(), &text, &o).await;
    assert_eq!(plan.summary.create, 4, "{}", plan.render());
    let after = target.read_state().await.unwrap();
    assert_eq!(after.budgets.len(), 1);
    assert_eq!(after.users.len(), 2);
    assert_eq!(after.tags.len(), 1);
    assert!(after.teams.is_empty() && after.keys.is_empty() && after.models.is_empty());
    assert!(after.general_settings.is_empty() && after.router_settings.is_none());

    // An export with --include has only those sections, and an import of it touches only
    // them: the target's keys stay even though the document lists none.
    let only_tags = state::export(
        source.as_ref(),
        None,
        &state::ExportOptions {
            include: Include::parse("tags").unwrap(),
            ..opts(SecretsMode::Redacted)
        },
    )
    .await
    .unwrap();
    assert!(only_tags.spec.keys.is_none() && only_tags.spec.tags.is_some());
    let text = only_tags.render(Format::Yaml);
    assert!(!text.contains("keys:"), "{text}");
}

async fn failure_injected_mid_apply_leaves_target_unchanged(stores: Arc<Stores>, b: Backend) {
    let source = stores.fresh(b).await;
    seed(source.as_ref()).await;
    let text = export_text(source.as_ref(), SecretsMode::Encrypted, Format::Yaml).await;
    let target = stores.fresh(b).await;
    let doc = state::parse_document(&text, state::DEFAULT_MAX_BYTES).unwrap();
    let plan = state::plan(target.as_ref(), None, doc, &import_opts())
        .await
        .unwrap();
    assert!(plan.is_clean());
    // Between plan and apply, another admin creates a key holding the token hash of the last
    // key in the plan: the last upserted statement violates a unique constraint.
    let last = source
        .read_state()
        .await
        .unwrap()
        .keys
        .last()
        .unwrap()
        .spec
        .clone();
    let mut intruder = KeySpec::new(keys::PublicId::random(), last.token_hash.clone());
    intruder.key_alias = Some("intruder".into());
    target.insert_key(&actor(), &intruder).await.unwrap();
    let before = target.read_state().await.unwrap();
    let audit_before = target
        .audit_log(&AuditFilter::default(), Page::new(1000, 0))
        .await
        .unwrap()
        .total;
    let err = state::apply(target.as_ref(), &actor(), &plan)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::Store(StoreError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(target.read_state().await.unwrap(), before);
    assert_eq!(
        target
            .audit_log(&AuditFilter::default(), Page::new(1000, 0))
            .await
            .unwrap()
            .total,
        audit_before
    );
}

async fn redacted_export_holds_no_secret_material(stores: Arc<Stores>, b: Backend) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    for format in [Format::Yaml, Format::Json] {
        let redacted = export_text(s.as_ref(), SecretsMode::Redacted, format).await;
        let encrypted = export_text(s.as_ref(), SecretsMode::Encrypted, format).await;
        for text in [&redacted, &encrypted] {
            for secret in [UPSTREAM_SECRET, SECOND_SECRET, "2024-06-01", SALT] {
                assert!(!text.contains(secret), "{secret} leaked:\n{text}");
            }
        }
        assert!(redacted.contains("<redacted:credentials/openai-prod/api_key>"));
        assert!(redacted.contains("<redacted:credentials/azure-east/api_version>"));
        assert!(encrypted.contains("encrypted:v1:"));
        assert!(!redacted.contains("encrypted:v1:"));
    }
    let doc = state::export(s.as_ref(), None, &opts(SecretsMode::Redacted))
        .await
        .unwrap();
    assert_eq!(doc.schema_version, 1);
    assert_eq!(doc.kind, "switchyard/state");
    assert_eq!(doc.secrets, SecretsMode::Redacted);
}

async fn encrypted_secrets_need_the_right_salt(stores: Arc<Stores>, b: Backend) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    let text = export_text(s.as_ref(), SecretsMode::Encrypted, Format::Yaml).await;
    // Another environment, another salt: refused, nothing written.
    let target = stores.fresh_with(b, "another-salt").await;
    let doc = state::parse_document(&text, state::DEFAULT_MAX_BYTES).unwrap();
    let wrong = ImportOptions {
        export_cipher: Some(export_cipher("another-salt")),
        ..Default::default()
    };
    let err = state::plan(target.as_ref(), None, doc.clone(), &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::WrongSalt(_)), "{err}");
    assert!(err.to_string().contains("salt key"));
    assert!(target.read_state().await.unwrap().credentials.is_empty());
    // No salt at all: a clear refusal.
    let err = state::plan(
        target.as_ref(),
        None,
        doc.clone(),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImportError::NoSaltKey), "{err}");
    // The right salt: works, even though the target's at-rest key differs.
    let right = stores.fresh_with(b, "at-rest-differs").await;
    let plan = state::plan(right.as_ref(), None, doc, &import_opts())
        .await
        .unwrap();
    state::apply(right.as_ref(), &actor(), &plan).await.unwrap();
    assert_eq!(
        right
            .credential_values("openai-prod")
            .await
            .unwrap()
            .unwrap()["api_key"]
            .expose_secret(),
        UPSTREAM_SECRET
    );
}

async fn redacted_secrets_keep_existing_values_or_must_be_bound(stores: Arc<Stores>, b: Backend) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    let text = export_text(s.as_ref(), SecretsMode::Redacted, Format::Yaml).await;
    let doc = state::parse_document(&text, state::DEFAULT_MAX_BYTES).unwrap();

    // Into an empty target: every placeholder must be bound; the error lists them all.
    let empty = stores.fresh(b).await;
    let err = state::plan(empty.as_ref(), None, doc.clone(), &import_opts())
        .await
        .unwrap_err();
    match &err {
        ImportError::Unbound(names) => assert_eq!(
            names,
            &[
                "azure-east/api_key",
                "azure-east/api_version",
                "openai-prod/api_key"
            ]
        ),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("--bind-secret"));
    // Bound: imported with the bound values.
    let bound = ImportOptions {
        bindings: [
            ("azure-east/api_key", "bound-azure"),
            ("azure-east/api_version", "v9"),
            ("openai-prod/api_key", "bound-openai"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
        .collect(),
        ..import_opts()
    };
    let plan = state::plan(empty.as_ref(), None, doc.clone(), &bound)
        .await
        .unwrap();
    state::apply(empty.as_ref(), &actor(), &plan).await.unwrap();
    assert_eq!(
        empty
            .credential_values("openai-prod")
            .await
            .unwrap()
            .unwrap()["api_key"]
            .expose_secret(),
        "bound-openai"
    );
    // Binding one value of a stored credential changes only that value.
    let one = ImportOptions {
        bindings: [(
            "openai-prod/api_key".to_owned(),
            SecretString::from("rotated"),
        )]
        .into(),
        ..import_opts()
    };
    let plan = state::plan(s.as_ref(), None, doc, &one).await.unwrap();
    assert_eq!(plan.summary.update, 1, "{}", plan.render());
    let rendered = plan.render();
    assert!(!rendered.contains("rotated") && !rendered.contains(UPSTREAM_SECRET));
    state::apply(s.as_ref(), &actor(), &plan).await.unwrap();
    let v = s.credential_values("openai-prod").await.unwrap().unwrap();
    assert_eq!(v["api_key"].expose_secret(), "rotated");
}

async fn invalid_documents_are_refused_with_every_problem_and_change_nothing(
    stores: Arc<Stores>,
    b: Backend,
) {
    let s = stores.fresh(b).await;
    seed(s.as_ref()).await;
    let before = s.read_state().await.unwrap();
    let base = state::export(s.as_ref(), None, &opts(SecretsMode::Redacted))
        .await
        .unwrap();

    // Several problems at once: all reported.
    let mut doc = base.clone();
    let keys = doc.spec.keys.as_mut().unwrap();
    keys[0].team_id = Some("no-such-team".into());
    let dup = keys[1].clone();
    keys.push(dup);
    let teams = doc.spec.teams.as_mut().unwrap();
    teams[0].router_settings = Some(fallbacks("gpt-rt", &["gpt-9000"]));
    teams[1].budget_duration = Some("forever".into());
    let err = state::plan(s.as_ref(), None, doc, &import_opts())
        .await
        .unwrap_err();
    let text = err.to_string();
    let ImportError::Invalid(problems) = &err else {
        panic!("{text}")
    };
    assert_eq!(problems.len(), 4, "{text}");
    assert!(text.contains("listed more than once"), "{text}");
    assert!(text.contains("no-such-team"), "{text}");
    assert!(
        text.contains("gpt-9000") && text.contains("claude-rt"),
        "{text}"
    );
    assert!(text.contains("forever"), "{text}");

    // A password inside a model's URL is refused, and not echoed.
    let mut doc = base.clone();
    doc.spec.models.as_mut().unwrap()[0]
        .litellm_params
        .insert("api_base".into(), json!("http://u:doc-url-pw-31@h/v1"));
    let text = state::plan(s.as_ref(), None, doc, &import_opts())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("litellm_params.api_base") && !text.contains("doc-url-pw-31"),
        "{text}"
    );

    // A fallback target that only exists because the same document adds it is fine.
    let mut doc = base.clone();
    let mut m = doc.spec.models.as_ref().unwrap()[0].clone();
    m.model_id = "new-dep".into();
    m.model_name = "gpt-9000".into();
    doc.spec.models.as_mut().unwrap().push(m);
    doc.spec.teams.as_mut().unwrap()[0].router_settings = Some(fallbacks("gpt-rt", &["gpt-9000"]));
    doc.spec.normalize();
    let plan = state::plan(s.as_ref(), None, doc, &import_opts())
        .await
        .unwrap();
    assert_eq!((plan.summary.create, plan.summary.update), (1, 1));

    // Truncated, wrong kind, unknown fields: parse errors with a location.
    let full = base.render(Format::Yaml);
    let truncated = &full[..full.len() / 2];
    let cut = truncated.rfind('\n').unwrap();
    let err = state::parse_document(&format!("{}\n  - {{", &truncated[..cut]), 1 << 20);
    assert!(matches!(err, Err(ImportError::Parse { .. })), "{err:?}");
    let err = state::parse_document(
        &full.replace("switchyard/state", "switchyard/memo"),
        1 << 20,
    )
    .unwrap_err();
    assert!(err.to_string().contains("switchyard/memo"), "{err}");
    let json = base.render(Format::Json).replacen(
        "\"team_id\": \"empty-team\"",
        "\"team_id\": \"empty-team\", \"colour\": \"red\"",
        1,
    );
    let err = state::parse_document(&json, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("colour") && err.contains("spec.teams"),
        "{err}"
    );
    assert!(err.contains("line "), "{err}");
    assert_eq!(s.read_state().await.unwrap(), before);
}

// ---------------------------------------------------------------------------------------
// Random states (SQLite): export -> import into empty -> export is byte-identical.

mod random {
    use proptest::prelude::*;

    use super::*;

    /// A team: tpm limit, member indexes, blocked, alias.
    type RandomTeam = (Option<u64>, Vec<usize>, bool, Option<String>);
    /// A key: team index, max budget, blocked, tags.
    type RandomKey = (Option<usize>, Option<u64>, bool, Vec<String>);

    #[derive(Clone, Debug)]
    struct Shape {
        users: Vec<(Option<u64>, bool)>,
        teams: Vec<RandomTeam>,
        keys: Vec<RandomKey>,
        settings: Vec<(String, i64)>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (
            prop::collection::vec((prop::option::of(0u64..10_000), any::<bool>()), 0..5),
            prop::collection::vec(
                (
                    prop::option::of(0u64..10_000),
                    prop::collection::vec(0usize..5, 0..3),
                    any::<bool>(),
                    prop::option::of("[a-z]{1,8}"),
                ),
                0..5,
            ),
            prop::collection::vec(
                (
                    prop::option::of(0usize..5),
                    prop::option::of(1u64..1_000_000),
                    any::<bool>(),
                    prop::collection::vec("[a-z]{1,6}", 0..3),
                ),
                0..8,
            ),
            prop::collection::vec(("[a-z_]{1,10}", any::<i64>()), 0..4),
        )
            .prop_map(|(users, teams, keys, settings)| Shape {
                users,
                teams,
                keys,
                settings,
            })
    }

    fn changes(s: &Shape) -> StateChanges {
        let mut c = StateChanges::default();
        let u = &mut c.upsert;
        for (i, (rpm, admin)) in s.users.iter().enumerate() {
            let mut user = UserSpec::new(format!("user-{i}"));
            user.rpm_limit = *rpm;
            if *admin {
                user.user_role = UserRole::ProxyAdmin;
            }
            u.users.push(user);
        }
        for (i, (tpm, members, blocked, alias)) in s.teams.iter().enumerate() {
            let mut t = TeamSpec::new(format!("team-{i}"));
            t.tpm_limit = *tpm;
            t.blocked = *blocked;
            t.team_alias = alias.as_ref().map(|a| format!("{a}-{i}"));
            let mut seen = std::collections::BTreeSet::new();
            for m in members {
                if *m < s.users.len() && seen.insert(*m) {
                    t.members
                        .push(TeamMember::new(format!("user-{m}"), TeamRole::User));
                }
            }
            u.teams.push(t);
        }
        for (i, (team, budget, blocked, tags)) in s.keys.iter().enumerate() {
            let (_, mut k) = new_key(&format!("key-{i}"));
            k.team_id = team
                .filter(|t| *t < s.teams.len())
                .map(|t| format!("team-{t}"));
            k.max_budget = budget.map(|b| Usd::from_nanos(b as i64 * 1_000));
            k.blocked = *blocked;
            k.tags = tags.clone();
            u.keys.push(k);
        }
        for (name, v) in &s.settings {
            u.general_settings.insert(name.clone(), json!(v));
        }
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn random_states_survive_the_round_trip(s in shape()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { tokio::time::timeout(TEST_TIMEOUT, async {
                let source = SqliteStore::connect("sqlite::memory:", store_options(SALT)).await.unwrap();
                source.apply_state(&actor(), &changes(&s)).await.unwrap();
                let first = export_text(&source, SecretsMode::Encrypted, Format::Yaml).await;
                let target = SqliteStore::connect("sqlite::memory:", store_options(SALT)).await.unwrap();
                import_text(&target, &first, &import_opts()).await;
                assert_eq!(export_text(&target, SecretsMode::Encrypted, Format::Yaml).await, first);
                let doc = state::parse_document(&first, state::DEFAULT_MAX_BYTES).unwrap();
                assert!(state::plan(&target, None, doc, &import_opts()).await.unwrap().is_noop());
            }).await }).expect("timed out");
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP: the admin routes, and the key cache seeing an import at once.

mod http {
    use switchyard::config::Config;

    use super::*;
    use crate::harness;

    const MASTER: &str = "sk-master-state-test";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_and_import_routes_apply_and_take_effect_on_the_next_request() {
        tokio::time::timeout(TEST_TIMEOUT, async {
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::connect("sqlite::memory:", store_options(SALT))
                    .await
                    .unwrap(),
            );
            seed(store.as_ref()).await;
            let (secret, mut key) = new_key("http-key");
            key.models = vec![];
            store.insert_key(&actor(), &key).await.unwrap();
            let mut config = Config::default();
            config.general_settings.salt_key = Some(SALT.to_owned().into());
            let gw = harness::start_with_store(config, Some(MASTER), Some(store.clone())).await;
            let client = reqwest::Client::new();

            // Export needs the master key.
            let r = client
                .get(format!("{}/config/export", gw.url))
                .bearer_auth(secret.expose_secret())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
            let r = client
                .get(format!(
                    "{}/config/export?format=json&secrets=encrypted",
                    gw.url
                ))
                .bearer_auth(MASTER)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/json");
            let text = r.text().await.unwrap();
            assert!(!text.contains(UPSTREAM_SECRET) && !text.contains(MASTER));
            assert!(text.contains("encrypted:v1:"));

            // The key works, and its resolution is now cached.
            let models = |k: String| {
                let client = client.clone();
                let url = format!("{}/v1/models", gw.url);
                async move {
                    client
                        .get(url)
                        .bearer_auth(k)
                        .send()
                        .await
                        .unwrap()
                        .status()
                }
            };
            assert_eq!(models(secret.expose_secret().to_owned()).await, 200);

            // Import a document that blocks the key: dry run first, then for real.
            let mut doc = state::parse_document(&text, state::DEFAULT_MAX_BYTES).unwrap();
            for k in doc.spec.keys.as_mut().unwrap() {
                if k.key_alias.as_deref() == Some("http-key") {
                    k.blocked = true;
                }
            }
            let body = |dry: bool| json!({"document": doc.render(Format::Yaml), "dry_run": dry});
            let r = client
                .post(format!("{}/config/import", gw.url))
                .bearer_auth(MASTER)
                .json(&body(true))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["applied"], false);
            assert_eq!(v["plan"]["summary"]["update"], 1, "{v}");
            assert_eq!(v["plan"]["objects"][0]["changes"][0]["field"], "blocked");
            assert_eq!(models(secret.expose_secret().to_owned()).await, 200);

            let r = client
                .post(format!("{}/config/import", gw.url))
                .bearer_auth(MASTER)
                .json(&body(false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["applied"], true, "{v}");
            // Cache invalidated: the very next request sees the block.
            let status = models(secret.expose_secret().to_owned()).await;
            assert!(status == 401 || status == 403, "{status}");

            // The CLI over --url: diff of the live gateway against its own export is empty,
            // and a dry-run import of it is a clean, empty plan.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("live.json");
            let live = client
                .get(format!("{}/config/export?format=json", gw.url))
                .bearer_auth(MASTER)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            std::fs::write(&file, &live).unwrap();
            let cli = |args: Vec<String>| async move {
                tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                    .args(args)
                    .env("SWITCHYARD_MASTER_KEY", MASTER)
                    .output()
                    .await
                    .unwrap()
            };
            let file_s = file.to_str().unwrap().to_owned();
            let out = cli(vec![
                "config".into(),
                "diff".into(),
                gw.url.clone(),
                file_s.clone(),
            ])
            .await;
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            // `config import FILE --url GATEWAY EXTRA...`, which must exit 0.
            let import_via_url = |extra: &[&str]| {
                let mut args = vec![
                    "config".to_owned(),
                    "import".to_owned(),
                    file_s.clone(),
                    "--url".to_owned(),
                    gw.url.clone(),
                ];
                args.extend(extra.iter().map(|a| (*a).to_owned()));
                let run = cli(args);
                async move {
                    let out = run.await;
                    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                    assert_eq!(out.status.code(), Some(0), "{stderr}");
                    out
                }
            };
            let out = import_via_url(&["--dry-run"]).await;
            assert!(String::from_utf8_lossy(&out.stdout).contains("0 to create, 0 to update"));
            std::fs::write(
                &file,
                live.replace("\"rpm_limit\": 10", "\"rpm_limit\": 12"),
            )
            .unwrap();
            let out = cli(vec![
                "config".into(),
                "diff".into(),
                gw.url.clone(),
                file_s.clone(),
            ])
            .await;
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stdout).contains("rpm_limit: 10 -> 12"));

            // Imported over --url with --changed-by: the gateway's audit log names who.
            import_via_url(&["--changed-by", "release-7"]).await;
            let (_, audit) =
                crate::keys::admin_get(&gw, "/audit?changed_by=release-7", MASTER).await;
            // The edit above changed the key's rpm_limit 10 and, by prefix, the budget's 100.
            assert_eq!(audit["total"], 2, "{audit}");
            let logs = audit["audit_logs"].as_array().unwrap();
            assert!(logs.iter().all(|e| e["action"] == "update"), "{audit}");

            // A bad document is a 400 naming the problem.
            let r = client
                .post(format!("{}/config/import", gw.url))
                .bearer_auth(MASTER)
                .json(&json!({"document": "schema_version: 2\nkind: switchyard/state\n"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(
                v["error"]["message"].as_str().unwrap().contains("newer"),
                "{v}"
            );
        })
        .await
        .expect("timed out");
    }
}

// ---------------------------------------------------------------------------------------
// CLI: exit codes through the real binary, against a SQLite file.

mod cli {
    use std::process::Command;

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

    fn cmd(args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_SALT_KEY", SALT)
            .env_remove("SWITCHYARD_MASTER_KEY")
            .env("STATE_TEST_BOUND", "bound-from-env")
            .output()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn export_import_diff_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let src_db = format!("sqlite://{}", dir.path().join("src.db").display());
        let dst_db = format!("sqlite://{}", dir.path().join("dst.db").display());
        {
            let s = SqliteStore::connect(&src_db, store_options(SALT))
                .await
                .unwrap();
            seed(&s).await;
            s.close().await;
        }
        let file = dir.path().join("state.yaml");
        let file_s = file.to_str().unwrap();
        let out = cmd(&[
            "config",
            "export",
            "--database-url",
            &src_db,
            "--secrets",
            "encrypted",
            "--out",
            file_s,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("schema_version: 1\nkind: switchyard/state\n"),
            "{text}"
        );
        assert!(!text.contains(UPSTREAM_SECRET));

        // Dry run into an empty database: clean plan, exit 0, nothing written.
        let out = cmd(&[
            "config",
            "import",
            file_s,
            "--database-url",
            &dst_db,
            "--dry-run",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("+ keys/") && stdout.contains("dry run"),
            "{stdout}"
        );
        let diff = cmd(&["config", "export", "--database-url", &dst_db]);
        assert!(String::from_utf8_lossy(&diff.stdout).contains("keys: []"));

        // A name the audit log cannot hold is a usage error, before anything is written.
        let bell = "release\u{7}";
        let args = ["config", "import", file_s, "--database-url", &dst_db];
        let out = cmd(&[&args[..], &["--changed-by", bell]].concat());
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--changed-by: control characters"),
            "{stderr}"
        );

        // Apply, then the two databases export the same document: diff exits 0.
        let out = cmd(&[&args[..], &["--changed-by", "release-42"]].concat());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        {
            let s = SqliteStore::connect(&dst_db, store_options(SALT))
                .await
                .unwrap();
            let by = |actor: &str| AuditFilter {
                actor: Some(actor.into()),
                ..Default::default()
            };
            let named = s
                .audit_log(&by("release-42"), Page::default())
                .await
                .unwrap();
            assert!(named.total > 0, "the import is audited as --changed-by");
            let default = s.audit_log(&by("import"), Page::default()).await.unwrap();
            assert_eq!(default.total, 0);
            s.close().await;
        }
        let dst_file = dir.path().join("dst.yaml");
        let out = cmd(&[
            "config",
            "export",
            "--database-url",
            &dst_db,
            "--secrets",
            "encrypted",
            "--out",
            dst_file.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        assert_eq!(std::fs::read_to_string(&dst_file).unwrap(), text);
        let out = cmd(&["config", "diff", file_s, dst_file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );

        // A changed document: diff exits 1 naming the field; JSON for tools.
        let changed = dir.path().join("changed.yaml");
        std::fs::write(&changed, text.replace("rpm_limit: 10\n", "rpm_limit: 11\n")).unwrap();
        let out = cmd(&["config", "diff", file_s, changed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("rpm_limit: 10 -> 11"), "{stdout}");
        let out = cmd(&[
            "config",
            "diff",
            file_s,
            changed.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["equal"], false);

        // Redacted document into an empty database: unbound secrets exit 1 and are listed;
        // binding them from the environment works.
        let redacted = dir.path().join("redacted.yaml");
        let out = cmd(&[
            "config",
            "export",
            "--database-url",
            &src_db,
            "--out",
            redacted.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        let empty_db = format!("sqlite://{}", dir.path().join("empty.db").display());
        let out = cmd(&[
            "config",
            "import",
            redacted.to_str().unwrap(),
            "--database-url",
            &empty_db,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("openai-prod/api_key"), "{stderr}");
        let out = cmd(&[
            "config",
            "import",
            redacted.to_str().unwrap(),
            "--database-url",
            &empty_db,
            "--include",
            "credentials",
            "--bind-secret",
            "openai-prod/api_key=STATE_TEST_BOUND",
            "--bind-secret",
            "azure-east/api_key=STATE_TEST_BOUND",
            "--bind-secret",
            "azure-east/api_version=STATE_TEST_BOUND",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Usage errors exit 2: no target, unknown section, unreachable gateway.
        assert_eq!(cmd(&["config", "export"]).status.code(), Some(2));
        assert_eq!(
            cmd(&[
                "config",
                "export",
                "--database-url",
                &src_db,
                "--include",
                "widgets"
            ])
            .status
            .code(),
            Some(2)
        );
        assert_eq!(
            cmd(&["config", "export", "--url", "http://127.0.0.1:9"])
                .status
                .code(),
            Some(2)
        );
        // A newer schema: exit 1, naming both versions.
        let newer = dir.path().join("newer.yaml");
        std::fs::write(
            &newer,
            text.replace("schema_version: 1", "schema_version: 3"),
        )
        .unwrap();
        let out = cmd(&[
            "config",
            "import",
            newer.to_str().unwrap(),
            "--database-url",
            &dst_db,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains('3') && stderr.contains("(1)"), "{stderr}");
    }

    #[test]
    fn help_documents_both_targets_with_examples() {
        for sub in ["export", "import", "diff"] {
            let out = Command::new(BIN)
                .args(["config", sub, "--help"])
                .output()
                .unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("Examples:"), "{sub}: {text}");
            if sub != "diff" {
                assert!(
                    text.contains("--url") && text.contains("--database-url"),
                    "{text}"
                );
            }
        }
    }
}

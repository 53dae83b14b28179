//! Store conformance suite: every test body runs against SQLite (in memory, always) and
//! PostgreSQL (when `SWITCHYARD_TEST_POSTGRES_URL` is set). Each PostgreSQL test gets a schema
//! of its own — every pooled connection's `search_path` points at it — so tests run in
//! parallel on one database, and the schema is dropped afterwards, even when the test fails.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use futures::FutureExt;
use secrecy::SecretString;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor;
use switchyard::store::{PgStore, SecretCipher, SqliteStore, Store, StoreError, StoreOptions};

const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";
/// Every test body is bounded; the 10,000-key import is the slowest by far.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
const SALT: &str = "conformance-salt-key";

fn cipher(salt: &str) -> SecretCipher {
    SecretCipher::for_credentials(&SecretString::from(salt.to_owned())).unwrap()
}

fn options() -> StoreOptions {
    StoreOptions {
        // 5 per test: enough to make the concurrency tests contend, small enough that
        // parallel tests stay far below PostgreSQL's default 100 connections.
        max_connections: 5,
        ..StoreOptions::default()
    }
    .with_cipher(cipher(SALT))
}

/// The concrete store behind a test, for raw SQL and for reopening with other options.
#[derive(Clone)]
enum Raw {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

struct PgHarness {
    url: String,
    admin: PgPool,
    schemas: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct Ctx {
    store: Arc<dyn Store>,
    raw: Raw,
    pg: Option<Arc<PgHarness>>,
}

impl Ctx {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn is_postgres(&self) -> bool {
        matches!(self.raw, Raw::Postgres(_))
    }

    /// A second store on the same database, opened with other options.
    async fn reopen(&self, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match &self.raw {
            Raw::Sqlite(s) => Arc::new(SqliteStore::open(s.pool().clone(), options).await?),
            Raw::Postgres(s) => Arc::new(PgStore::open(s.pool().clone(), options).await?),
        })
    }

    /// An empty store on the same backend (a new in-memory database, or a new schema).
    async fn fresh(&self) -> Arc<dyn Store> {
        match &self.pg {
            None => Arc::new(
                SqliteStore::connect("sqlite::memory:", options())
                    .await
                    .unwrap(),
            ),
            Some(h) => Arc::new(pg_store(h).await),
        }
    }

    async fn raw_bytes(&self, sql: &str) -> Vec<Vec<u8>> {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
            Raw::Postgres(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
        }
    }

    async fn raw_strings(&self, sql: &str) -> Vec<String> {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
            Raw::Postgres(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
        }
    }

    async fn raw_i64(&self, sql: &str) -> i64 {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
            Raw::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        }
    }

    /// Records a migration this binary has never heard of, as a newer binary would.
    async fn insert_future_migration(&self, version: i64) {
        let sql = "INSERT INTO _sqlx_migrations \
                   (version, description, success, checksum, execution_time) \
                   VALUES ($1, 'from the future', TRUE, $2, 0)";
        match &self.raw {
            Raw::Sqlite(s) => {
                sqlx::query(sql)
                    .bind(version)
                    .bind(vec![0u8; 48])
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
            Raw::Postgres(s) => {
                sqlx::query(sql)
                    .bind(version)
                    .bind(vec![0u8; 48])
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
        }
    }
}

async fn pg_store(h: &PgHarness) -> PgStore {
    let schema = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
    h.admin
        .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
        .await
        .unwrap();
    h.schemas.lock().unwrap().push(schema.clone());
    let pool = switchyard::store::pool_options::<sqlx::Postgres>(
        options().max_connections,
        Duration::from_secs(30),
    )
    .after_connect(move |conn, _meta| {
        let set = format!("SET search_path TO \"{schema}\"");
        Box::pin(async move {
            conn.execute(set.as_str()).await?;
            Ok(())
        })
    })
    .connect(&h.url)
    .await
    .unwrap();
    PgStore::open(pool, options()).await.unwrap()
}

async fn run_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = SqliteStore::connect("sqlite::memory:", options())
        .await
        .unwrap();
    let ctx = Ctx {
        store: Arc::new(store.clone()),
        raw: Raw::Sqlite(store),
        pg: None,
    };
    tokio::time::timeout(TEST_TIMEOUT, body(ctx))
        .await
        .expect("test timed out");
}

static SKIPPED: Once = Once::new();

async fn run_postgres<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        // Written to the terminal directly: libtest captures println! of passing tests.
        SKIPPED.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipped: postgres ({POSTGRES_ENV} not set)"
            );
        });
        return;
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect to SWITCHYARD_TEST_POSTGRES_URL");
    let harness = Arc::new(PgHarness {
        url,
        admin,
        schemas: Mutex::new(Vec::new()),
    });
    let store = pg_store(&harness).await;
    let ctx = Ctx {
        store: Arc::new(store.clone()),
        raw: Raw::Postgres(store),
        pg: Some(harness.clone()),
    };
    let result = AssertUnwindSafe(tokio::time::timeout(TEST_TIMEOUT, body(ctx.clone())))
        .catch_unwind()
        .await;
    ctx.store.close().await;
    let schemas = std::mem::take(&mut *harness.schemas.lock().unwrap());
    for schema in schemas {
        harness
            .admin
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .unwrap();
    }
    harness.admin.close().await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("test timed out"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Generates `<name>_sqlite` and `<name>_postgres` from one test body.
macro_rules! store_test {
    ($($name:ident),* $(,)?) => {
        $(paste::paste! {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _sqlite>]() {
                crate::store::run_sqlite($name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _postgres>]() {
                crate::store::run_postgres($name).await
            }
        })*
    };
}

/// The test bodies (`cargo test store` still selects them: they live under `store::`).
pub(crate) mod conformance {
    use std::collections::{BTreeMap, HashSet};

    use chrono::{Duration as ChronoDuration, Utc};
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;
    use switchyard::config::{FallbackRule, RouterSettings, Seconds};
    use switchyard::store::keys::{self, KeyPrefix};
    use switchyard::store::*;

    use super::{cipher, options, Ctx};

    store_test!(
        organizations_crud,
        budgets_crud_and_reset_time,
        users_crud_and_filters,
        teams_crud_with_members,
        team_and_key_router_settings_round_trip,
        keys_crud_and_lookup,
        legacy_keys_are_found_by_hash_of_whole_string,
        regenerated_key_keeps_public_id_and_drops_old_secret,
        runtime_models_crud,
        credentials_are_encrypted_at_rest,
        wrong_salt_fails_to_decrypt,
        access_groups_tags_and_settings,
        duplicate_identities_and_aliases_conflict,
        unknown_references_are_rejected,
        referenced_objects_cannot_be_deleted,
        revoked_blocked_expired_visibility,
        key_listing_pages_and_filters,
        bad_input_is_rejected_and_nothing_written,
        spend_totals_exact_under_200_concurrent_calls,
        spend_is_counted_once_per_request_id,
        large_batches_keep_every_row_and_skip_known_ones,
        spend_logs_filter_and_page,
        due_budgets_reset_spend_and_move_to_next_period,
        old_spend_logs_are_deleted_in_batches_and_totals_stay,
        audit_entries_record_changes_without_secret_values,
        change_version_counts_committed_changes_only,
        schema_newer_than_binary_is_refused,
        pools_run_without_a_reaper,
        failing_last_statement_leaves_state_unchanged,
        apply_state_round_trip_is_deterministic,
        apply_state_checks_references_at_the_end,
        import_of_10000_keys_and_1000_teams,
        user_with_teams_and_team_members_are_written_all_or_nothing,
    );

    fn actor() -> Actor {
        Actor::new("test")
    }

    fn obj(v: serde_json::Value) -> JsonObject {
        serde_json::from_value(v).unwrap()
    }

    fn new_key(alias: Option<&str>) -> (SecretString, KeySpec) {
        let g = keys::generate(&KeyPrefix::default());
        let mut spec = KeySpec::new(g.public_id, g.hash);
        spec.key_alias = alias.map(str::to_owned);
        (g.key, spec)
    }

    fn settings_with_fallbacks(group: &str, targets: &[&str]) -> RouterSettings {
        RouterSettings {
            fallbacks: Some(vec![FallbackRule {
                group: group.into(),
                targets: targets.iter().map(|t| t.to_string()).collect(),
            }]),
            num_retries: Some(1),
            timeout: Some(Seconds(std::time::Duration::from_secs(30))),
            ..Default::default()
        }
    }

    async fn seed_team(s: &dyn Store, id: &str) -> Team {
        s.create_team(&actor(), &TeamSpec::new(id)).await.unwrap()
    }

    async fn seed_user(s: &dyn Store, id: &str) -> User {
        s.create_user(&actor(), &UserSpec::new(id)).await.unwrap()
    }

    // -----------------------------------------------------------------------------------
    // CRUD per entity

    // Issue 4: `/user/new` with `teams`, `/team/new` with members and `/team/member_add` are
    // one transaction each (user rows + memberships + audit entries), never half written.
    async fn user_with_teams_and_team_members_are_written_all_or_nothing(ctx: Ctx) {
        let s = ctx.store();
        seed_team(s, "t1").await;
        seed_team(s, "t2").await;
        let audit_count = |id: &'static str| async move {
            s.audit_log(
                &AuditFilter {
                    object_id: Some(id.into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap()
            .total
        };
        let t1_audits = audit_count("t1").await;
        let members = |t: &'static str| async move {
            s.team(t)
                .await
                .unwrap()
                .unwrap()
                .spec
                .members
                .into_iter()
                .map(|m| m.user_id)
                .collect::<Vec<_>>()
        };

        // The second team is unknown: after t1 was joined inside the transaction.
        let err = s
            .create_user_in_teams(
                &actor(),
                &UserSpec::new("u1"),
                &["t1".into(), "ghost".into()],
            )
            .await
            .unwrap_err();
        match &err {
            StoreError::UnknownReference { field, value, .. } => {
                assert_eq!((*field, value.as_str()), ("teams", "ghost"), "{err}")
            }
            other => panic!("expected an unknown team, got {other:?}"),
        }
        assert!(s.user("u1").await.unwrap().is_none(), "no user left behind");
        assert!(members("t1").await.is_empty(), "no membership left behind");
        assert_eq!(audit_count("u1").await, 0, "no audit entry for the user");
        assert_eq!(audit_count("t1").await, t1_audits, "no audit entry for t1");

        let u = s
            .create_user_in_teams(&actor(), &UserSpec::new("u1"), &["t1".into(), "t2".into()])
            .await
            .unwrap();
        assert_eq!(u.spec.user_id, "u1");
        assert_eq!(members("t1").await, ["u1"]);
        assert_eq!(members("t2").await, ["u1"]);
        assert_eq!(audit_count("u1").await, 1);
        assert_eq!(audit_count("t1").await, t1_audits + 1);
        // A taken id is a conflict, and the teams stay as they were.
        assert!(matches!(
            s.create_user_in_teams(&actor(), &UserSpec::new("u1"), &["t2".into()])
                .await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(members("t2").await, ["u1"]);

        // member_add: new users are created with the memberships, in one transaction.
        let team = s
            .add_team_members(
                &actor(),
                "t1",
                &[
                    TeamMember::new("n1", TeamRole::User),
                    TeamMember::new("u1", TeamRole::Admin),
                ],
            )
            .await
            .unwrap();
        let roles: Vec<(String, TeamRole)> = team
            .spec
            .members
            .iter()
            .map(|m| (m.user_id.clone(), m.role))
            .collect();
        assert!(roles.contains(&("u1".into(), TeamRole::Admin)), "{roles:?}");
        assert!(roles.contains(&("n1".into(), TeamRole::User)), "{roles:?}");
        assert!(s.user("n1").await.unwrap().is_some());
        assert!(matches!(
            s.add_team_members(&actor(), "ghost", &[TeamMember::new("n2", TeamRole::User)])
                .await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.user("n2").await.unwrap().is_none(), "n2 not created");

        // team/new: members created with the team; a bad team writes neither.
        let mut bad = TeamSpec::new("t3");
        bad.organization_id = Some("no-such-org".into());
        bad.members = vec![TeamMember::new("m1", TeamRole::User)];
        assert!(matches!(
            s.create_team_and_users(&actor(), &bad).await,
            Err(StoreError::UnknownReference { .. })
        ));
        assert!(s.user("m1").await.unwrap().is_none(), "m1 not created");
        assert!(s.team("t3").await.unwrap().is_none());
        bad.organization_id = None;
        s.create_team_and_users(&actor(), &bad).await.unwrap();
        assert!(s.user("m1").await.unwrap().is_some());
        assert_eq!(members("t3").await, ["m1"]);
    }

    async fn organizations_crud(ctx: Ctx) {
        let s = ctx.store();
        s.create_budget(&actor(), &BudgetSpec::new("b1"))
            .await
            .unwrap();
        let mut spec = OrganizationSpec::new("org-1", "Acme");
        spec.budget_id = Some("b1".into());
        spec.models = vec!["gpt-4o".into()];
        spec.metadata = obj(json!({"z": 1, "a": {"y": 2, "b": 3}}));
        let created = s.create_organization(&actor(), &spec).await.unwrap();
        assert_eq!(created.spec, spec);
        assert_eq!(created.spend, Usd::ZERO);
        let read = s.organization("org-1").await.unwrap().unwrap();
        assert_eq!(read, created);

        let patch = OrganizationPatch {
            organization_alias: Some("Acme Corp".into()),
            budget_id: Some(None),
            ..Default::default()
        };
        let updated = s
            .update_organization(&actor(), "org-1", &patch)
            .await
            .unwrap();
        assert_eq!(updated.spec.organization_alias, "Acme Corp");
        assert_eq!(updated.spec.budget_id, None);
        assert_eq!(updated.spec.models, spec.models);
        assert_eq!(updated.created_at, created.created_at);
        assert_eq!(s.organization("org-1").await.unwrap().unwrap(), updated);

        s.create_organization(&actor(), &OrganizationSpec::new("org-0", "Zero"))
            .await
            .unwrap();
        let page = s.list_organizations(Page::new(1, 0)).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.items[0].spec.organization_id, "org-0");
        let page = s.list_organizations(Page::new(1, 1)).await.unwrap();
        assert_eq!(page.items[0].spec.organization_id, "org-1");

        let deleted = s.delete_organization(&actor(), "org-1").await.unwrap();
        assert_eq!(deleted.spec.organization_alias, "Acme Corp");
        assert!(s.organization("org-1").await.unwrap().is_none());
        assert!(matches!(
            s.delete_organization(&actor(), "org-1").await,
            Err(StoreError::NotFound {
                kind: ObjectKind::Organization,
                ..
            })
        ));
        assert!(matches!(
            s.update_organization(&actor(), "nope", &OrganizationPatch::default())
                .await,
            Err(StoreError::NotFound { .. })
        ));
    }

    async fn budgets_crud_and_reset_time(ctx: Ctx) {
        let s = ctx.store();
        let spec = BudgetSpec {
            budget_id: "monthly".into(),
            max_budget: Usd::from_dollars(100.0),
            soft_budget: Usd::from_dollars(80.5),
            budget_duration: Some("30d".into()),
            rpm_limit: Some(1000),
            tpm_limit: Some(100_000),
            max_parallel_requests: Some(8),
        };
        let before = Utc::now();
        let b = s.create_budget(&actor(), &spec).await.unwrap();
        assert_eq!(b.spec, spec);
        let reset = b.budget_reset_at.unwrap();
        assert!(reset >= before + ChronoDuration::days(30) - ChronoDuration::seconds(1));
        assert!(reset <= Utc::now() + ChronoDuration::days(30));
        assert_eq!(s.budget("monthly").await.unwrap().unwrap(), b);

        // Same duration: the reset time stays; a new duration restarts it.
        let b2 = s
            .update_budget(
                &actor(),
                "monthly",
                &BudgetPatch {
                    max_budget: Some(Usd::from_dollars(200.0)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(b2.budget_reset_at, b.budget_reset_at);
        assert_eq!(b2.spec.max_budget, Usd::from_dollars(200.0));
        let b3 = s
            .update_budget(
                &actor(),
                "monthly",
                &BudgetPatch {
                    budget_duration: Some(Some("1h".into())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(b3.budget_reset_at.unwrap() < reset);

        assert_eq!(s.list_budgets(Page::default()).await.unwrap().total, 1);
        s.delete_budget(&actor(), "monthly").await.unwrap();
        assert!(s.budget("monthly").await.unwrap().is_none());
    }

    async fn users_crud_and_filters(ctx: Ctx) {
        let s = ctx.store();
        let mut alice = UserSpec::new("alice");
        alice.user_email = Some("Alice@Example.com".into());
        alice.user_role = UserRole::ProxyAdmin;
        alice.max_budget = Usd::from_dollars(12.34);
        alice.metadata = obj(json!({"team": "infra"}));
        let created = s.create_user(&actor(), &alice).await.unwrap();
        assert_eq!(created.spec, alice);
        let mut bob = UserSpec::new("bob");
        bob.user_email = Some("bob@other.org".into());
        s.create_user(&actor(), &bob).await.unwrap();

        let by_email = s
            .list_users(
                &UserFilter {
                    email_contains: Some("example".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(by_email.total, 1);
        assert_eq!(by_email.items[0].spec.user_id, "alice");
        let by_role = s
            .list_users(
                &UserFilter {
                    role: Some(UserRole::InternalUser),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(by_role.items.len(), 1);
        assert_eq!(by_role.items[0].spec.user_id, "bob");

        let updated = s
            .update_user(
                &actor(),
                "bob",
                &UserPatch {
                    user_role: Some(UserRole::InternalUserViewer),
                    user_email: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.spec.user_role, UserRole::InternalUserViewer);
        assert_eq!(updated.spec.user_email, None);
        assert_eq!(s.user("bob").await.unwrap().unwrap(), updated);
        s.delete_user(&actor(), "bob").await.unwrap();
        assert!(s.user("bob").await.unwrap().is_none());
        assert_eq!(
            s.list_users(&UserFilter::default(), Page::default())
                .await
                .unwrap()
                .total,
            1
        );
    }

    async fn teams_crud_with_members(ctx: Ctx) {
        let s = ctx.store();
        s.create_organization(&actor(), &OrganizationSpec::new("org", "Org"))
            .await
            .unwrap();
        for u in ["u1", "u2", "u3"] {
            seed_user(s, u).await;
        }
        let mut spec = TeamSpec::new("t1");
        spec.team_alias = Some("Search".into());
        spec.organization_id = Some("org".into());
        spec.models = vec!["gpt-4o".into(), "claude".into()];
        spec.max_budget = Usd::from_dollars(50.0);
        spec.rpm_limit = Some(60);
        spec.members = vec![
            TeamMember::new("u2", TeamRole::Admin),
            TeamMember::new("u1", TeamRole::User),
        ];
        let team = s.create_team(&actor(), &spec).await.unwrap();
        // Members come back sorted by user id.
        assert_eq!(
            team.spec.members,
            vec![
                TeamMember::new("u1", TeamRole::User),
                TeamMember::new("u2", TeamRole::Admin)
            ]
        );
        assert_eq!(s.team("t1").await.unwrap().unwrap(), team);
        assert_eq!(s.team_by_alias("Search").await.unwrap().unwrap(), team);
        assert!(s.team_by_alias("search").await.unwrap().is_none());

        let t = s
            .add_team_member(&actor(), "t1", &TeamMember::new("u3", TeamRole::User))
            .await
            .unwrap();
        assert_eq!(t.spec.members.len(), 3);
        let t = s
            .add_team_member(&actor(), "t1", &TeamMember::new("u1", TeamRole::Admin))
            .await
            .unwrap();
        assert_eq!(t.spec.members[0], TeamMember::new("u1", TeamRole::Admin));
        let t = s.remove_team_member(&actor(), "t1", "u2").await.unwrap();
        assert_eq!(
            t.spec
                .members
                .iter()
                .map(|m| m.user_id.as_str())
                .collect::<Vec<_>>(),
            ["u1", "u3"]
        );
        assert!(matches!(
            s.remove_team_member(&actor(), "t1", "u2").await,
            Err(StoreError::NotFound {
                kind: ObjectKind::TeamMember,
                ..
            })
        ));
        assert_eq!(s.team("t1").await.unwrap().unwrap(), t);

        seed_team(s, "t2").await;
        let of_u3 = s
            .list_teams(
                &TeamFilter {
                    member_user_id: Some("u3".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(of_u3.total, 1);
        assert_eq!(of_u3.items[0].spec.team_id, "t1");
        assert_eq!(of_u3.items[0].spec.members.len(), 2);
        let in_org = s
            .list_teams(
                &TeamFilter {
                    organization_id: Some("org".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(in_org.total, 1);
        let by_alias = s
            .list_teams(
                &TeamFilter {
                    alias_contains: Some("EAR".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(by_alias.total, 1);

        // Deleting a user removes their memberships.
        s.delete_user(&actor(), "u3").await.unwrap();
        let t = s.team("t1").await.unwrap().unwrap();
        assert_eq!(t.spec.members, vec![TeamMember::new("u1", TeamRole::Admin)]);

        let patch = TeamPatch {
            blocked: Some(true),
            members: Some(vec![]),
            team_alias: Some(None),
            ..Default::default()
        };
        let t = s.update_team(&actor(), "t1", &patch).await.unwrap();
        assert!(t.spec.blocked);
        assert!(t.spec.members.is_empty());
        assert_eq!(s.team("t1").await.unwrap().unwrap(), t);

        s.delete_team(&actor(), "t1").await.unwrap();
        assert!(s.team("t1").await.unwrap().is_none());
        assert_eq!(
            s.list_teams(&TeamFilter::default(), Page::default())
                .await
                .unwrap()
                .total,
            1
        );
    }

    async fn team_and_key_router_settings_round_trip(ctx: Ctx) {
        let s = ctx.store();
        let mut team = TeamSpec::new("t1");
        team.router_settings = Some(settings_with_fallbacks(
            "gpt-4o",
            &["claude", "gpt-4o-mini"],
        ));
        let created = s.create_team(&actor(), &team).await.unwrap();
        assert_eq!(created.spec.router_settings, team.router_settings);

        // An explicit empty list ("no fallbacks for this key") is not the same as absent.
        let (_, mut key) = new_key(Some("k"));
        key.team_id = Some("t1".into());
        key.router_settings = Some(RouterSettings {
            fallbacks: Some(vec![]),
            ..Default::default()
        });
        s.insert_key(&actor(), &key).await.unwrap();
        let read = s.key_by_public_id(&key.public_id).await.unwrap().unwrap();
        let rs = read.spec.router_settings.unwrap();
        assert_eq!(rs.fallbacks, Some(vec![]));
        assert_eq!(rs.context_window_fallbacks, None);
        assert_eq!(
            s.team("t1").await.unwrap().unwrap().spec.router_settings,
            team.router_settings
        );

        // Clearing returns the key to inheriting.
        let cleared = s
            .update_key(
                &actor(),
                &key.public_id,
                &KeyPatch {
                    router_settings: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(cleared.spec.router_settings, None);
        assert_eq!(
            s.key_by_public_id(&key.public_id)
                .await
                .unwrap()
                .unwrap()
                .spec
                .router_settings,
            None
        );

        // Stored in LiteLLM's shape.
        let raw = ctx
            .raw_strings("SELECT router_settings FROM teams WHERE team_id = 't1'")
            .await;
        let v: serde_json::Value = serde_json::from_str(&raw[0]).unwrap();
        assert_eq!(
            v["fallbacks"],
            json!([{"gpt-4o": ["claude", "gpt-4o-mini"]}])
        );
        assert_eq!(v["timeout"], json!(30));
    }

    async fn keys_crud_and_lookup(ctx: Ctx) {
        let s = ctx.store();
        seed_team(s, "t1").await;
        seed_user(s, "u1").await;
        let (secret, mut spec) = new_key(Some("prod-key"));
        spec.team_id = Some("t1".into());
        spec.user_id = Some("u1".into());
        spec.models = vec!["gpt-4o".into()];
        spec.max_budget = Usd::from_dollars(25.0);
        spec.budget_duration = Some("1w".into());
        spec.rpm_limit = Some(100);
        spec.tpm_limit = Some(10_000);
        spec.max_parallel_requests = Some(4);
        spec.expires_at = Some(Utc::now() + ChronoDuration::days(1));
        spec.metadata = obj(json!({"owner": "search"}));
        spec.tags = vec!["prod".into()];
        spec.aliases = BTreeMap::from([("gpt-4".into(), "gpt-4o".into())]);
        let rec = s.insert_key(&Actor::master_key(), &spec).await.unwrap();
        assert_eq!(rec.created_by.as_deref(), Some("master_key"));
        assert!(rec.budget_reset_at.is_some());
        assert_eq!(rec.status(Utc::now()), KeyStatus::Active);

        // The auth path: parse the presented key, look it up by hash.
        let presented = keys::parse(secret.expose_secret()).unwrap();
        assert_eq!(presented.public_id.as_ref(), Some(&spec.public_id));
        let by_hash = s.key_by_hash(&presented.hash).await.unwrap().unwrap();
        assert_eq!(by_hash, rec);
        assert_eq!(
            s.key_by_public_id(&spec.public_id).await.unwrap().unwrap(),
            rec
        );
        assert_eq!(s.key_by_alias("prod-key").await.unwrap().unwrap(), rec);
        assert!(s.key_by_alias("other").await.unwrap().is_none());
        assert!(s
            .key_by_hash(&TokenHash::of("sk-not-a-key"))
            .await
            .unwrap()
            .is_none());

        // The key itself is never stored.
        let stored = ctx.raw_strings("SELECT token_hash FROM virtual_keys").await;
        assert_eq!(stored, vec![presented.hash.as_str().to_owned()]);
        let all_text = ctx
            .raw_strings(
                "SELECT public_id || token_hash || coalesce(key_alias, '') || metadata FROM virtual_keys",
            )
            .await
            .concat();
        assert!(!all_text.contains(secret.expose_secret()));

        let patch = KeyPatch {
            models: Some(vec!["gpt-4o".into(), "claude".into()]),
            rpm_limit: Some(None),
            key_alias: Some(Some("renamed".into())),
            ..Default::default()
        };
        let updated = s
            .update_key(&actor(), &spec.public_id, &patch)
            .await
            .unwrap();
        assert_eq!(updated.spec.models.len(), 2);
        assert_eq!(updated.spec.rpm_limit, None);
        assert_eq!(updated.spec.tpm_limit, Some(10_000));
        assert_eq!(updated.created_by.as_deref(), Some("master_key"));
        assert_eq!(updated.budget_reset_at, rec.budget_reset_at);
        assert!(s.key_by_alias("prod-key").await.unwrap().is_none());
        assert_eq!(s.key_by_alias("renamed").await.unwrap().unwrap(), updated);

        let deleted = s
            .delete_keys(&actor(), std::slice::from_ref(&spec.public_id))
            .await
            .unwrap();
        assert_eq!(deleted.len(), 1);
        assert!(s.key_by_hash(&presented.hash).await.unwrap().is_none());
        assert!(matches!(
            s.delete_keys(&actor(), std::slice::from_ref(&spec.public_id))
                .await,
            Err(StoreError::NotFound {
                kind: ObjectKind::Key,
                ..
            })
        ));
    }

    async fn legacy_keys_are_found_by_hash_of_whole_string(ctx: Ctx) {
        let s = ctx.store();
        let legacy = "sk-Lit3LLM_style-key";
        let hash = TokenHash::of(legacy);
        let spec = KeySpec::new(PublicId::for_legacy(&hash), hash.clone());
        s.insert_key(&actor(), &spec).await.unwrap();
        let presented = keys::parse(legacy).unwrap();
        assert_eq!(presented.public_id, None);
        let found = s.key_by_hash(&presented.hash).await.unwrap().unwrap();
        assert_eq!(found.spec.public_id, PublicId::for_legacy(&hash));
    }

    async fn regenerated_key_keeps_public_id_and_drops_old_secret(ctx: Ctx) {
        let s = ctx.store();
        let (old_secret, spec) = new_key(Some("rotating"));
        s.insert_key(&actor(), &spec).await.unwrap();
        s.record_spend(&[spend_entry("r1", &spec.public_id, 5_000)])
            .await
            .unwrap();
        let fresh = keys::regenerate(&KeyPrefix::default(), &spec.public_id);
        let rec = s
            .regenerate_key(&actor(), &spec.public_id, &fresh.hash)
            .await
            .unwrap();
        assert_eq!(rec.spec.public_id, spec.public_id);
        assert_eq!(rec.spend, Usd::from_nanos(5_000));
        assert_eq!(rec.spec.key_alias.as_deref(), Some("rotating"));
        let old = keys::parse(old_secret.expose_secret()).unwrap();
        assert!(s.key_by_hash(&old.hash).await.unwrap().is_none());
        let new = keys::parse(fresh.key.expose_secret()).unwrap();
        assert_eq!(s.key_by_hash(&new.hash).await.unwrap().unwrap(), rec);
        let audit = s
            .audit_log(
                &AuditFilter {
                    object_id: Some(spec.public_id.to_string()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(audit.items[0].action, "regenerate");
    }

    async fn runtime_models_crud(ctx: Ctx) {
        let s = ctx.store();
        s.create_credential(
            &actor(),
            &NewCredential {
                credential_name: "openai-prod".into(),
                credential_info: obj(json!({"custom_llm_provider": "openai"})),
                values: BTreeMap::from([(
                    "api_key".into(),
                    SecretString::from("sk-up".to_owned()),
                )]),
            },
        )
        .await
        .unwrap();
        let spec = ModelSpec {
            model_id: "gpt-4o-east".into(),
            model_name: "gpt-4o".into(),
            litellm_params: obj(
                json!({"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:9", "rpm": 100}),
            ),
            credential_name: Some("openai-prod".into()),
            model_info: obj(json!({"input_cost_per_token": 2.5e-6})),
        };
        let m = s.create_model(&actor(), &spec).await.unwrap();
        assert_eq!(m.spec, spec);
        assert_eq!(s.model("gpt-4o-east").await.unwrap().unwrap(), m);
        let m2 = s
            .update_model(
                &actor(),
                "gpt-4o-east",
                &ModelPatch {
                    model_name: Some("gpt-4o-prod".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(m2.spec.model_name, "gpt-4o-prod");
        assert_eq!(s.list_models().await.unwrap(), vec![m2.clone()]);

        assert!(matches!(
            s.delete_credential(&actor(), "openai-prod").await,
            Err(StoreError::InUse {
                kind: ObjectKind::Credential,
                by: ObjectKind::Model,
                ..
            })
        ));
        let mut with_secret = spec.clone();
        with_secret.model_id = "leaky".into();
        with_secret
            .litellm_params
            .insert("api_key".into(), json!("sk-raw-secret"));
        let err = s.create_model(&actor(), &with_secret).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        let mut unknown = spec.clone();
        unknown.model_id = "m2".into();
        unknown.credential_name = Some("missing".into());
        assert!(matches!(
            s.create_model(&actor(), &unknown).await,
            Err(StoreError::UnknownReference {
                target: ObjectKind::Credential,
                ..
            })
        ));
        s.delete_model(&actor(), "gpt-4o-east").await.unwrap();
        s.delete_credential(&actor(), "openai-prod").await.unwrap();
        assert!(s.list_models().await.unwrap().is_empty());
    }

    const UPSTREAM_SECRET: &str = "sk-upstream-TOP-SECRET-4242";

    async fn seed_credential(s: &dyn Store, name: &str, secret: &str) -> Credential {
        s.create_credential(
            &actor(),
            &NewCredential {
                credential_name: name.into(),
                credential_info: obj(json!({"custom_llm_provider": "openai"})),
                values: BTreeMap::from([
                    ("api_key".into(), SecretString::from(secret.to_owned())),
                    (
                        "api_base".into(),
                        SecretString::from("https://example.invalid".to_owned()),
                    ),
                ]),
            },
        )
        .await
        .unwrap()
    }

    async fn credentials_are_encrypted_at_rest(ctx: Ctx) {
        let s = ctx.store();
        let c = seed_credential(s, "openai-prod", UPSTREAM_SECRET).await;
        assert_eq!(
            c.value_names,
            vec!["api_base".to_owned(), "api_key".to_owned()]
        );
        assert_eq!(s.credential("openai-prod").await.unwrap().unwrap(), c);
        let values = s.credential_values("openai-prod").await.unwrap().unwrap();
        assert_eq!(values["api_key"].expose_secret(), UPSTREAM_SECRET);

        let sealed = ctx
            .raw_bytes("SELECT sealed_values FROM credentials")
            .await
            .concat();
        assert!(sealed.len() > UPSTREAM_SECRET.len());
        assert!(!sealed
            .windows(UPSTREAM_SECRET.len())
            .any(|w| w == UPSTREAM_SECRET.as_bytes()));
        let text = ctx
            .raw_strings(
                "SELECT credential_name || credential_info || value_names FROM credentials",
            )
            .await
            .concat();
        assert!(!text.contains(UPSTREAM_SECRET));

        let updated = s
            .update_credential(
                &actor(),
                "openai-prod",
                &CredentialPatch {
                    values: Some(BTreeMap::from([(
                        "api_key".into(),
                        SecretString::from("sk-rotated".to_owned()),
                    )])),
                    credential_info: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.value_names, vec!["api_key".to_owned()]);
        let values = s.credential_values("openai-prod").await.unwrap().unwrap();
        assert_eq!(values["api_key"].expose_secret(), "sk-rotated");
        assert_eq!(s.list_credentials().await.unwrap(), vec![updated]);
        assert!(s.credential_values("missing").await.unwrap().is_none());
    }

    async fn wrong_salt_fails_to_decrypt(ctx: Ctx) {
        seed_credential(ctx.store(), "c", UPSTREAM_SECRET).await;
        let wrong = ctx
            .reopen(options().with_cipher(cipher("another-salt")))
            .await
            .unwrap();
        let err = wrong.credential_values("c").await.unwrap_err();
        assert!(matches!(err, StoreError::Decrypt { ref credential } if credential == "c"));
        assert!(
            err.to_string().contains("wrong SWITCHYARD_SALT_KEY"),
            "{err}"
        );
        assert!(!format!("{err:?}").contains(UPSTREAM_SECRET));

        let none = ctx
            .reopen(StoreOptions {
                cipher: None,
                ..options()
            })
            .await
            .unwrap();
        assert!(matches!(
            none.credential_values("c").await,
            Err(StoreError::NoSaltKey)
        ));
        let err = none
            .create_credential(
                &actor(),
                &NewCredential {
                    credential_name: "d".into(),
                    credential_info: JsonObject::new(),
                    values: BTreeMap::new(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSaltKey));
        // Reading descriptions needs no key.
        assert_eq!(none.list_credentials().await.unwrap().len(), 1);
    }

    async fn access_groups_tags_and_settings(ctx: Ctx) {
        let s = ctx.store();
        let g = AccessGroup {
            name: "beta-models".into(),
            models: vec!["gpt-5".into(), "claude-next".into()],
        };
        assert_eq!(s.put_access_group(&actor(), &g).await.unwrap(), g);
        let g2 = AccessGroup {
            models: vec!["gpt-5".into()],
            ..g.clone()
        };
        s.put_access_group(&actor(), &g2).await.unwrap();
        assert_eq!(s.access_group("beta-models").await.unwrap().unwrap(), g2);
        assert_eq!(s.list_access_groups().await.unwrap(), vec![g2.clone()]);
        s.delete_access_group(&actor(), "beta-models")
            .await
            .unwrap();
        assert!(s.access_group("beta-models").await.unwrap().is_none());

        let t = Tag {
            name: "prod".into(),
            description: Some("production traffic".into()),
            models: vec!["gpt-4o".into()],
            metadata: obj(json!({"cost_center": 42})),
        };
        s.put_tag(&actor(), &t).await.unwrap();
        assert_eq!(s.tag("prod").await.unwrap().unwrap(), t);
        assert_eq!(s.list_tags().await.unwrap(), vec![t]);
        s.delete_tag(&actor(), "prod").await.unwrap();
        assert!(s.list_tags().await.unwrap().is_empty());

        s.put_general_setting(&actor(), "max_request_body_bytes", &json!(1024))
            .await
            .unwrap();
        s.put_general_setting(&actor(), "alerting", &json!({"slack": true, "a": [1, 2]}))
            .await
            .unwrap();
        let gs = s.general_settings().await.unwrap();
        assert_eq!(
            gs.keys().collect::<Vec<_>>(),
            ["alerting", "max_request_body_bytes"]
        );
        assert_eq!(gs["alerting"], json!({"a": [1, 2], "slack": true}));
        assert!(s
            .delete_general_setting(&actor(), "alerting")
            .await
            .unwrap());
        assert!(!s
            .delete_general_setting(&actor(), "alerting")
            .await
            .unwrap());
        assert_eq!(s.general_settings().await.unwrap().len(), 1);

        assert_eq!(s.router_settings().await.unwrap(), None);
        let rs = settings_with_fallbacks("gpt-4o", &["claude"]);
        s.put_router_settings(&actor(), &rs).await.unwrap();
        assert_eq!(s.router_settings().await.unwrap(), Some(rs.clone()));
        let rs2 = RouterSettings {
            num_retries: Some(5),
            ..rs
        };
        s.put_router_settings(&actor(), &rs2).await.unwrap();
        assert_eq!(s.router_settings().await.unwrap(), Some(rs2));
    }

    // -----------------------------------------------------------------------------------
    // Errors the API maps to 409 and 400

    async fn duplicate_identities_and_aliases_conflict(ctx: Ctx) {
        let s = ctx.store();
        let (_, k1) = new_key(Some("shared"));
        s.insert_key(&actor(), &k1).await.unwrap();
        let (_, k2) = new_key(Some("shared"));
        let err = s.insert_key(&actor(), &k2).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict { kind: ObjectKind::Key, field: "key_alias", ref value } if value == "shared"
            ),
            "{err}"
        );
        assert!(s.key_by_public_id(&k2.public_id).await.unwrap().is_none());
        // Same public id, or same hash.
        assert!(matches!(
            s.insert_key(
                &actor(),
                &KeySpec::new(k1.public_id.clone(), TokenHash::of("sk-x"))
            )
            .await,
            Err(StoreError::Conflict {
                field: "public_id",
                ..
            })
        ));
        let (_, mut k3) = new_key(None);
        k3.token_hash = k1.token_hash.clone();
        assert!(matches!(
            s.insert_key(&actor(), &k3).await,
            Err(StoreError::Conflict {
                field: "token_hash",
                ..
            })
        ));
        // Renaming onto a taken alias.
        let (_, k4) = new_key(Some("other"));
        s.insert_key(&actor(), &k4).await.unwrap();
        let err = s
            .update_key(
                &actor(),
                &k4.public_id,
                &KeyPatch {
                    key_alias: Some(Some("shared".into())),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    field: "key_alias",
                    ..
                }
            ),
            "{err}"
        );

        let mut t = TeamSpec::new("t1");
        t.team_alias = Some("Search".into());
        s.create_team(&actor(), &t).await.unwrap();
        assert!(matches!(
            s.create_team(&actor(), &t).await,
            Err(StoreError::Conflict {
                kind: ObjectKind::Team,
                field: "team_id",
                ..
            })
        ));
        let mut t2 = TeamSpec::new("t2");
        t2.team_alias = Some("Search".into());
        assert!(matches!(
            s.create_team(&actor(), &t2).await,
            Err(StoreError::Conflict {
                kind: ObjectKind::Team,
                field: "team_alias",
                ..
            })
        ));
        seed_user(s, "u").await;
        assert!(matches!(
            s.create_user(&actor(), &UserSpec::new("u")).await,
            Err(StoreError::Conflict {
                kind: ObjectKind::User,
                ..
            })
        ));

        // The database's own constraint, reached through a bulk import, maps the same way.
        let (_, a) = new_key(Some("dup-in-import"));
        let (_, b) = new_key(Some("dup-in-import"));
        let changes = StateChanges {
            upsert: Upserts {
                keys: vec![a, b],
                ..Default::default()
            },
            ..Default::default()
        };
        let err = s.apply_state(&actor(), &changes).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    kind: ObjectKind::Key,
                    field: "key_alias",
                    ..
                }
            ),
            "{err}"
        );
        if ctx.is_postgres() {
            assert!(err.to_string().contains("dup-in-import"), "{err}");
        }
    }

    async fn unknown_references_are_rejected(ctx: Ctx) {
        let s = ctx.store();
        let mut t = TeamSpec::new("t1");
        t.organization_id = Some("no-such-org".into());
        let err = s.create_team(&actor(), &t).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnknownReference {
                    kind: ObjectKind::Team,
                    field: "organization_id",
                    target: ObjectKind::Organization,
                    ref value,
                } if value == "no-such-org"
            ),
            "{err}"
        );
        assert!(s.team("t1").await.unwrap().is_none());

        let (_, mut k) = new_key(Some("k"));
        k.team_id = Some("no-such-team".into());
        let err = s.insert_key(&actor(), &k).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnknownReference {
                    field: "team_id",
                    target: ObjectKind::Team,
                    ..
                }
            ),
            "{err}"
        );
        k.team_id = None;
        k.user_id = Some("ghost".into());
        assert!(matches!(
            s.insert_key(&actor(), &k).await,
            Err(StoreError::UnknownReference {
                target: ObjectKind::User,
                ..
            })
        ));
        assert!(s.key_by_alias("k").await.unwrap().is_none());

        let mut t = TeamSpec::new("t2");
        t.members = vec![TeamMember::new("ghost", TeamRole::User)];
        assert!(matches!(
            s.create_team(&actor(), &t).await,
            Err(StoreError::UnknownReference {
                kind: ObjectKind::TeamMember,
                target: ObjectKind::User,
                ..
            })
        ));
        seed_team(s, "t3").await;
        assert!(matches!(
            s.add_team_member(&actor(), "t3", &TeamMember::new("ghost", TeamRole::Admin))
                .await,
            Err(StoreError::UnknownReference { .. })
        ));
        assert!(matches!(
            s.add_team_member(
                &actor(),
                "no-team",
                &TeamMember::new("ghost", TeamRole::Admin)
            )
            .await,
            Err(StoreError::NotFound {
                kind: ObjectKind::Team,
                ..
            })
        ));
        let mut o = OrganizationSpec::new("o", "O");
        o.budget_id = Some("no-budget".into());
        assert!(matches!(
            s.create_organization(&actor(), &o).await,
            Err(StoreError::UnknownReference {
                target: ObjectKind::Budget,
                ..
            })
        ));
        // Moving an existing key to a missing team is refused too, and leaves it alone.
        let (_, k2) = new_key(Some("k2"));
        s.insert_key(&actor(), &k2).await.unwrap();
        assert!(matches!(
            s.update_key(
                &actor(),
                &k2.public_id,
                &KeyPatch {
                    team_id: Some(Some("nope".into())),
                    ..Default::default()
                }
            )
            .await,
            Err(StoreError::UnknownReference { .. })
        ));
        assert_eq!(
            s.key_by_alias("k2").await.unwrap().unwrap().spec.team_id,
            None
        );
    }

    async fn referenced_objects_cannot_be_deleted(ctx: Ctx) {
        let s = ctx.store();
        s.create_organization(&actor(), &OrganizationSpec::new("o", "O"))
            .await
            .unwrap();
        let mut t = TeamSpec::new("t");
        t.organization_id = Some("o".into());
        s.create_team(&actor(), &t).await.unwrap();
        seed_user(s, "u").await;
        let (_, mut k) = new_key(None);
        k.team_id = Some("t".into());
        k.user_id = Some("u".into());
        s.insert_key(&actor(), &k).await.unwrap();

        assert!(matches!(
            s.delete_team(&actor(), "t").await,
            Err(StoreError::InUse {
                kind: ObjectKind::Team,
                by: ObjectKind::Key,
                ..
            })
        ));
        assert!(matches!(
            s.delete_user(&actor(), "u").await,
            Err(StoreError::InUse {
                kind: ObjectKind::User,
                by: ObjectKind::Key,
                ..
            })
        ));
        assert!(matches!(
            s.delete_organization(&actor(), "o").await,
            Err(StoreError::InUse {
                kind: ObjectKind::Organization,
                by: ObjectKind::Team,
                ..
            })
        ));
        s.delete_keys(&actor(), std::slice::from_ref(&k.public_id))
            .await
            .unwrap();
        s.delete_team(&actor(), "t").await.unwrap();
        s.delete_user(&actor(), "u").await.unwrap();
        s.delete_organization(&actor(), "o").await.unwrap();
    }

    async fn revoked_blocked_expired_visibility(ctx: Ctx) {
        let s = ctx.store();
        let now = Utc::now();
        let (_, active) = new_key(Some("active"));
        let (_, mut blocked) = new_key(Some("blocked"));
        blocked.blocked = true;
        let (_, mut expired) = new_key(Some("expired"));
        expired.expires_at = Some(now - ChronoDuration::minutes(1));
        let (_, revoked) = new_key(Some("revoked"));
        for k in [&active, &blocked, &expired, &revoked] {
            s.insert_key(&actor(), k).await.unwrap();
        }
        s.delete_keys(&actor(), std::slice::from_ref(&revoked.public_id))
            .await
            .unwrap();

        let status = |k: Option<KeyRecord>| k.map(|k| k.status(Utc::now()));
        assert_eq!(
            status(s.key_by_hash(&active.token_hash).await.unwrap()),
            Some(KeyStatus::Active)
        );
        assert_eq!(
            status(s.key_by_hash(&blocked.token_hash).await.unwrap()),
            Some(KeyStatus::Blocked)
        );
        assert_eq!(
            status(s.key_by_hash(&expired.token_hash).await.unwrap()),
            Some(KeyStatus::Expired)
        );
        assert_eq!(
            status(s.key_by_hash(&revoked.token_hash).await.unwrap()),
            None
        );
        assert_eq!(
            status(s.key_by_public_id(&revoked.public_id).await.unwrap()),
            None
        );

        let list = |f: KeyFilter| async move {
            let mut aliases: Vec<String> = s
                .list_keys(&f, Page::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|k| k.spec.key_alias)
                .collect();
            aliases.sort();
            aliases
        };
        assert_eq!(
            list(KeyFilter::default()).await,
            ["active", "blocked", "expired"]
        );
        assert_eq!(
            list(KeyFilter {
                blocked: Some(true),
                ..Default::default()
            })
            .await,
            ["blocked"]
        );
        assert_eq!(
            list(KeyFilter {
                blocked: Some(false),
                ..Default::default()
            })
            .await,
            ["active", "expired"]
        );
        assert_eq!(
            list(KeyFilter {
                expired: Some(true),
                ..Default::default()
            })
            .await,
            ["expired"]
        );
        assert_eq!(
            list(KeyFilter {
                expired: Some(false),
                blocked: Some(false),
                ..Default::default()
            })
            .await,
            ["active"]
        );

        // Unblocking is an update like any other.
        let unblocked = s
            .update_key(
                &actor(),
                &blocked.public_id,
                &KeyPatch {
                    blocked: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(unblocked.status(Utc::now()), KeyStatus::Active);
    }

    async fn key_listing_pages_and_filters(ctx: Ctx) {
        let s = ctx.store();
        for t in ["ta", "tb", "tc"] {
            seed_team(s, t).await;
        }
        // 250 keys through one import: three teams, two alias families.
        let mut specs = Vec::new();
        for i in 0..250 {
            let family = if i % 2 == 0 { "alpha" } else { "beta" };
            let (_, mut k) = new_key(Some(&format!("{family}-{i:03}")));
            k.team_id = Some(["ta", "tb", "tc"][i % 3].into());
            specs.push(k);
        }
        let (_, mut odd) = new_key(Some("100%_real\\deal"));
        odd.team_id = Some("ta".into());
        specs.push(odd);
        s.apply_state(
            &actor(),
            &StateChanges {
                upsert: Upserts {
                    keys: specs,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();

        let mut seen = HashSet::new();
        let mut offset = 0;
        loop {
            let page = s
                .list_keys(&KeyFilter::default(), Page::new(100, offset))
                .await
                .unwrap();
            assert_eq!(page.total, 251);
            if page.items.is_empty() {
                break;
            }
            for k in page.items {
                assert!(seen.insert(k.spec.public_id), "pages overlap");
            }
            offset += 100;
            assert!(offset < 1000, "paging does not end");
        }
        assert_eq!(seen.len(), 251);

        let ta = s
            .list_keys(
                &KeyFilter {
                    team_id: Some("ta".into()),
                    ..Default::default()
                },
                Page::new(10, 0),
            )
            .await
            .unwrap();
        assert_eq!(ta.total, 85);
        assert_eq!(ta.items.len(), 10);
        assert!(ta
            .items
            .iter()
            .all(|k| k.spec.team_id.as_deref() == Some("ta")));

        let alpha = s
            .list_keys(
                &KeyFilter {
                    alias_contains: Some("ALPHA-1".into()),
                    ..Default::default()
                },
                Page::new(1000, 0),
            )
            .await
            .unwrap();
        // alpha-100 .. alpha-198, even numbers only.
        assert_eq!(alpha.total, 50);
        // LIKE wildcards in the search text are literal.
        for needle in ["%", "_", "\\", "%_real\\"] {
            let hit = s
                .list_keys(
                    &KeyFilter {
                        alias_contains: Some(needle.into()),
                        ..Default::default()
                    },
                    Page::default(),
                )
                .await
                .unwrap();
            assert_eq!(hit.total, 1, "{needle:?}");
        }
        let combined = s
            .list_keys(
                &KeyFilter {
                    team_id: Some("tb".into()),
                    alias_contains: Some("beta".into()),
                    blocked: Some(false),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(combined.total, 42);

        for bad in [Page::new(0, 0), Page::new(1001, 0), Page::new(10, u64::MAX)] {
            assert!(matches!(
                s.list_keys(&KeyFilter::default(), bad).await,
                Err(StoreError::Invalid { .. })
            ));
        }
    }

    async fn bad_input_is_rejected_and_nothing_written(ctx: Ctx) {
        let s = ctx.store();
        let invalid = |r: Result<Team, StoreError>, field: &str| match r {
            Err(StoreError::Invalid { field: f, .. }) => {
                assert!(f.contains(field), "{f} vs {field}")
            }
            other => panic!("expected invalid {field}, got {other:?}"),
        };
        let mut t = TeamSpec::new("t");
        t.max_budget = Some(Usd::from_nanos(-1));
        invalid(s.create_team(&actor(), &t).await, "max_budget");
        let mut t = TeamSpec::new("t");
        t.budget_duration = Some("monthly".into());
        invalid(s.create_team(&actor(), &t).await, "budget_duration");
        let mut t = TeamSpec::new("t");
        t.team_alias = Some("  ".into());
        invalid(s.create_team(&actor(), &t).await, "team_alias");
        invalid(s.create_team(&actor(), &TeamSpec::new("")).await, "team_id");
        invalid(
            s.create_team(&actor(), &TeamSpec::new("a\u{0}b")).await,
            "team_id",
        );
        invalid(
            s.create_team(&actor(), &TeamSpec::new("x".repeat(300)))
                .await,
            "team_id",
        );
        let mut t = TeamSpec::new("t");
        t.rpm_limit = Some(u64::MAX);
        invalid(s.create_team(&actor(), &t).await, "rpm_limit");
        seed_user(s, "u").await;
        let mut t = TeamSpec::new("t");
        t.members = vec![
            TeamMember::new("u", TeamRole::User),
            TeamMember::new("u", TeamRole::Admin),
        ];
        invalid(s.create_team(&actor(), &t).await, "members");
        assert_eq!(
            s.list_teams(&TeamFilter::default(), Page::default())
                .await
                .unwrap()
                .total,
            0
        );
        let mut entry = spend_entry("r", &PublicId::random(), 1);
        entry.cost = Usd::from_nanos(-5);
        assert!(matches!(
            s.record_spend(&[entry]).await,
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await, 0);
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM audit_log").await, 1);
    }

    // -----------------------------------------------------------------------------------
    // Spend

    async fn key_spend(s: &dyn Store, key: &PublicId) -> Usd {
        s.key_by_public_id(key).await.unwrap().unwrap().spend
    }

    /// A spend-log row of `key` that started now.
    pub(crate) fn spend_entry(request_id: &str, key: &PublicId, cost_nanos: i64) -> SpendEntry {
        let now = Utc::now();
        SpendEntry {
            request_id: request_id.into(),
            key_public_id: Some(key.clone()),
            team_id: None,
            user_id: None,
            organization_id: None,
            model_group: "gpt-4o".into(),
            deployment_id: Some("gpt-4o-east".into()),
            prompt_tokens: 10,
            completion_tokens: 20,
            cost: Usd::from_nanos(cost_nanos),
            status: SpendStatus::Success,
            start_time: now,
            end_time: now,
        }
    }

    async fn spend_totals_exact_under_200_concurrent_calls(ctx: Ctx) {
        let s = ctx.store.clone();
        s.create_organization(&actor(), &OrganizationSpec::new("o", "O"))
            .await
            .unwrap();
        let mut t = TeamSpec::new("t");
        t.organization_id = Some("o".into());
        s.create_team(&actor(), &t).await.unwrap();
        seed_user(s.as_ref(), "u").await;
        let (_, mut k) = new_key(Some("hot"));
        k.team_id = Some("t".into());
        k.user_id = Some("u".into());
        s.insert_key(&actor(), &k).await.unwrap();
        let (_, other) = new_key(Some("other"));
        s.insert_key(&actor(), &other).await.unwrap();

        let mut tasks = Vec::new();
        let mut expected = 0i64;
        for i in 0..200i64 {
            // Awkward amounts (fractions of a cent) that floats could not sum exactly.
            let cost = 1_000_003 * (i % 17 + 1) + i;
            expected += cost;
            let mut e = spend_entry(&format!("req-{i}"), &k.public_id, cost);
            e.team_id = Some("t".into());
            e.user_id = Some("u".into());
            e.organization_id = Some("o".into());
            // Every third call also bills a second key in the same batch.
            let mut batch = vec![e];
            if i % 3 == 0 {
                batch.push(spend_entry(&format!("other-{i}"), &other.public_id, 7));
            }
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.record_spend(&batch).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let key = s.key_by_public_id(&k.public_id).await.unwrap().unwrap();
        assert_eq!(key.spend, Usd::from_nanos(expected));
        assert_eq!(
            s.team("t").await.unwrap().unwrap().spend,
            Usd::from_nanos(expected)
        );
        assert_eq!(
            s.user("u").await.unwrap().unwrap().spend,
            Usd::from_nanos(expected)
        );
        assert_eq!(
            s.organization("o").await.unwrap().unwrap().spend,
            Usd::from_nanos(expected)
        );
        assert_eq!(
            key_spend(s.as_ref(), &other.public_id).await,
            Usd::from_nanos(7 * 67)
        );
        let logged = ctx
            .raw_i64("SELECT CAST(SUM(cost) AS BIGINT) FROM spend_logs WHERE team_id = 't'")
            .await;
        assert_eq!(logged, expected);
        let logs = s
            .spend_logs(
                &SpendLogFilter {
                    key_public_id: Some(k.public_id.clone()),
                    ..Default::default()
                },
                Page::new(1000, 0),
            )
            .await
            .unwrap();
        assert_eq!(logs.total, 200);
        assert_eq!(
            logs.items.iter().map(|e| e.cost.nanos()).sum::<i64>(),
            expected
        );
    }

    async fn spend_is_counted_once_per_request_id(ctx: Ctx) {
        let s = ctx.store();
        let (_, k) = new_key(None);
        s.insert_key(&actor(), &k).await.unwrap();
        let batch = vec![
            spend_entry("a", &k.public_id, 100),
            spend_entry("b", &k.public_id, 200),
            spend_entry("a", &k.public_id, 100),
        ];
        let first = s.record_spend(&batch).await.unwrap();
        assert_eq!(
            first,
            SpendOutcome {
                recorded: 2,
                duplicates: 1
            }
        );
        let again = s.record_spend(&batch).await.unwrap();
        assert_eq!(
            again,
            SpendOutcome {
                recorded: 0,
                duplicates: 3
            }
        );
        assert_eq!(key_spend(s, &k.public_id).await, Usd::from_nanos(300));
        // Spend on a key deleted in the meantime is still logged.
        let gone = PublicId::random();
        s.record_spend(&[spend_entry("c", &gone, 50)])
            .await
            .unwrap();
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await, 3);
        assert_eq!(s.record_spend(&[]).await.unwrap(), SpendOutcome::default());
    }

    /// Batches are written in fixed statement sizes (64, 16, 4, 1 rows); a batch with rows
    /// already stored takes the slower path that skips them. Both keep every other row and
    /// count it once, with its values intact.
    async fn large_batches_keep_every_row_and_skip_known_ones(ctx: Ctx) {
        let s = ctx.store();
        let (_, k) = new_key(None);
        s.insert_key(&actor(), &k).await.unwrap();
        // 85 = 64 + 16 + 4 + 1: every statement size once.
        let batch: Vec<SpendEntry> = (0..85)
            .map(|i| {
                let mut e = spend_entry(&format!("big-{i:03}"), &k.public_id, 1_000 + i);
                e.prompt_tokens = i as u64;
                e
            })
            .collect();
        let expected: i64 = (0..85).map(|i| 1_000 + i).sum();
        assert_eq!(
            s.record_spend(&batch).await.unwrap(),
            SpendOutcome {
                recorded: 85,
                duplicates: 0
            }
        );
        // Three of the next batch's rows are stored already (a retried batch, say).
        let mut next: Vec<SpendEntry> = (85..170)
            .map(|i| spend_entry(&format!("big-{i:03}"), &k.public_id, 10))
            .collect();
        next[0] = batch[0].clone();
        next[40] = batch[40].clone();
        next[84] = batch[84].clone();
        assert_eq!(
            s.record_spend(&next).await.unwrap(),
            SpendOutcome {
                recorded: 82,
                duplicates: 3
            }
        );
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await, 167);
        assert_eq!(
            key_spend(s, &k.public_id).await,
            Usd::from_nanos(expected + 82 * 10)
        );
        // A stored row after 40 new ones in one statement: the statement fails partway (SQLite
        // keeps the rows before the conflict until the transaction is rolled back), and the
        // whole write must be undone before the skipping path runs, or those 40 rows would
        // look stored already and their spend would be lost.
        let mut third: Vec<SpendEntry> = (170..255)
            .map(|i| spend_entry(&format!("big-{i:03}"), &k.public_id, 7))
            .collect();
        third[40] = batch[1].clone();
        assert_eq!(
            s.record_spend(&third).await.unwrap(),
            SpendOutcome {
                recorded: 84,
                duplicates: 1
            }
        );
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await, 251);
        assert_eq!(
            key_spend(s, &k.public_id).await,
            Usd::from_nanos(expected + 82 * 10 + 84 * 7)
        );
        // Values land in their columns.
        assert_eq!(
            ctx.raw_i64("SELECT prompt_tokens FROM spend_logs WHERE request_id = 'big-077'")
                .await,
            77
        );
        assert_eq!(
            ctx.raw_i64("SELECT cost FROM spend_logs WHERE request_id = 'big-077'")
                .await,
            1_077
        );
    }

    async fn spend_logs_filter_and_page(ctx: Ctx) {
        let s = ctx.store();
        let (_, k1) = new_key(None);
        let (_, k2) = new_key(None);
        let t0 = Utc::now() - ChronoDuration::hours(1);
        let mut batch = Vec::new();
        for i in 0..30 {
            let key = if i % 3 == 0 { &k2 } else { &k1 };
            let mut e = spend_entry(&format!("r{i:02}"), &key.public_id, 10);
            e.start_time = t0 + ChronoDuration::minutes(i);
            e.end_time = e.start_time + ChronoDuration::seconds(2);
            e.model_group = if i < 15 { "gpt-4o" } else { "claude" }.into();
            e.status = if i == 29 {
                SpendStatus::Failure
            } else {
                SpendStatus::Success
            };
            batch.push(e);
        }
        s.record_spend(&batch).await.unwrap();
        let all = s
            .spend_logs(&SpendLogFilter::default(), Page::new(5, 0))
            .await
            .unwrap();
        assert_eq!(all.total, 30);
        // Newest first, exactly as recorded.
        assert_eq!(all.items[0].request_id, "r29");
        assert_eq!(all.items[0].status, SpendStatus::Failure);
        assert_eq!(all.items[0].total_tokens(), 30);
        let mut expected = batch[29].clone();
        expected.start_time = all.items[0].start_time;
        expected.end_time = all.items[0].end_time;
        assert_eq!(all.items[0], expected);
        // Stored to the microsecond (both engines, every write path).
        for (stored, sent) in [
            (all.items[0].start_time, batch[29].start_time),
            (all.items[0].end_time, batch[29].end_time),
        ] {
            assert_eq!(
                (stored - sent).num_microseconds(),
                Some(0),
                "{stored} vs {sent}"
            );
        }

        let k2_logs = s
            .spend_logs(
                &SpendLogFilter {
                    key_public_id: Some(k2.public_id.clone()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(k2_logs.total, 10);
        let window = s
            .spend_logs(
                &SpendLogFilter {
                    since: Some(t0 + ChronoDuration::minutes(10)),
                    until: Some(t0 + ChronoDuration::minutes(20)),
                    model_group: Some("claude".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        // Minutes 15..=19.
        assert_eq!(window.total, 5);
        let page2 = s
            .spend_logs(&SpendLogFilter::default(), Page::new(5, 5))
            .await
            .unwrap();
        assert_eq!(page2.items[0].request_id, "r24");
    }

    async fn old_spend_logs_are_deleted_in_batches_and_totals_stay(ctx: Ctx) {
        let s = ctx.store();
        let (_, spec) = new_key(Some("k"));
        s.insert_key(&actor(), &spec).await.unwrap();
        // Whole microseconds, as the store keeps times: a row stored at the cutoff is at it.
        let cutoff = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6) - ChronoDuration::days(7);
        let batch: Vec<SpendEntry> = (0..5)
            .map(|i| {
                let mut e = spend_entry(&format!("r{i}"), &spec.public_id, 100);
                // r0..r2 started before the cutoff (r2 just before), r3 at it, r4 now.
                let age = [ChronoDuration::days(30), ChronoDuration::days(8)];
                if let Some(a) = age.get(i) {
                    e.start_time = cutoff - *a;
                } else if i == 2 {
                    e.start_time = cutoff - ChronoDuration::seconds(1);
                } else if i == 3 {
                    e.start_time = cutoff;
                }
                e.end_time = e.start_time;
                e
            })
            .collect();
        s.record_spend(&batch).await.unwrap();
        assert_eq!(s.delete_spend_logs_before(cutoff, 2).await.unwrap(), 2);
        assert_eq!(s.delete_spend_logs_before(cutoff, 2).await.unwrap(), 1);
        assert_eq!(s.delete_spend_logs_before(cutoff, 2).await.unwrap(), 0);
        let left = s
            .spend_logs(&SpendLogFilter::default(), Page::default())
            .await
            .unwrap();
        let mut ids: Vec<&str> = left.items.iter().map(|e| e.request_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["r3", "r4"], "rows at or after the cutoff stay");
        assert_eq!(key_spend(s, &spec.public_id).await.nanos(), 500);
    }

    async fn due_budgets_reset_spend_and_move_to_next_period(ctx: Ctx) {
        let s = ctx.store();
        let mut t = TeamSpec::new("t");
        t.budget_duration = Some("1h".into());
        s.create_team(&actor(), &t).await.unwrap();
        let (_, mut hourly) = new_key(Some("hourly"));
        hourly.budget_duration = Some("1h".into());
        hourly.team_id = Some("t".into());
        let (_, mut monthly) = new_key(Some("monthly"));
        monthly.budget_duration = Some("30d".into());
        let (_, plain) = new_key(Some("plain"));
        for k in [&hourly, &monthly, &plain] {
            s.insert_key(&actor(), k).await.unwrap();
        }
        let mut batch = Vec::new();
        for (i, k) in [&hourly, &monthly, &plain].into_iter().enumerate() {
            let mut e = spend_entry(&format!("r{i}"), &k.public_id, 1_000);
            e.team_id = Some("t".into());
            batch.push(e);
        }
        s.record_spend(&batch).await.unwrap();
        let first_reset = s
            .key_by_alias("hourly")
            .await
            .unwrap()
            .unwrap()
            .budget_reset_at
            .unwrap();

        // Nothing is due yet.
        assert_eq!(s.reset_due_budgets(Utc::now()).await.unwrap(), 0);
        // Two and a half hours later: the hourly key and team reset, to the next hour mark.
        let later = Utc::now() + ChronoDuration::minutes(150);
        assert_eq!(s.reset_due_budgets(later).await.unwrap(), 2);
        let k = s.key_by_alias("hourly").await.unwrap().unwrap();
        assert_eq!(k.spend, Usd::ZERO);
        assert_eq!(
            k.budget_reset_at,
            Some(first_reset + ChronoDuration::hours(2))
        );
        assert!(k.budget_reset_at.unwrap() > later);
        assert_eq!(s.team("t").await.unwrap().unwrap().spend, Usd::ZERO);
        for alias in ["monthly", "plain"] {
            let k = s.key_by_alias(alias).await.unwrap().unwrap();
            assert_eq!(k.spend, Usd::from_nanos(1_000), "{alias}");
        }
        // The history stays.
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await, 3);
        assert_eq!(s.reset_due_budgets(later).await.unwrap(), 0);
    }

    // -----------------------------------------------------------------------------------
    // Audit

    /// Other instances poll the change version: it must move with every committed admin
    /// change and budget reset, once per transaction, and never for spend or a refused change.
    async fn change_version_counts_committed_changes_only(ctx: Ctx) {
        let s = ctx.store();
        let v0 = s.change_version().await.unwrap();
        assert_eq!(v0, 0, "a new store starts at 0");

        let mut t = TeamSpec::new("t");
        t.budget_duration = Some("1h".into());
        s.create_team(&actor(), &t).await.unwrap();
        assert_eq!(s.change_version().await.unwrap(), 1);

        // One transaction with several audit rows (a team and the users it creates) is one.
        let mut members = TeamSpec::new("with-members");
        members.members = vec![
            TeamMember::new("u1", TeamRole::User),
            TeamMember::new("u2", TeamRole::Admin),
        ];
        s.create_team_and_users(&actor(), &members).await.unwrap();
        assert_eq!(s.change_version().await.unwrap(), 2);

        let (_, mut key) = new_key(Some("k"));
        key.team_id = Some("t".into());
        s.insert_key(&actor(), &key).await.unwrap();
        assert_eq!(s.change_version().await.unwrap(), 3);

        // Refused changes are rolled back, their count with them.
        let (_, dup) = new_key(Some("k"));
        s.insert_key(&actor(), &dup).await.unwrap_err();
        s.create_team(&actor(), &TeamSpec::new("t"))
            .await
            .unwrap_err();
        assert_eq!(s.change_version().await.unwrap(), 3);

        // Spend is not an admin change; a budget reset that zeroes spend is.
        let mut e = spend_entry("r1", &key.public_id, 1_000);
        e.team_id = Some("t".into());
        s.record_spend(&[e]).await.unwrap();
        assert_eq!(s.change_version().await.unwrap(), 3);
        assert_eq!(s.reset_due_budgets(Utc::now()).await.unwrap(), 0);
        assert_eq!(s.change_version().await.unwrap(), 3);
        let later = Utc::now() + ChronoDuration::minutes(90);
        assert_eq!(s.reset_due_budgets(later).await.unwrap(), 1);
        assert_eq!(s.change_version().await.unwrap(), 4);

        s.delete_keys(&actor(), std::slice::from_ref(&key.public_id))
            .await
            .unwrap();
        assert_eq!(s.change_version().await.unwrap(), 5);
    }

    async fn audit_entries_record_changes_without_secret_values(ctx: Ctx) {
        let s = ctx.store();
        let admin = Actor::new("user:alice");
        seed_credential(s, "openai-prod", UPSTREAM_SECRET).await;
        s.update_credential(
            &admin,
            "openai-prod",
            &CredentialPatch {
                values: Some(BTreeMap::from([(
                    "api_key".into(),
                    SecretString::from(format!("{UPSTREAM_SECRET}-v2")),
                )])),
                credential_info: Some(obj(json!({"custom_llm_provider": "azure"}))),
            },
        )
        .await
        .unwrap();
        let (key_secret, k) = new_key(Some("audited"));
        s.insert_key(&admin, &k).await.unwrap();
        s.update_key(
            &admin,
            &k.public_id,
            &KeyPatch {
                rpm_limit: Some(Some(5)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        s.delete_credential(&admin, "openai-prod").await.unwrap();
        // An import that carries credential values writes audit entries too.
        s.apply_state(
            &Actor::new("import"),
            &StateChanges {
                upsert: Upserts {
                    credentials: vec![CredentialUpsert {
                        credential_name: "imported".into(),
                        credential_info: JsonObject::new(),
                        values: Some(BTreeMap::from([(
                            "api_key".into(),
                            SecretString::from(format!("{UPSTREAM_SECRET}-imported")),
                        )])),
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();

        let log = s
            .audit_log(&AuditFilter::default(), Page::new(1000, 0))
            .await
            .unwrap();
        assert_eq!(log.total, 6);
        let dump = serde_json::to_string(&log.items).unwrap();
        assert!(
            !dump.contains(UPSTREAM_SECRET),
            "secret in audit log: {dump}"
        );
        assert!(!dump.contains(key_secret.expose_secret()));
        // Raw rows too, not just what the API decodes.
        let raw = ctx
            .raw_strings(
                "SELECT coalesce(before_json, '') || coalesce(after_json, '') FROM audit_log",
            )
            .await
            .concat();
        assert!(!raw.contains(UPSTREAM_SECRET));

        let newest = &log.items[0];
        assert_eq!(newest.actor, "import");
        assert_eq!(newest.object_kind, "credential");
        assert_eq!(
            newest.after.as_ref().unwrap()["value_names"],
            json!(["api_key"])
        );

        let key_updates = s
            .audit_log(
                &AuditFilter {
                    object_kind: Some(ObjectKind::Key),
                    object_id: Some(k.public_id.to_string()),
                    actor: Some("user:alice".into()),
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(key_updates.total, 2);
        let update = &key_updates.items[0];
        assert_eq!(update.action, "update");
        assert_eq!(update.before.as_ref().unwrap()["rpm_limit"], json!(null));
        assert_eq!(update.after.as_ref().unwrap()["rpm_limit"], json!(5));
        assert_eq!(key_updates.items[1].action, "create");
        assert!(key_updates.items[1].before.is_none());

        let cred = s
            .audit_log(
                &AuditFilter {
                    object_kind: Some(ObjectKind::Credential),
                    object_id: Some("openai-prod".into()),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        let actions: Vec<&str> = cred.items.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["delete", "update", "create"]);
        assert_eq!(cred.items[1].actor, "user:alice");
        assert!(cred.items[0].after.is_none());
    }

    // -----------------------------------------------------------------------------------
    // Schema and transactions

    /// sqlx 0.8.6's reaper can spin forever ("No pool reaper" in the store module's docs):
    /// neither an idle timeout nor a lifetime may start it.
    async fn pools_run_without_a_reaper(ctx: Ctx) {
        let reaper = match &ctx.raw {
            super::Raw::Sqlite(s) => {
                let o = s.pool().options();
                (o.get_idle_timeout(), o.get_max_lifetime())
            }
            super::Raw::Postgres(s) => {
                let o = s.pool().options();
                (o.get_idle_timeout(), o.get_max_lifetime())
            }
        };
        assert_eq!(reaper, (None, None));
    }

    async fn schema_newer_than_binary_is_refused(ctx: Ctx) {
        let binary = SqliteStore::schema_version();
        assert_eq!(binary, PgStore::schema_version());
        // Re-opening a current database is fine (migrations are idempotent).
        ctx.reopen(options()).await.unwrap();
        ctx.insert_future_migration(9_999).await;
        let err = ctx.reopen(options()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { database: 9_999, binary: b } if b == binary),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("9999") && msg.contains(&format!("({binary})")),
            "{msg}"
        );
    }

    /// Every kind of object, so a snapshot exercises every table.
    async fn populate(s: &dyn Store) {
        let a = actor();
        s.put_general_setting(&a, "max_request_body_bytes", &json!(2048))
            .await
            .unwrap();
        s.put_router_settings(&a, &settings_with_fallbacks("gpt-4o", &["claude"]))
            .await
            .unwrap();
        s.create_budget(
            &a,
            &BudgetSpec {
                max_budget: Usd::from_dollars(1000.0),
                budget_duration: Some("30d".into()),
                ..BudgetSpec::new("org-budget")
            },
        )
        .await
        .unwrap();
        seed_credential(s, "openai-prod", UPSTREAM_SECRET).await;
        s.create_model(
            &a,
            &ModelSpec {
                model_id: "gpt-4o-east".into(),
                model_name: "gpt-4o".into(),
                litellm_params: obj(json!({"model": "openai/gpt-4o"})),
                credential_name: Some("openai-prod".into()),
                model_info: obj(json!({"mode": "chat"})),
            },
        )
        .await
        .unwrap();
        let mut org = OrganizationSpec::new("org", "Org");
        org.budget_id = Some("org-budget".into());
        s.create_organization(&a, &org).await.unwrap();
        seed_user(s, "alice").await;
        seed_user(s, "bob").await;
        let mut team = TeamSpec::new("search");
        team.team_alias = Some("Search".into());
        team.organization_id = Some("org".into());
        team.router_settings = Some(settings_with_fallbacks("gpt-4o", &["claude-sonnet"]));
        team.members = vec![
            TeamMember::new("alice", TeamRole::Admin),
            TeamMember::new("bob", TeamRole::User),
        ];
        s.create_team(&a, &team).await.unwrap();
        for (alias, fallbacks) in [("search-prod", Some(vec![])), ("search-dev", None)] {
            let (_, mut k) = new_key(Some(alias));
            k.team_id = Some("search".into());
            k.user_id = Some("alice".into());
            k.router_settings = fallbacks.map(|f| RouterSettings {
                fallbacks: Some(f),
                ..Default::default()
            });
            k.metadata = obj(json!({"b": 1, "a": [3, {"y": 1, "x": 2}]}));
            s.insert_key(&a, &k).await.unwrap();
        }
        s.put_access_group(
            &a,
            &AccessGroup {
                name: "beta".into(),
                models: vec!["gpt-5".into()],
            },
        )
        .await
        .unwrap();
        s.put_tag(
            &a,
            &Tag {
                name: "prod".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }

    async fn failing_last_statement_leaves_state_unchanged(ctx: Ctx) {
        let s = ctx.store();
        populate(s).await;
        let before = s.read_state().await.unwrap();
        let audit_before = ctx.raw_i64("SELECT COUNT(*) FROM audit_log").await;
        let spend_before = ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await;

        // Lots of valid work of every kind, then one bad object last.
        let mut teams: Vec<TeamSpec> = (0..50)
            .map(|i| TeamSpec::new(format!("new-team-{i}")))
            .collect();
        let mut renamed = before.teams[0].spec.clone();
        renamed.team_alias = Some("Renamed".into());
        renamed.members.clear();
        teams.push(renamed);
        let mut keys: Vec<KeySpec> = (0..100)
            .map(|i| {
                let (_, mut k) = new_key(Some(&format!("bulk-{i}")));
                k.team_id = Some(format!("new-team-{}", i % 50));
                k
            })
            .collect();
        let (_, mut bad) = new_key(Some("the-bad-one"));
        bad.team_id = Some("no-such-team".into());
        keys.push(bad);
        let changes = StateChanges {
            upsert: Upserts {
                general_settings: BTreeMap::from([("new".into(), json!(true))]),
                router_settings: Some(RouterSettings::default()),
                users: vec![UserSpec::new("carol")],
                teams,
                keys,
                tags: vec![Tag {
                    name: "new-tag".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            delete: Deletes {
                access_groups: vec!["beta".into()],
                keys: vec![before.keys[0].spec.public_id.clone()],
                ..Default::default()
            },
        };
        let err = s.apply_state(&actor(), &changes).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnknownReference { kind: ObjectKind::Key, target: ObjectKind::Team, ref value, .. }
                    if value == "no-such-team"
            ),
            "{err}"
        );
        assert_eq!(s.read_state().await.unwrap(), before);
        assert_eq!(
            ctx.raw_i64("SELECT COUNT(*) FROM audit_log").await,
            audit_before
        );
        assert_eq!(
            ctx.raw_i64("SELECT COUNT(*) FROM spend_logs").await,
            spend_before
        );

        // The same with a failure the database raises itself (a unique alias) on the
        // last object of the last kind.
        let mut changes = changes;
        changes.upsert.keys.pop();
        // before.keys[0] is deleted by this import; before.keys[1] keeps its alias.
        let taken = before.keys[1].spec.key_alias.clone().unwrap();
        let (_, mut clash) = new_key(Some(&taken));
        clash.team_id = Some("search".into());
        changes.upsert.keys.push(clash);
        let err = s.apply_state(&actor(), &changes).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    kind: ObjectKind::Key,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(s.read_state().await.unwrap(), before);
        assert_eq!(
            ctx.raw_i64("SELECT COUNT(*) FROM audit_log").await,
            audit_before
        );

        // And a spend batch whose last entry is bad writes nothing.
        let k = &before.keys[0].spec.public_id;
        let mut bad_entry = spend_entry("z", k, 1);
        bad_entry.model_group = String::new();
        assert!(s
            .record_spend(&[spend_entry("y", k, 1), bad_entry])
            .await
            .is_err());
        assert_eq!(s.read_state().await.unwrap(), before);
    }

    /// The changes that recreate `state` in an empty store (what an import would send).
    async fn changes_from(s: &dyn Store, state: &StateSnapshot) -> StateChanges {
        let mut credentials = Vec::new();
        for c in &state.credentials {
            credentials.push(CredentialUpsert {
                credential_name: c.credential_name.clone(),
                credential_info: c.credential_info.clone(),
                values: s.credential_values(&c.credential_name).await.unwrap(),
            });
        }
        StateChanges {
            upsert: Upserts {
                general_settings: state.general_settings.clone(),
                router_settings: state.router_settings.clone(),
                budgets: state.budgets.iter().map(|b| b.spec.clone()).collect(),
                credentials,
                models: state.models.iter().map(|m| m.spec.clone()).collect(),
                organizations: state.organizations.iter().map(|o| o.spec.clone()).collect(),
                users: state.users.iter().map(|u| u.spec.clone()).collect(),
                teams: state.teams.iter().map(|t| t.spec.clone()).collect(),
                keys: state.keys.iter().map(|k| k.spec.clone()).collect(),
                access_groups: state.access_groups.clone(),
                tags: state.tags.clone(),
            },
            ..Default::default()
        }
    }

    /// What an export would contain: specs only, in store order, as JSON.
    fn exported(state: &StateSnapshot) -> String {
        let cred: Vec<_> = state
            .credentials
            .iter()
            .map(|c| (&c.credential_name, &c.credential_info, &c.value_names))
            .collect();
        serde_json::to_string_pretty(&json!({
            "general_settings": state.general_settings,
            "router_settings": state.router_settings,
            "budgets": state.budgets.iter().map(|b| &b.spec).collect::<Vec<_>>(),
            "credentials": cred,
            "models": state.models.iter().map(|m| &m.spec).collect::<Vec<_>>(),
            "organizations": state.organizations.iter().map(|o| &o.spec).collect::<Vec<_>>(),
            "users": state.users.iter().map(|u| &u.spec).collect::<Vec<_>>(),
            "teams": state.teams.iter().map(|t| &t.spec).collect::<Vec<_>>(),
            "keys": state.keys.iter().map(|k| &k.spec).collect::<Vec<_>>(),
            "access_groups": state.access_groups,
            "tags": state.tags,
        }))
        .unwrap()
    }

    async fn apply_state_round_trip_is_deterministic(ctx: Ctx) {
        let s = ctx.store();
        populate(s).await;
        let a = s.read_state().await.unwrap();
        assert_eq!(
            s.read_state().await.unwrap(),
            a,
            "two reads of unchanged state differ"
        );
        let changes = changes_from(s, &a).await;

        let target = ctx.fresh().await;
        let outcome = target
            .apply_state(&Actor::new("import"), &changes)
            .await
            .unwrap();
        let totals = outcome.totals();
        assert_eq!(totals.updated, 0);
        // settings, router settings, budget, credential, model, org, 2 users, team, 2 keys,
        // access group, tag.
        assert_eq!(totals.created, 13);
        let b = target.read_state().await.unwrap();
        assert_eq!(exported(&b), exported(&a));
        assert_eq!(
            target
                .credential_values("openai-prod")
                .await
                .unwrap()
                .unwrap()["api_key"]
                .expose_secret(),
            UPSTREAM_SECRET
        );

        // Applying the same changes again replaces every object with itself.
        let again = target
            .apply_state(&Actor::new("import"), &changes)
            .await
            .unwrap();
        assert_eq!(again.totals().created, 0);
        assert_eq!(exported(&target.read_state().await.unwrap()), exported(&a));

        // A redacted credential (no values) keeps the target's stored ones.
        let mut keep = StateChanges::default();
        keep.upsert.credentials = vec![CredentialUpsert {
            credential_name: "openai-prod".into(),
            credential_info: obj(json!({"custom_llm_provider": "openai"})),
            values: None,
        }];
        target.apply_state(&actor(), &keep).await.unwrap();
        assert_eq!(
            target
                .credential_values("openai-prod")
                .await
                .unwrap()
                .unwrap()["api_key"]
                .expose_secret(),
            UPSTREAM_SECRET
        );
        keep.upsert.credentials[0].credential_name = "unknown-cred".into();
        assert!(matches!(
            target.apply_state(&actor(), &keep).await,
            Err(StoreError::Invalid { .. })
        ));

        // Spend survives an upsert: it is the store's, not the document's.
        let k = &a.keys[0].spec;
        target
            .record_spend(&[spend_entry("r", &k.public_id, 999)])
            .await
            .unwrap();
        target.apply_state(&actor(), &changes).await.unwrap();
        assert_eq!(
            target
                .key_by_public_id(&k.public_id)
                .await
                .unwrap()
                .unwrap()
                .spend,
            Usd::from_nanos(999)
        );

        // Deletes: everything, in one transaction.
        let all_gone = StateChanges {
            delete: Deletes {
                general_settings: a.general_settings.keys().cloned().collect(),
                router_settings: true,
                budgets: a.budgets.iter().map(|b| b.spec.budget_id.clone()).collect(),
                credentials: a
                    .credentials
                    .iter()
                    .map(|c| c.credential_name.clone())
                    .collect(),
                models: a.models.iter().map(|m| m.spec.model_id.clone()).collect(),
                organizations: a
                    .organizations
                    .iter()
                    .map(|o| o.spec.organization_id.clone())
                    .collect(),
                users: a.users.iter().map(|u| u.spec.user_id.clone()).collect(),
                teams: a.teams.iter().map(|t| t.spec.team_id.clone()).collect(),
                keys: a.keys.iter().map(|k| k.spec.public_id.clone()).collect(),
                access_groups: a.access_groups.iter().map(|g| g.name.clone()).collect(),
                tags: a.tags.iter().map(|t| t.name.clone()).collect(),
            },
            ..Default::default()
        };
        let outcome = target.apply_state(&actor(), &all_gone).await.unwrap();
        assert_eq!(outcome.totals().deleted, 13);
        assert_eq!(target.read_state().await.unwrap(), StateSnapshot::default());
    }

    async fn apply_state_checks_references_at_the_end(ctx: Ctx) {
        let s = ctx.store();
        seed_team(s, "old").await;
        let (_, mut k) = new_key(Some("mover"));
        k.team_id = Some("old".into());
        s.insert_key(&actor(), &k).await.unwrap();

        // Deleting a team while a key stays on it is refused: the team is still in use.
        let del_only = StateChanges {
            delete: Deletes {
                teams: vec!["old".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            s.apply_state(&actor(), &del_only).await,
            Err(StoreError::InUse {
                kind: ObjectKind::Team,
                by: ObjectKind::Key,
                ..
            })
        ));
        assert!(s.team("old").await.unwrap().is_some());

        // Moving the key to a team created by the same import, in any order, works.
        let mut moved = k.clone();
        moved.team_id = Some("new".into());
        let mut changes = del_only;
        changes.upsert.keys = vec![moved];
        changes.upsert.teams = vec![TeamSpec::new("new")];
        s.apply_state(&actor(), &changes).await.unwrap();
        assert!(s.team("old").await.unwrap().is_none());
        assert_eq!(
            s.key_by_alias("mover")
                .await
                .unwrap()
                .unwrap()
                .spec
                .team_id
                .as_deref(),
            Some("new")
        );

        // A key may take the alias of a key the same import deletes.
        let (_, replacement) = new_key(Some("mover"));
        let swap = StateChanges {
            upsert: Upserts {
                keys: vec![replacement.clone()],
                ..Default::default()
            },
            delete: Deletes {
                keys: vec![k.public_id.clone()],
                ..Default::default()
            },
        };
        s.apply_state(&actor(), &swap).await.unwrap();
        assert_eq!(
            s.key_by_alias("mover")
                .await
                .unwrap()
                .unwrap()
                .spec
                .public_id,
            replacement.public_id
        );

        // Deleting something that is not there fails the whole import.
        let missing = StateChanges {
            upsert: Upserts {
                tags: vec![Tag {
                    name: "t".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            delete: Deletes {
                users: vec!["nobody".into()],
                ..Default::default()
            },
        };
        assert!(matches!(
            s.apply_state(&actor(), &missing).await,
            Err(StoreError::NotFound {
                kind: ObjectKind::User,
                ..
            })
        ));
        assert!(s.tag("t").await.unwrap().is_none());
    }

    async fn import_of_10000_keys_and_1000_teams(ctx: Ctx) {
        let s = ctx.store();
        let teams: Vec<TeamSpec> = (0..1000)
            .map(|i| {
                let mut t = TeamSpec::new(format!("team-{i:04}"));
                t.team_alias = Some(format!("Team {i}"));
                t.max_budget = Usd::from_dollars(100.0);
                t.router_settings = Some(settings_with_fallbacks("gpt-4o", &["claude"]));
                t
            })
            .collect();
        let keys: Vec<KeySpec> = (0..10_000)
            .map(|i| {
                let hash = TokenHash::of(&format!("sk-bulk-{i}"));
                let mut k = KeySpec::new(PublicId::for_legacy(&hash), hash);
                k.key_alias = Some(format!("key-{i:05}"));
                k.team_id = Some(format!("team-{:04}", i % 1000));
                k.models = vec!["gpt-4o".into()];
                k.rpm_limit = Some(60);
                k.metadata = obj(json!({"n": i}));
                k
            })
            .collect();
        let changes = StateChanges {
            upsert: Upserts {
                teams,
                keys,
                ..Default::default()
            },
            ..Default::default()
        };
        let started = tokio::time::Instant::now();
        let outcome = s
            .apply_state(&Actor::new("import"), &changes)
            .await
            .unwrap();
        let import = started.elapsed();
        assert_eq!(outcome.totals().created, 11_000);
        let started = tokio::time::Instant::now();
        let state = s.read_state().await.unwrap();
        let export = started.elapsed();
        assert_eq!(state.teams.len(), 1000);
        assert_eq!(state.keys.len(), 10_000);
        assert!(state
            .keys
            .windows(2)
            .all(|w| w[0].spec.public_id < w[1].spec.public_id));
        let started = tokio::time::Instant::now();
        let outcome = s
            .apply_state(&Actor::new("import"), &changes)
            .await
            .unwrap();
        let reimport = started.elapsed();
        assert_eq!(outcome.totals().updated, 11_000);
        let backend = if ctx.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "[{backend}] 10,000 keys + 1,000 teams: import {import:?}, read_state {export:?}, \
                 re-import {reimport:?}"
            );
        }
        assert_eq!(ctx.raw_i64("SELECT COUNT(*) FROM audit_log").await, 22_000);
        let paged = s
            .list_keys(
                &KeyFilter {
                    team_id: Some("team-0007".into()),
                    ..Default::default()
                },
                Page::new(5, 0),
            )
            .await
            .unwrap();
        assert_eq!(paged.total, 10);
    }

    /// Opening by URL: the scheme picks the backend, a SQLite file is created if missing.
    #[tokio::test]
    async fn connect_picks_backend_by_url_and_creates_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.db");
        let url = format!("sqlite://{}", path.display());
        let store = switchyard::store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), switchyard::store::Backend::Sqlite);
        store.ping().await.unwrap();
        assert!(path.exists());
        seed_team(store.as_ref(), "kept").await;
        store.close().await;
        // Reopening the file keeps its data and schema.
        let again = switchyard::store::connect(&url).await.unwrap();
        assert!(again.team("kept").await.unwrap().is_some());
        again.close().await;

        let mem = switchyard::store::connect("sqlite::memory:").await.unwrap();
        mem.ping().await.unwrap();

        let err = match switchyard::store::connect("mysql://user:hunter2@db/x").await {
            Err(e) => e,
            Ok(_) => panic!("mysql accepted"),
        };
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
        assert!(!err.to_string().contains("hunter2"));
    }
}

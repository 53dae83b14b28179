//! Export and import of 10,000 keys and 1,000 teams on SQLite and PostgreSQL (issue 5's
//! targets: each under 2 s on SQLite, under 5 s on PostgreSQL). Prints one line per step.
//! PostgreSQL runs when `SWITCHYARD_TEST_POSTGRES_URL` is set, in a schema of its own that
//! is dropped afterwards. Run: `cargo bench -p switchyard --bench state`.

use std::sync::Arc;
use tokio::time::Instant;

use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::Executor;
use switchyard::state::{self, Format, ImportOptions, SecretsMode};
use switchyard::store::keys::{self, KeyPrefix};
use switchyard::store::{
    Actor, KeySpec, PgStore, SealPurpose, SecretCipher, SqliteStore, StateChanges, Store,
    StoreOptions, TeamSpec, Usd,
};

const KEYS: usize = 10_000;
const TEAMS: usize = 1_000;
const SALT: &str = "bench-salt";

fn options() -> StoreOptions {
    StoreOptions::default()
        .with_cipher(SecretCipher::for_credentials(&SecretString::from(SALT)).expect("cipher"))
}

fn population() -> StateChanges {
    let mut c = StateChanges::default();
    c.upsert.teams = (0..TEAMS)
        .map(|i| {
            let mut t = TeamSpec::new(format!("team-{i:04}"));
            t.team_alias = Some(format!("Team {i}"));
            t.rpm_limit = Some(100 + i as u64);
            t.max_budget = Usd::from_dollars(10.0 + i as f64);
            t
        })
        .collect();
    c.upsert.keys = (0..KEYS)
        .map(|i| {
            let g = keys::generate(&KeyPrefix::default());
            let mut k = KeySpec::new(g.public_id, g.hash);
            k.key_alias = Some(format!("key-{i:05}"));
            k.team_id = Some(format!("team-{:04}", i % TEAMS));
            k.models = vec!["gpt-4o".into(), "claude".into()];
            k.tpm_limit = Some(10_000);
            k.metadata = [("owner".to_owned(), serde_json::json!(format!("svc-{i}")))].into();
            k
        })
        .collect();
    c
}

async fn run(name: &str, source: Arc<dyn Store>, target: Arc<dyn Store>) {
    let actor = Actor::new("bench");
    source
        .apply_state(&actor, &population())
        .await
        .expect("seed");
    let opts = state::ExportOptions {
        secrets: SecretsMode::Redacted,
        ..Default::default()
    };

    let t = Instant::now();
    let doc = state::export(source.as_ref(), None, &opts)
        .await
        .expect("export");
    let text = doc.render(Format::Yaml);
    let export = t.elapsed();

    let import_opts = ImportOptions {
        export_cipher: Some(
            SecretCipher::derive(&SecretString::from(SALT), SealPurpose::ExportSecrets)
                .expect("cipher"),
        ),
        ..Default::default()
    };
    let t = Instant::now();
    let parsed = state::parse_document(&text, state::DEFAULT_MAX_BYTES).expect("parse");
    let parse = t.elapsed();
    let plan = state::plan(target.as_ref(), None, parsed, &import_opts)
        .await
        .expect("plan");
    let planned = t.elapsed();
    state::apply(target.as_ref(), &actor, &plan)
        .await
        .expect("apply");
    let import = t.elapsed();
    assert_eq!(plan.summary.create, KEYS + TEAMS);

    let t = Instant::now();
    let again = state::parse_document(&text, state::DEFAULT_MAX_BYTES).expect("parse");
    let noop = state::plan(target.as_ref(), None, again, &import_opts)
        .await
        .expect("plan");
    let reimport = t.elapsed();
    assert!(noop.is_noop());

    let t = Instant::now();
    let second = state::export(target.as_ref(), None, &opts)
        .await
        .expect("export")
        .render(Format::Yaml);
    let export2 = t.elapsed();
    assert_eq!(second, text, "round trip changed the document");

    println!(
        "{name:<10} {KEYS} keys + {TEAMS} teams, {:.1} MiB YAML: export {:>6.0} ms | import {:>6.0} ms \
         (parse {:.0}, plan {:.0}, apply {:.0}) | re-import plan {:>6.0} ms | re-export {:>6.0} ms",
        text.len() as f64 / (1024.0 * 1024.0),
        export.as_secs_f64() * 1e3,
        import.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3,
        (planned - parse).as_secs_f64() * 1e3,
        (import - planned).as_secs_f64() * 1e3,
        reimport.as_secs_f64() * 1e3,
        export2.as_secs_f64() * 1e3,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = |n: &str| format!("sqlite://{}", dir.path().join(n).display());
        let source: Arc<dyn Store> = Arc::new(
            SqliteStore::connect(&url("src.db"), options())
                .await
                .expect("sqlite"),
        );
        let target: Arc<dyn Store> = Arc::new(
            SqliteStore::connect(&url("dst.db"), options())
                .await
                .expect("sqlite"),
        );
        run("sqlite", source, target).await;

        let Ok(pg_url) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL") else {
            println!("postgres   skipped: SWITCHYARD_TEST_POSTGRES_URL not set");
            return;
        };
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg_url)
            .await
            .expect("postgres");
        let mut schemas = Vec::new();
        let mut stores: Vec<Arc<dyn Store>> = Vec::new();
        for _ in 0..2 {
            let schema = format!("sy_bench_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
                .await
                .expect("schema");
            schemas.push(schema.clone());
            let pool = switchyard::store::pool_options::<sqlx::Postgres>(
                4,
                std::time::Duration::from_secs(30),
            )
            .after_connect(move |conn, _| {
                let set = format!("SET search_path TO \"{schema}\"");
                Box::pin(async move {
                    conn.execute(set.as_str()).await?;
                    Ok(())
                })
            })
            .connect(&pg_url)
            .await
            .expect("postgres");
            stores.push(Arc::new(
                PgStore::open(pool, options()).await.expect("pg store"),
            ));
        }
        run("postgres", stores[0].clone(), stores[1].clone()).await;
        for s in &stores {
            s.close().await;
        }
        for schema in schemas {
            admin
                .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
                .await
                .expect("drop schema");
        }
    });
}

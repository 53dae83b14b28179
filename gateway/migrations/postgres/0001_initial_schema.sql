-- Switchyard store, schema version 1 (PostgreSQL).
-- Money is BIGINT nano-dollars (1e-9 USD): totals are exact sums of their spend logs.
-- JSON is TEXT, written with sorted keys, so exports are byte-stable.
-- Times are TIMESTAMPTZ (microseconds, like the SQLite side).
-- Foreign keys are DEFERRABLE INITIALLY IMMEDIATE: checked per statement, except inside an
-- import, which defers them to commit (SET CONSTRAINTS ALL DEFERRED).
-- Keep in step with ../sqlite/0001_initial_schema.sql: one conformance suite covers both.

CREATE TABLE budgets (
    budget_id             TEXT NOT NULL PRIMARY KEY,
    max_budget            BIGINT,
    soft_budget           BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    rpm_limit             BIGINT,
    tpm_limit             BIGINT,
    max_parallel_requests BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE TABLE organizations (
    organization_id    TEXT NOT NULL PRIMARY KEY,
    organization_alias TEXT NOT NULL,
    budget_id          TEXT REFERENCES budgets (budget_id) DEFERRABLE INITIALLY IMMEDIATE,
    models             TEXT NOT NULL,
    metadata           TEXT NOT NULL,
    spend              BIGINT NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX organizations_budget_id_idx ON organizations (budget_id);

CREATE TABLE users (
    user_id         TEXT NOT NULL PRIMARY KEY,
    user_email      TEXT,
    user_role       TEXT NOT NULL,
    models          TEXT NOT NULL,
    max_budget      BIGINT,
    soft_budget     BIGINT,
    budget_duration TEXT,
    budget_reset_at TIMESTAMPTZ,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    metadata        TEXT NOT NULL,
    spend           BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_user_email_idx ON users (user_email);

CREATE TABLE teams (
    team_id               TEXT NOT NULL PRIMARY KEY,
    team_alias            TEXT UNIQUE,
    organization_id       TEXT REFERENCES organizations (organization_id) DEFERRABLE INITIALLY IMMEDIATE,
    models                TEXT NOT NULL,
    max_budget            BIGINT,
    soft_budget           BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    rpm_limit             BIGINT,
    tpm_limit             BIGINT,
    max_parallel_requests BIGINT,
    router_settings       TEXT,
    metadata              TEXT NOT NULL,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    spend                 BIGINT NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX teams_organization_id_idx ON teams (organization_id);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
    role    TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_id_idx ON team_members (user_id);

-- Only SHA-256 of the whole key is stored; public_id is the stable handle.
CREATE TABLE virtual_keys (
    public_id             TEXT NOT NULL PRIMARY KEY,
    token_hash            TEXT NOT NULL UNIQUE,
    key_alias             TEXT UNIQUE,
    team_id               TEXT REFERENCES teams (team_id) DEFERRABLE INITIALLY IMMEDIATE,
    user_id               TEXT REFERENCES users (user_id) DEFERRABLE INITIALLY IMMEDIATE,
    models                TEXT NOT NULL,
    max_budget            BIGINT,
    soft_budget           BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    rpm_limit             BIGINT,
    tpm_limit             BIGINT,
    max_parallel_requests BIGINT,
    expires_at            TIMESTAMPTZ,
    metadata              TEXT NOT NULL,
    tags                  TEXT NOT NULL,
    aliases               TEXT NOT NULL,
    router_settings       TEXT,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    spend                 BIGINT NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL,
    created_by            TEXT,
    updated_at            TIMESTAMPTZ NOT NULL
);
-- Key lists filter by team or user and show the newest first.
CREATE INDEX virtual_keys_team_id_idx ON virtual_keys (team_id, created_at);
CREATE INDEX virtual_keys_user_id_idx ON virtual_keys (user_id, created_at);
CREATE INDEX virtual_keys_created_at_idx ON virtual_keys (created_at);

-- sealed_values: XChaCha20-Poly1305 under a key derived from SWITCHYARD_SALT_KEY.
CREATE TABLE credentials (
    credential_name TEXT NOT NULL PRIMARY KEY,
    credential_info TEXT NOT NULL,
    value_names     TEXT NOT NULL,
    sealed_values   BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE models (
    model_id        TEXT NOT NULL PRIMARY KEY,
    model_name      TEXT NOT NULL,
    litellm_params  TEXT NOT NULL,
    credential_name TEXT REFERENCES credentials (credential_name) DEFERRABLE INITIALLY IMMEDIATE,
    model_info      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    created_by      TEXT,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX models_model_name_idx ON models (model_name);
CREATE INDEX models_credential_name_idx ON models (credential_name);

CREATE TABLE access_groups (
    name   TEXT NOT NULL PRIMARY KEY,
    models TEXT NOT NULL
);

CREATE TABLE tags (
    name        TEXT NOT NULL PRIMARY KEY,
    description TEXT,
    models      TEXT NOT NULL,
    metadata    TEXT NOT NULL
);

CREATE TABLE general_settings (
    name       TEXT NOT NULL PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- At most one row: the global router settings saved at runtime.
CREATE TABLE global_router_settings (
    id         TEXT NOT NULL PRIMARY KEY CHECK (id = 'global'),
    settings   TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- History: no foreign keys, rows outlive the keys and teams they name.
CREATE TABLE spend_logs (
    request_id        TEXT NOT NULL PRIMARY KEY,
    key_public_id     TEXT,
    team_id           TEXT,
    user_id           TEXT,
    organization_id   TEXT,
    model_group       TEXT NOT NULL,
    deployment_id     TEXT,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens      BIGINT NOT NULL,
    cost              BIGINT NOT NULL,
    status            TEXT NOT NULL,
    start_time        TIMESTAMPTZ NOT NULL,
    end_time          TIMESTAMPTZ NOT NULL
);
CREATE INDEX spend_logs_start_time_idx ON spend_logs (start_time);
CREATE INDEX spend_logs_key_idx ON spend_logs (key_public_id, start_time);
CREATE INDEX spend_logs_team_idx ON spend_logs (team_id, start_time);
CREATE INDEX spend_logs_user_idx ON spend_logs (user_id, start_time);

-- Admin changes. before/after are specs as JSON; secret values never appear.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_log_object_idx ON audit_log (object_kind, object_id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor);

-- Core schema of the hub (plan §5, adapted for agents). Enumerations are checked TEXT so that
-- adding a value is a one-line migration. Ids that agents make (flows, predictions, alerts,
-- prevention logs) are primary keys: re-delivered records hit ON CONFLICT DO NOTHING.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    username        VARCHAR(50)  NOT NULL UNIQUE,
    email           VARCHAR(255) NOT NULL UNIQUE,
    hashed_password VARCHAR(255) NOT NULL,
    role            TEXT NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'operator', 'viewer')),
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per issued refresh token; rotation revokes the old row.
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE agents (
    id                UUID PRIMARY KEY,
    name              VARCHAR(100) NOT NULL UNIQUE,
    hostname          VARCHAR(255),
    version           VARCHAR(50),
    status            TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'revoked')),
    last_heartbeat_at TIMESTAMPTZ,
    cert_fingerprint  VARCHAR(128) UNIQUE,
    revoked_at        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id                 UUID PRIMARY KEY,
    -- An agent that still has devices cannot be deleted by accident.
    agent_id           UUID REFERENCES agents(id) ON DELETE RESTRICT,
    name               VARCHAR(100) NOT NULL UNIQUE,
    device_type        TEXT NOT NULL CHECK (device_type IN ('camera', 'sensor', 'gateway', 'actuator', 'smart_plug', 'custom')),
    ip_address         INET NOT NULL,
    protocol           TEXT NOT NULL CHECK (protocol IN ('mqtt', 'coap', 'http', 'tcp', 'udp')),
    port               INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    status             TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'quarantined', 'under_attack')),
    traffic_source     TEXT NOT NULL DEFAULT 'simulated' CHECK (traffic_source IN ('live_capture', 'pcap_upload', 'simulated')),
    description        TEXT,
    last_seen_at       TIMESTAMPTZ,
    threat_count_today INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX devices_agent_idx ON devices (agent_id);
CREATE INDEX devices_status_idx ON devices (status);
CREATE INDEX devices_created_idx ON devices (created_at, id);

-- Flow records. The primary key carries the timestamp so that the table can become a
-- time-partitioned table (PARTITION BY RANGE (ts)) without changing keys or queries.
CREATE TABLE traffic_logs (
    id          UUID NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    device_id   UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    features    REAL[] NOT NULL CHECK (cardinality(features) = 78),
    source_type TEXT NOT NULL CHECK (source_type IN ('live', 'pcap', 'simulated', 'attack_sim')),
    flow_index  INTEGER,
    metadata    JSONB,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
);
CREATE INDEX traffic_logs_device_ts_idx ON traffic_logs (device_id, ts DESC);
CREATE INDEX traffic_logs_ts_brin ON traffic_logs USING BRIN (ts);

-- Window ids refer to flow ids without a foreign key: flows live in a (future) partitioned table.
CREATE TABLE predictions (
    id                   UUID PRIMARY KEY,
    device_id            UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    score                DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score <= 1),
    label                TEXT NOT NULL CHECK (label IN ('benign', 'attack')),
    confidence           DOUBLE PRECISION NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    attack_type          TEXT,
    model_version        VARCHAR(100) NOT NULL,
    window_start         UUID,
    window_end           UUID,
    feature_importance   JSONB,
    inference_latency_ms DOUBLE PRECISION NOT NULL,
    ts                   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX predictions_device_ts_idx ON predictions (device_id, ts DESC);
CREATE INDEX predictions_ts_idx ON predictions (ts DESC);

CREATE TABLE alerts (
    id               UUID PRIMARY KEY,
    device_id        UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    prediction_id    UUID REFERENCES predictions(id) ON DELETE SET NULL,
    alert_type       TEXT NOT NULL CHECK (alert_type IN ('threshold_breach', 'sustained_attack', 'new_attack_type', 'device_quarantined')),
    severity         TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    message          TEXT NOT NULL,
    is_acknowledged  BOOLEAN NOT NULL DEFAULT FALSE,
    acknowledged_by  UUID REFERENCES users(id) ON DELETE SET NULL,
    acknowledged_at  TIMESTAMPTZ,
    action_taken     VARCHAR(100),
    ts               TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alerts_ts_idx ON alerts (ts DESC);
CREATE INDEX alerts_device_ts_idx ON alerts (device_id, ts DESC);
CREATE INDEX alerts_unacked_idx ON alerts (ts DESC) WHERE NOT is_acknowledged;

CREATE TABLE attack_sessions (
    id              UUID PRIMARY KEY,
    device_id       UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    pipeline_config JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed')),
    progress_pct    DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (progress_pct BETWEEN 0 AND 100),
    current_step    INTEGER,
    results         JSONB,
    started_at      TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    created_by      UUID REFERENCES users(id) ON DELETE SET NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attack_sessions_device_idx ON attack_sessions (device_id, created_at DESC);

CREATE TABLE attack_steps (
    id                   UUID PRIMARY KEY,
    session_id           UUID NOT NULL REFERENCES attack_sessions(id) ON DELETE CASCADE,
    step_order           INTEGER NOT NULL,
    attack_type          TEXT NOT NULL CHECK (attack_type IN ('ddos_flood', 'slow_rate', 'port_scan', 'brute_force_ssh', 'brute_force_ftp', 'botnet_beacon', 'data_exfiltration', 'web_xss', 'web_sqli', 'hybrid')),
    duration_seconds     INTEGER NOT NULL DEFAULT 30 CHECK (duration_seconds > 0),
    intensity            DOUBLE PRECISION NOT NULL DEFAULT 0.7 CHECK (intensity BETWEEN 0 AND 1),
    variant              VARCHAR(50),
    adversarial_enabled  BOOLEAN NOT NULL DEFAULT FALSE,
    adversarial_epsilon  DOUBLE PRECISION,
    status               TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'skipped')),
    detected             BOOLEAN,
    avg_confidence       DOUBLE PRECISION,
    detection_latency_ms DOUBLE PRECISION,
    auto_action_taken    VARCHAR(100),
    started_at           TIMESTAMPTZ,
    completed_at         TIMESTAMPTZ,
    UNIQUE (session_id, step_order)
);

CREATE TABLE prevention_rules (
    id               UUID PRIMARY KEY,
    device_id        UUID REFERENCES devices(id) ON DELETE CASCADE,
    rule_name        VARCHAR(100) NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL DEFAULT 0.5 CHECK (threshold BETWEEN 0 AND 1),
    action_type      TEXT NOT NULL CHECK (action_type IN ('block_ip', 'rate_limit', 'quarantine', 'alert_only', 'webhook')),
    is_enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    cooldown_seconds INTEGER NOT NULL DEFAULT 60 CHECK (cooldown_seconds >= 0),
    webhook_url      VARCHAR(500),
    extra_config     JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Logs outlive the rule and prediction they mention.
CREATE TABLE prevention_logs (
    id              UUID PRIMARY KEY,
    rule_id         UUID REFERENCES prevention_rules(id) ON DELETE SET NULL,
    device_id       UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    prediction_id   UUID REFERENCES predictions(id) ON DELETE SET NULL,
    action_executed VARCHAR(100) NOT NULL,
    success         BOOLEAN NOT NULL,
    details         JSONB,
    ts              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX prevention_logs_ts_idx ON prevention_logs (ts DESC);

CREATE TABLE fl_rounds (
    id                    SERIAL PRIMARY KEY,
    round_number          INTEGER NOT NULL UNIQUE,
    num_clients           INTEGER NOT NULL,
    global_loss           DOUBLE PRECISION,
    global_accuracy       DOUBLE PRECISION,
    global_f1             DOUBLE PRECISION,
    global_precision      DOUBLE PRECISION,
    global_recall         DOUBLE PRECISION,
    aggregation_method    VARCHAR(50) NOT NULL,
    he_scheme             VARCHAR(20),
    he_poly_modulus       INTEGER,
    duration_seconds      DOUBLE PRECISION,
    model_checkpoint_path VARCHAR(500),
    ts                    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE fl_client_metrics (
    id                SERIAL PRIMARY KEY,
    round_id          INTEGER NOT NULL REFERENCES fl_rounds(id) ON DELETE CASCADE,
    client_id         VARCHAR(50) NOT NULL,
    local_loss        DOUBLE PRECISION NOT NULL,
    local_accuracy    DOUBLE PRECISION NOT NULL,
    num_samples       INTEGER NOT NULL,
    training_time_sec DOUBLE PRECISION NOT NULL,
    encrypted         BOOLEAN NOT NULL
);
CREATE INDEX fl_client_metrics_round_idx ON fl_client_metrics (round_id);

CREATE TABLE system_settings (
    key        VARCHAR(100) PRIMARY KEY,
    value      JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by UUID REFERENCES users(id) ON DELETE SET NULL
);

-- Operator intents that need an agent (start/stop capture, attack sessions, FL runs, pcap
-- uploads). The transport layer delivers pending rows once agents are connected.
CREATE TABLE agent_commands (
    id           UUID PRIMARY KEY,
    agent_id     UUID REFERENCES agents(id) ON DELETE CASCADE,
    device_id    UUID REFERENCES devices(id) ON DELETE CASCADE,
    command      TEXT NOT NULL,
    payload      JSONB NOT NULL DEFAULT '{}'::jsonb,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'done', 'failed', 'cancelled')),
    requested_by UUID REFERENCES users(id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agent_commands_pending_idx ON agent_commands (created_at) WHERE status = 'pending';

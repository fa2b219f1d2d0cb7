-- The agent's local training set as it last reported it: windows per family.
ALTER TABLE agents ADD COLUMN fl_local_windows JSONB;

-- Federated-learning runs: one key committee (epoch) per run, rounds below it.
CREATE TABLE fl_runs (
    id           UUID PRIMARY KEY,
    status       VARCHAR(20) NOT NULL CHECK (status IN ('keygen', 'training', 'aggregating', 'decrypting', 'completed', 'failed', 'stopped')),
    params       JSONB NOT NULL,
    start_model  VARCHAR(100) NOT NULL,
    epoch        BIGINT NOT NULL,
    -- [{member, agent_id}]
    committee    JSONB NOT NULL DEFAULT '[]',
    rounds_done  INTEGER NOT NULL DEFAULT 0,
    rounds_failed INTEGER NOT NULL DEFAULT 0,
    message      TEXT,
    started_by   UUID REFERENCES users (id) ON DELETE SET NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at     TIMESTAMPTZ
);
CREATE INDEX fl_runs_started_idx ON fl_runs (started_at DESC);

ALTER TABLE fl_rounds
    ADD COLUMN run_id UUID REFERENCES fl_runs (id) ON DELETE CASCADE,
    ADD COLUMN run_round INTEGER,
    ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'failed')),
    ADD COLUMN reason TEXT,
    ADD COLUMN clients_selected INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN clients_uploaded INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN clients_dropped INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN updates_rejected INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN bytes_received BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN model_version VARCHAR(100),
    ADD COLUMN start_model VARCHAR(100),
    ADD COLUMN f1_before DOUBLE PRECISION,
    ADD COLUMN activated BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX fl_rounds_run_idx ON fl_rounds (run_id);

ALTER TABLE fl_client_metrics
    ADD COLUMN status VARCHAR(20) NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'straggler', 'dropped', 'rejected')),
    ADD COLUMN reason TEXT,
    ADD COLUMN loss_before DOUBLE PRECISION,
    ADD COLUMN accuracy_before DOUBLE PRECISION,
    ADD COLUMN f1_before DOUBLE PRECISION,
    ADD COLUMN f1_after DOUBLE PRECISION,
    ADD COLUMN validation_windows INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN upload_bytes BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN details JSONB;

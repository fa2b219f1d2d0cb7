-- One-time tokens an admin hands to an agent's installer; only their SHA-256 is stored.
CREATE TABLE enrollment_tokens (
    id          UUID PRIMARY KEY,
    token_hash  VARCHAR(64) NOT NULL UNIQUE,
    created_by  UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    agent_id    UUID REFERENCES agents (id) ON DELETE SET NULL
);
CREATE INDEX enrollment_tokens_unused_idx ON enrollment_tokens (expires_at) WHERE used_at IS NULL;
-- When the agent's current certificate expires.
ALTER TABLE agents ADD COLUMN cert_not_after TIMESTAMPTZ;
-- The model version the agent reports scoring with.
ALTER TABLE agents ADD COLUMN model_version VARCHAR(100);

-- Commands are now delivered to agents, which say how they ended.
ALTER TABLE agent_commands
    ADD COLUMN result     TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX agent_commands_agent_idx ON agent_commands (agent_id, status);

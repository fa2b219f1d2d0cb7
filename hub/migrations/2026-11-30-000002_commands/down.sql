DROP INDEX agent_commands_agent_idx;
ALTER TABLE agent_commands DROP COLUMN result, DROP COLUMN updated_at;

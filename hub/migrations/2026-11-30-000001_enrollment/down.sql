ALTER TABLE agents DROP COLUMN model_version;
ALTER TABLE agents DROP COLUMN cert_not_after;
DROP TABLE enrollment_tokens;

ALTER TABLE attack_sessions DROP COLUMN command_id, DROP COLUMN message, DROP COLUMN model_version;
ALTER TABLE attack_sessions DROP CONSTRAINT attack_sessions_status_check;
UPDATE attack_sessions SET status = 'failed' WHERE status = 'aborted';
ALTER TABLE attack_sessions ADD CONSTRAINT attack_sessions_status_check
    CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed'));

ALTER TABLE attack_steps DROP COLUMN message, DROP COLUMN family_accuracy, DROP COLUMN avg_score,
    DROP COLUMN clean_detection_rate, DROP COLUMN detection_rate, DROP COLUMN attack_windows, DROP COLUMN windows;
ALTER TABLE attack_steps DROP CONSTRAINT attack_steps_status_check;
UPDATE attack_steps SET status = 'done' WHERE status = 'completed';
UPDATE attack_steps SET status = 'skipped' WHERE status IN ('aborted', 'failed');
ALTER TABLE attack_steps ADD CONSTRAINT attack_steps_status_check
    CHECK (status IN ('pending', 'running', 'done', 'skipped'));

DROP INDEX predictions_attack_session_idx;
ALTER TABLE predictions DROP COLUMN clean_score, DROP COLUMN attack_step, DROP COLUMN attack_session_id;

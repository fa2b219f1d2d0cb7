-- Attack-simulation sessions run on agents: predictions of simulated windows are marked with
-- their session and step, steps and sessions carry what the agent measured.
ALTER TABLE predictions
    ADD COLUMN attack_session_id UUID,
    ADD COLUMN attack_step       INTEGER,
    ADD COLUMN clean_score       DOUBLE PRECISION CHECK (clean_score >= 0 AND clean_score <= 1);
CREATE INDEX predictions_attack_session_idx ON predictions (attack_session_id, ts)
    WHERE attack_session_id IS NOT NULL;

ALTER TABLE attack_steps DROP CONSTRAINT attack_steps_status_check;
UPDATE attack_steps SET status = 'completed' WHERE status = 'done';
ALTER TABLE attack_steps
    ADD CONSTRAINT attack_steps_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'aborted', 'failed', 'skipped')),
    ADD COLUMN windows              INTEGER,
    ADD COLUMN attack_windows       INTEGER,
    ADD COLUMN detection_rate       DOUBLE PRECISION,
    ADD COLUMN clean_detection_rate DOUBLE PRECISION,
    ADD COLUMN avg_score            DOUBLE PRECISION,
    ADD COLUMN family_accuracy      DOUBLE PRECISION,
    ADD COLUMN message              TEXT;

ALTER TABLE attack_sessions DROP CONSTRAINT attack_sessions_status_check;
ALTER TABLE attack_sessions
    ADD CONSTRAINT attack_sessions_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'aborted', 'failed')),
    ADD COLUMN model_version TEXT,
    ADD COLUMN message       TEXT,
    ADD COLUMN command_id    UUID;

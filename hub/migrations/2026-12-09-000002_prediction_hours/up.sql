-- Predictions counted per device and UTC hour, kept by the database as rows arrive (one
-- statement-level trigger per inserted batch), so that the dashboard's counts read at most a
-- day of hourly rows instead of a day of predictions (1 M at fleet size).
CREATE TABLE prediction_hours (
    hour TIMESTAMPTZ NOT NULL,
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    predictions BIGINT NOT NULL,
    attacks BIGINT NOT NULL,
    PRIMARY KEY (hour, device_id)
);
CREATE INDEX prediction_hours_device_idx ON prediction_hours (device_id, hour);

CREATE FUNCTION count_prediction_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO prediction_hours (hour, device_id, predictions, attacks)
    SELECT date_trunc('hour', ts, 'UTC'), device_id, count(*), count(*) FILTER (WHERE label = 'attack')
    FROM new_rows
    GROUP BY 1, 2
    ON CONFLICT (hour, device_id) DO UPDATE
    SET predictions = prediction_hours.predictions + EXCLUDED.predictions,
        attacks = prediction_hours.attacks + EXCLUDED.attacks;
    RETURN NULL;
END
$$;

CREATE TRIGGER predictions_count_hours AFTER INSERT ON predictions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_prediction_hours();

INSERT INTO prediction_hours (hour, device_id, predictions, attacks)
SELECT date_trunc('hour', ts, 'UTC'), device_id, count(*), count(*) FILTER (WHERE label = 'attack')
FROM predictions
GROUP BY 1, 2;

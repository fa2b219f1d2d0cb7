ALTER TABLE agents DROP COLUMN acked_seq, DROP COLUMN acked_epoch;
DROP INDEX IF EXISTS agents_heartbeat_idx;
DROP INDEX IF EXISTS devices_ip_address_key;
UPDATE devices SET port = 1 WHERE port IS NULL;
ALTER TABLE devices ALTER COLUMN port SET NOT NULL;

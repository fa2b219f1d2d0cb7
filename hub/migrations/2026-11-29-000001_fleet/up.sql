-- Devices an agent discovers (addresses inside its monitored networks) have no known service
-- port; devices created through the API still give one.
ALTER TABLE devices ALTER COLUMN port DROP NOT NULL;
-- One device per address and agent, so that agents' detections resolve to a single device.
CREATE UNIQUE INDEX devices_ip_address_key ON devices (agent_id, ip_address) WHERE agent_id IS NOT NULL;
CREATE INDEX agents_heartbeat_idx ON agents (status, last_heartbeat_at);
-- Delivery bookkeeping: the highest batch of the agent's spool epoch stored without a gap.
ALTER TABLE agents ADD COLUMN acked_epoch UUID, ADD COLUMN acked_seq BIGINT NOT NULL DEFAULT 0;

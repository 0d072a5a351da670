-- Each project's cumulative message counters (SPEC §2 stats) on a single node: the
-- realtime side adds what moved every few seconds and at shutdown, so the stats survive
-- a restart. (A cluster keeps them in Redis instead.)
ALTER TABLE projects ADD COLUMN messages_received BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN messages_delivered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN messages_rejected BIGINT NOT NULL DEFAULT 0;

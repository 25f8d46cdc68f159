-- The metrics count failed messages; like pending ones, through a partial
-- index rather than a walk of every message ever sent.
CREATE INDEX outbox_failed ON outbox (tenant_id) WHERE state = 3;

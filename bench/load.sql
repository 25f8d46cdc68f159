-- Bulk data for the scale scenario, through PostgreSQL's own bulk path
-- (INSERT ... SELECT generate_series), never the API. psql variables:
--   requests   access requests to add (e.g. 1000000)
--   events     audit events to add (e.g. 10000000)
--   open_requests  pending requests of tenant "bench" (e.g. 10000)
--   chain      a file of COPY text for audit_events: the measured tenant's
--              own history (lockbox-bench chain), loaded with the others
-- 1% of the requests go to tenant "bench" (the tenant the scenario lists),
-- the rest to 999 other tenants; creation times spread over the last year,
-- every one decided. Half the approved ones carry a grant, long ended. Audit
-- events go to the 999 other tenants' logs, whose heads are moved to match;
-- the measured tenant gets its open requests and its own long, valid log
-- (:chain) too, so that what it reads grows with the data.
\set ON_ERROR_STOP on
\timing on
SET synchronous_commit = off;

INSERT INTO tenants (id, display_name, create_time)
SELECT 'bulk' || t, 'Bulk tenant ' || t, 0 FROM generate_series(1, 999) t
ON CONFLICT DO NOTHING;
INSERT INTO lockbox_policies (tenant_id, enabled, request_ttl_us, access_duration_us,
  notification_emails, allow_revocation, update_time, version)
SELECT 'bulk' || t, true, 345600000000, 28800000000, '', false, 0, 1 FROM generate_series(1, 999) t
ON CONFLICT DO NOTHING;
INSERT INTO environments (tenant_id, id, display_name, managed, data_sources, create_time,
  update_time, version)
SELECT 'bulk' || t, 'prod', 'Production', true, '[]'::jsonb, 0, 0, 1 FROM generate_series(1, 999) t
ON CONFLICT DO NOTHING;

-- The requests: i % 100 = 0 goes to "bench".
CREATE TEMP TABLE bulk_requests AS
SELECT CASE WHEN i % 100 = 0 THEN 'bench' ELSE 'bulk' || (1 + i % 999) END AS tenant_id,
       md5('request' || i)::uuid AS id,
       i,
       (extract(epoch FROM now()) * 1000000)::bigint - (random() * 365 * 86400e6)::bigint AS create_time,
       CASE WHEN i % 10 < 6 THEN 2 WHEN i % 10 < 8 THEN 3 WHEN i % 10 < 9 THEN 4 ELSE 5 END AS state
FROM generate_series(1, :requests) i;

INSERT INTO access_requests (tenant_id, id, environment_id, data_sources, reason,
  support_ticket_id, justification, requester, create_time, expire_time, access_duration_us,
  state, stage, decisions, grant_id, update_time, version)
SELECT tenant_id, id, 'prod', '', 2, 'TICKET-' || i, 'bulk history: investigating an incident',
       'spiffe://bench.local/operator/engineer' || (i % 500), create_time,
       create_time + 345600000000, 28800000000, state, 2, '{}'::jsonb,
       CASE WHEN state = 2 AND i % 2 = 0 THEN md5('grant' || i)::uuid::text ELSE '' END,
       create_time + 3600000000, 3
FROM bulk_requests;

INSERT INTO grants (tenant_id, id, request_id, principal, environment_id, data_sources,
  start_time, expire_time, state, end_time, version)
SELECT tenant_id, md5('grant' || i)::uuid, id, 'spiffe://bench.local/operator/engineer' || (i % 500),
       'prod', '', create_time + 3600000000, create_time + 3600000000 + 28800000000,
       CASE WHEN i % 3 = 0 THEN 3 ELSE 2 END, create_time + 7200000000, 2
FROM bulk_requests WHERE state = 2 AND i % 2 = 0;

-- The measured tenant's own open requests: :open_requests pending, half in
-- each stage, created over the last four days and expiring in thirty (so
-- that neither the sweep nor a reminder touches them during the run).
INSERT INTO access_requests (tenant_id, id, environment_id, data_sources, reason,
  support_ticket_id, justification, requester, create_time, expire_time, access_duration_us,
  state, stage, decisions, grant_id, update_time, version)
SELECT 'bench', md5('open' || i)::uuid, 'prod', '', 2, 'TICKET-OPEN-' || i,
       'bulk open: waiting for review', 'spiffe://bench.local/operator/engineer' || (i % 500),
       (extract(epoch FROM now()) * 1000000)::bigint - (random() * 4 * 86400e6)::bigint,
       (extract(epoch FROM now()) * 1000000)::bigint + 30 * 86400000000, 28800000000,
       1, 1 + i % 2, '{}'::jsonb, '', (extract(epoch FROM now()) * 1000000)::bigint, 1
FROM generate_series(1, :open_requests) i;

-- Audit events' secondary indexes are dropped for the load and built again
-- after it from their own saved definitions (CREATE INDEX sorts once instead
-- of ten million random insertions into six trees); the end state is the
-- schema the migrations made.
SET maintenance_work_mem = '1GB';
CREATE TEMP TABLE saved_indexes AS
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = 'audit_events'
  AND indexname NOT IN (SELECT conname FROM pg_constraint
                        WHERE conrelid = 'audit_events'::regclass);
SELECT format('DROP INDEX %I', indexname) FROM saved_indexes \gexec

-- Audit events: consecutive sequences per tenant (n / 999 + 1 in tenant
-- bulk(1 + n % 999)); the bulk tenants' logs are new.
INSERT INTO audit_events (tenant_id, sequence, event_time, actor, via, action, resource,
  access_request, request_create_time, operator_user_id, request_state, support_ticket_id,
  request_expire_time, access_expire_time, environment, justification, details, previous_hash,
  hash)
SELECT 'bulk' || (1 + n % 999),
       n / 999 + 1,
       (extract(epoch FROM now()) * 1000000)::bigint - 365 * 86400000000
         + n::bigint * (365 * 86400000000 / :events),
       'spiffe://bench.local/operator/engineer' || (n % 500), '', 'access_request.approve',
       'tenants/bulk' || (1 + n % 999) || '/accessRequests/' || md5('request' || n)::uuid,
       'tenants/bulk' || (1 + n % 999) || '/accessRequests/' || md5('request' || n)::uuid,
       0, 'spiffe://bench.local/operator/engineer' || (n % 500), 2, 'TICKET-' || n, 0, 0,
       'tenants/bulk' || (1 + n % 999) || '/environments/prod',
       'bulk history: investigating an incident', '{}'::jsonb,
       md5('prev' || n) || md5('prev' || n), md5('hash' || n) || md5('hash' || n)
FROM generate_series(0, :events - 1) n;

-- The measured tenant's own history, chained after its head (read by the
-- server process: the file is the bench's, readable by it).
COPY audit_events (tenant_id, sequence, event_time, actor, via, action, resource,
  access_request, request_create_time, operator_user_id, request_state, support_ticket_id,
  request_expire_time, access_expire_time, environment, justification, details, previous_hash,
  hash) FROM :'chain';

SELECT indexdef FROM saved_indexes \gexec

INSERT INTO audit_heads (tenant_id)
SELECT DISTINCT tenant_id FROM audit_events WHERE tenant_id LIKE 'bulk%'
ON CONFLICT (tenant_id) DO NOTHING;

-- Leave the database as it would be in service: vacuumed (so autovacuum's
-- pass over ten million new rows does not run during the measurement) and
-- checkpointed (so the load's dirty pages are not written out during it).
VACUUM (ANALYZE);
CHECKPOINT;
SELECT (SELECT count(*) FROM access_requests) AS requests,
       (SELECT count(*) FROM audit_events) AS audit_events,
       (SELECT count(*) FROM grants) AS grants;

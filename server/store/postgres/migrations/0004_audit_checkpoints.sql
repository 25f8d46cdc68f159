-- Signed checkpoints, privileges, and indexes for filtered reads at scale.

CREATE TABLE audit_checkpoints (
  tenant_id  text NOT NULL,
  sequence   bigint NOT NULL,
  head_hash  text NOT NULL,
  sign_time  bigint NOT NULL,
  key_id     text NOT NULL,
  signature  text NOT NULL,  -- base64 Ed25519 signature
  PRIMARY KEY (tenant_id, sequence)
);
CREATE TRIGGER audit_checkpoints_append_only
  BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
  BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- The role the server runs as (the one applying migrations) may append and
-- read history, never change it: the privilege is gone as well as the
-- trigger saying no.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM PUBLIC, CURRENT_USER;

-- Each filter of ListAuditEvents and ExportAuditEvents has an index that
-- starts with the tenant and ends with the sequence, so a tenant's filtered,
-- ordered page costs the same at ten million events as at ten thousand.
CREATE INDEX audit_events_by_action ON audit_events (tenant_id, action, sequence);
CREATE INDEX audit_events_by_actor ON audit_events (tenant_id, actor, sequence);
CREATE INDEX audit_events_by_environment ON audit_events (tenant_id, environment, sequence)
  WHERE environment <> '';
CREATE INDEX audit_events_by_ticket ON audit_events (tenant_id, support_ticket_id, sequence)
  WHERE support_ticket_id <> '';
DROP INDEX audit_events_by_request;
CREATE INDEX audit_events_by_request ON audit_events (tenant_id, access_request, sequence)
  WHERE access_request <> '';

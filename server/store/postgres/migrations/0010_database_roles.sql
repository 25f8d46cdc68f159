-- The audit log's trust does not live in the database (SPEC section 8).
-- From here on lockboxd runs as a role that owns nothing; the grants it gets
-- are made by `lockboxd migrate` after every run (migrations.cc), not here,
-- so that the tables of later migrations are covered too.

-- The checkpoint signing key comes from --audit-signing-key (a file) only:
-- whoever could read this row could sign a rewritten history.
DELETE FROM server_secrets WHERE name = 'audit_signing_key';

-- The public half of every key that has signed checkpoints, by ID, from its
-- first use. Public keys only: a customer pins the IDs it fetched through
-- GetAuditPublicKey and verifies exports with those keys, so a row added by
-- whoever holds the database credentials proves nothing to them. Each key's
-- validity ends where the next one's begins (read with lead()), so no row
-- ever changes.
CREATE TABLE audit_signing_keys (
  key_id          text PRIMARY KEY,
  public_key_pem  text NOT NULL,
  algorithm       text NOT NULL,
  valid_from      bigint NOT NULL,
  ephemeral       boolean NOT NULL  -- --dev-ephemeral-audit-key: died with its process
);
CREATE INDEX audit_signing_keys_by_time ON audit_signing_keys (valid_from, key_id);
CREATE TRIGGER audit_signing_keys_append_only
  BEFORE UPDATE OR DELETE ON audit_signing_keys
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_signing_keys_no_truncate
  BEFORE TRUNCATE ON audit_signing_keys
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- A log's head is its last event, read after a per-log advisory lock
-- (audit_store.cc): the head row no longer moves, so the runtime role needs
-- no UPDATE on any audit table. audit_heads only lists the logs that exist;
-- its sequence and hash are no longer kept. Migrations only add, so that
-- pods of the previous version keep working during a roll: a later release
-- drops the two columns.
ALTER TABLE audit_heads ALTER COLUMN sequence SET DEFAULT 0, ALTER COLUMN hash SET DEFAULT '';
COMMENT ON COLUMN audit_heads.sequence IS 'unused since migration 0010; dropped later';
COMMENT ON COLUMN audit_heads.hash IS 'unused since migration 0010; dropped later';

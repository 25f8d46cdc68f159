-- What the database credentials may no longer do to a tenant's encryption
-- policies (issue 16 review, M3). lockboxd's runtime role updates a policy
-- row on every change, so it keeps UPDATE of it; this trigger holds it (and
-- the owner) to the moves lockboxd itself makes:
-- - protects_lockbox_data never goes from true to false: the tenant's own
--   data sealed under the policy's tenant data key would be written plain
--   from then on, without the customer's key being asked;
-- - the row keeps its identity (tenant, ID, creation);
-- - the primary version only moves forward (Rotate), so new keys are never
--   made under an older version again.
-- What remains (state set back to ACTIVE, an environment's row deleted) is
-- in docs/SECURITY.md, "What remains trusted".
CREATE FUNCTION encryption_policies_refuse_weakening() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.protects_lockbox_data AND NOT NEW.protects_lockbox_data THEN
    RAISE EXCEPTION 'a policy that protects Lockbox''s data always does';
  END IF;
  IF NEW.tenant_id <> OLD.tenant_id OR NEW.id <> OLD.id
     OR NEW.create_time <> OLD.create_time THEN
    RAISE EXCEPTION 'an encryption policy keeps its tenant, ID and creation time';
  END IF;
  IF NEW.primary_version < OLD.primary_version THEN
    RAISE EXCEPTION 'an encryption policy''s primary version only moves forward';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER encryption_policies_no_weakening
  BEFORE UPDATE ON encryption_policies
  FOR EACH ROW EXECUTE FUNCTION encryption_policies_refuse_weakening();

-- Customer-managed keys (issue 16, SPEC section 9): a tenant's encryption
-- policies, the environments each covers, and the versions of each policy's
-- key with Lockbox's own keys wrapped by it inside the customer's PKCS#11
-- module (useless bytes without that module).
--
-- A data source's cmk_supported lives in environments.data_sources (JSON of
-- the API's DataSource, like lockbox_supported): absent means supported, so
-- every existing data source is, as the seed says most add-ins are.

CREATE TABLE encryption_policies (
  tenant_id              text NOT NULL REFERENCES tenants(id),
  id                     text NOT NULL,
  display_name           text NOT NULL,
  key_uri                text NOT NULL,  -- the primary version's
  state                  smallint NOT NULL,
  state_reason           text NOT NULL,
  protects_lockbox_data  boolean NOT NULL,
  primary_version        integer NOT NULL,
  create_time            bigint NOT NULL,
  update_time            bigint NOT NULL,
  version                bigint NOT NULL,  -- the etag
  PRIMARY KEY (tenant_id, id)
);
-- One key seals a tenant's own Lockbox data, or its sealed fields could not
-- be read back under one rule.
CREATE UNIQUE INDEX encryption_policies_lockbox_data
  ON encryption_policies (tenant_id) WHERE protects_lockbox_data;

-- An environment is in at most one policy of its tenant: the primary key.
CREATE TABLE policy_environments (
  tenant_id       text NOT NULL,
  environment_id  text NOT NULL,
  policy_id       text NOT NULL,
  PRIMARY KEY (tenant_id, environment_id),
  FOREIGN KEY (tenant_id, environment_id) REFERENCES environments(tenant_id, id),
  FOREIGN KEY (tenant_id, policy_id) REFERENCES encryption_policies(tenant_id, id)
);
CREATE INDEX policy_environments_by_policy ON policy_environments (tenant_id, policy_id);

CREATE TABLE key_versions (
  tenant_id           text NOT NULL,
  policy_id           text NOT NULL,
  version             integer NOT NULL,
  key_uri             text NOT NULL,
  state               smallint NOT NULL,
  -- KeyModule::Wrap output (nonce || ciphertext || tag) of the 32-byte
  -- policy key and tenant data key, under key_uri.
  wrapped_policy_key  bytea NOT NULL,
  wrapped_data_key    bytea NOT NULL,
  create_time         bigint NOT NULL,
  PRIMARY KEY (tenant_id, policy_id, version),
  FOREIGN KEY (tenant_id, policy_id) REFERENCES encryption_policies(tenant_id, id)
);
-- The prober's list: enabled versions across tenants.
CREATE INDEX key_versions_enabled ON key_versions (tenant_id, policy_id) WHERE state = 1;

-- A version's keys and what wraps them never change once made: whatever
-- was encrypted under them stays decryptable while the customer's key does.
-- The runtime role may only flip its state (migrations.cc grants UPDATE of
-- that column alone, and no DELETE on policies or versions); this trigger
-- holds even the owner to it.
CREATE FUNCTION key_versions_refuse_rewrap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.tenant_id <> OLD.tenant_id OR NEW.policy_id <> OLD.policy_id
     OR NEW.version <> OLD.version OR NEW.key_uri <> OLD.key_uri
     OR NEW.wrapped_policy_key <> OLD.wrapped_policy_key
     OR NEW.wrapped_data_key <> OLD.wrapped_data_key
     OR NEW.create_time <> OLD.create_time THEN
    RAISE EXCEPTION 'a key version''s keys never change; only its state does';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER key_versions_keys_fixed
  BEFORE UPDATE ON key_versions
  FOR EACH ROW EXECUTE FUNCTION key_versions_refuse_rewrap();

-- Who vouches for a tenant's users (SPEC section 8): the CA bundle its user
-- certificates chain to and the token issuers a portal may relay, as the
-- TenantIdentity message in JSON (ca_bundle_pem, token_issuers).
CREATE TABLE tenant_identities (
  tenant_id   text PRIMARY KEY REFERENCES tenants (id),
  identity    jsonb NOT NULL,
  update_time bigint NOT NULL,
  version     bigint NOT NULL
);

-- Lockbox schema, version 1. Times are microseconds since the Unix epoch
-- (bigint), exact and cheap to compare. Nested lists that SQL never
-- searches (decisions, data sources, audit details) are JSON of the API's
-- own messages.

CREATE TABLE tenants (
  id            text PRIMARY KEY,
  display_name  text NOT NULL,
  create_time   bigint NOT NULL
);

CREATE TABLE lockbox_policies (
  tenant_id            text PRIMARY KEY REFERENCES tenants(id),
  enabled              boolean NOT NULL,
  request_ttl_us       bigint NOT NULL,
  access_duration_us   bigint NOT NULL,
  notification_emails  text NOT NULL,  -- comma-separated, validated addresses
  allow_revocation     boolean NOT NULL,
  update_time          bigint NOT NULL,
  version              bigint NOT NULL
);

CREATE TABLE environments (
  tenant_id     text NOT NULL REFERENCES tenants(id),
  id            text NOT NULL,
  display_name  text NOT NULL,
  managed       boolean NOT NULL,
  data_sources  jsonb NOT NULL,
  create_time   bigint NOT NULL,
  update_time   bigint NOT NULL,
  version       bigint NOT NULL,
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE role_bindings (
  id           uuid PRIMARY KEY,
  principal    text NOT NULL,
  role         text NOT NULL,
  tenant_id    text NOT NULL,  -- '' for global roles
  email        text NOT NULL,
  create_time  bigint NOT NULL,
  UNIQUE (principal, role, tenant_id)
);
CREATE INDEX role_bindings_by_tenant ON role_bindings (tenant_id, create_time, id);

CREATE TABLE access_requests (
  tenant_id           text NOT NULL REFERENCES tenants(id),
  id                  uuid NOT NULL,
  environment_id      text NOT NULL,
  data_sources        text NOT NULL,  -- comma-separated data source IDs
  reason              smallint NOT NULL,
  support_ticket_id   text NOT NULL,
  justification       text NOT NULL,
  requester           text NOT NULL,
  create_time         bigint NOT NULL,
  expire_time         bigint NOT NULL,
  access_duration_us  bigint NOT NULL,
  state               smallint NOT NULL,
  stage               smallint NOT NULL,
  decisions           jsonb NOT NULL,
  grant_id            text NOT NULL,
  update_time         bigint NOT NULL,
  version             bigint NOT NULL,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, environment_id) REFERENCES environments(tenant_id, id)
);
CREATE INDEX access_requests_recent ON access_requests (tenant_id, create_time DESC, id DESC);
CREATE INDEX access_requests_by_requester ON access_requests (requester, create_time DESC, id DESC);
CREATE INDEX access_requests_pending ON access_requests (expire_time) WHERE state = 1;

CREATE TABLE grants (
  tenant_id       text NOT NULL REFERENCES tenants(id),
  id              uuid NOT NULL,
  request_id      uuid NOT NULL,
  principal       text NOT NULL,
  environment_id  text NOT NULL,
  data_sources    text NOT NULL,
  start_time      bigint NOT NULL,
  expire_time     bigint NOT NULL,
  state           smallint NOT NULL,
  end_time        bigint NOT NULL,
  version         bigint NOT NULL,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, request_id),
  FOREIGN KEY (tenant_id, request_id) REFERENCES access_requests(tenant_id, id)
);
CREATE INDEX grants_recent ON grants (tenant_id, start_time DESC, id DESC);
CREATE INDEX grants_active ON grants (principal, tenant_id, environment_id) WHERE state = 1;

-- The audit log: one chain per tenant ('' is the provider's global log).
CREATE TABLE audit_events (
  tenant_id            text NOT NULL,
  sequence             bigint NOT NULL,
  event_time           bigint NOT NULL,
  actor                text NOT NULL,
  via                  text NOT NULL,
  action               text NOT NULL,
  resource             text NOT NULL,
  access_request       text NOT NULL,
  request_create_time  bigint NOT NULL,
  operator_user_id     text NOT NULL,
  request_state        smallint NOT NULL,
  support_ticket_id    text NOT NULL,
  request_expire_time  bigint NOT NULL,
  access_expire_time   bigint NOT NULL,
  environment          text NOT NULL,
  justification        text NOT NULL,
  details              jsonb NOT NULL,
  previous_hash        text NOT NULL,
  hash                 text NOT NULL,
  PRIMARY KEY (tenant_id, sequence)
);
CREATE INDEX audit_events_by_time ON audit_events (tenant_id, event_time, sequence);
CREATE INDEX audit_events_by_request ON audit_events (tenant_id, access_request) WHERE access_request <> '';

-- The head of each tenant's chain. Appends lock this row, which serializes
-- them per tenant across every replica so the chain never forks.
CREATE TABLE audit_heads (
  tenant_id  text PRIMARY KEY,
  sequence   bigint NOT NULL,
  hash       text NOT NULL
);

-- The log is append-only: the database itself refuses to change history.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only
  BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- request_id idempotency: the first response to (caller, request_id).
CREATE TABLE idempotency_keys (
  caller        text NOT NULL,
  request_id    uuid NOT NULL,
  method        text NOT NULL,
  request_hash  text NOT NULL,
  response      bytea NOT NULL,
  create_time   bigint NOT NULL,
  PRIMARY KEY (caller, request_id)
);

-- Secrets every replica shares (the page-token key), made on first start.
CREATE TABLE server_secrets (
  name   text PRIMARY KEY,
  value  bytea NOT NULL
);

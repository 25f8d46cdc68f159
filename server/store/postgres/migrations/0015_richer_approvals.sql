-- Richer approvals (SPEC section 10): quorum, narrowing, scheduled access,
-- extensions and break-glass with the customer's review.

-- The policy's numbers. emergency_access: 1 ALLOWED (the default), 2
-- FORBIDDEN, as LockboxPolicy.EmergencyAccess.
ALTER TABLE lockbox_policies
  ADD COLUMN internal_approvals smallint NOT NULL DEFAULT 1,
  ADD COLUMN customer_approvals smallint NOT NULL DEFAULT 1,
  ADD COLUMN max_extensions smallint NOT NULL DEFAULT 1,
  ADD COLUMN emergency_access smallint NOT NULL DEFAULT 1,
  ADD COLUMN emergency_access_us bigint NOT NULL DEFAULT 3600000000;

-- A request's start (0: at approval), its incident, the grant it extends
-- ('' for none), the quorum it was created under, and an emergency
-- request's review: the EmergencyReview as JSON, with its state, due time
-- and reminders sent as columns for the sweeps.
ALTER TABLE access_requests
  ADD COLUMN start_time bigint NOT NULL DEFAULT 0,
  ADD COLUMN incident_id text NOT NULL DEFAULT '',
  ADD COLUMN extends_grant text NOT NULL DEFAULT '',
  ADD COLUMN internal_approvals_required smallint NOT NULL DEFAULT 1,
  ADD COLUMN customer_approvals_required smallint NOT NULL DEFAULT 1,
  ADD COLUMN emergency_review jsonb,
  ADD COLUMN review_state smallint NOT NULL DEFAULT 0,
  ADD COLUMN review_due_time bigint NOT NULL DEFAULT 0,
  ADD COLUMN review_reminders smallint NOT NULL DEFAULT 0;
CREATE INDEX access_requests_open_reviews ON access_requests (review_due_time)
  WHERE review_state = 1;
CREATE INDEX access_requests_extensions ON access_requests (tenant_id, extends_grant)
  WHERE extends_grant <> '';

-- A grant's approved extensions (comma-separated request IDs, oldest
-- first) and whether it is an emergency grant.
ALTER TABLE grants
  ADD COLUMN extensions text NOT NULL DEFAULT '',
  ADD COLUMN emergency boolean NOT NULL DEFAULT false;
CREATE INDEX grants_emergency ON grants (tenant_id, principal) WHERE emergency AND state = 1;

-- Time-driven work and the transactional outbox.

ALTER TABLE access_requests ADD COLUMN reminder_sent boolean NOT NULL DEFAULT false;
ALTER TABLE lockbox_policies
  ADD COLUMN webhook_url text NOT NULL DEFAULT '',
  ADD COLUMN webhook_secret text NOT NULL DEFAULT '';

-- What the sweep looks for, cheap however many rows are done.
CREATE INDEX access_requests_due_reminder ON access_requests (expire_time)
  WHERE state = 1 AND NOT reminder_sent;
CREATE INDEX grants_due ON grants (expire_time) WHERE state = 1;

-- Messages written in the same transaction as the change they tell of, and
-- sent afterwards by a delivery worker in any replica. next_attempt_time and
-- claimed_until are on the database's clock (shared by every replica, so
-- clock skew cannot make two replicas send one message); create_time and
-- deliver_time are the server's clock, like every other time.
CREATE TABLE outbox (
  id                 uuid PRIMARY KEY,  -- also the receivers' idempotency key
  tenant_id          text NOT NULL,
  channel            smallint NOT NULL, -- 1 e-mail, 2 webhook
  recipient          text NOT NULL,
  event              text NOT NULL,
  resource           text NOT NULL,
  subject            text NOT NULL,
  body               text NOT NULL,
  state              smallint NOT NULL, -- 1 pending, 2 delivered, 3 failed
  attempts           integer NOT NULL,
  next_attempt_time  bigint NOT NULL,
  claimed_until      bigint NOT NULL,   -- a replica is sending it until then
  last_error         text NOT NULL,
  create_time        bigint NOT NULL,
  deliver_time       bigint NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_time) WHERE state = 1;
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, create_time DESC, id DESC);

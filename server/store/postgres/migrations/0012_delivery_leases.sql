-- Delivery with several sends in flight per replica (issue 15): a claim is
-- held by a lease token, so that only the replica holding it renews the
-- lease or records the outcome, and every message has a destination (the
-- webhook URL's authority; '' for e-mail, which all goes to the one SMTP
-- server) so that a claim can pass over destinations already busy.
ALTER TABLE outbox
  ADD COLUMN lease_token text NOT NULL DEFAULT '',
  ADD COLUMN destination text NOT NULL GENERATED ALWAYS AS (
    CASE WHEN channel = 2
      THEN lower(coalesce(substring(recipient from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)'), ''))
      ELSE '' END) STORED;

-- Watchers re-read requests by ID in batches (after a notification, a
-- reconnect, or the periodic re-check).
CREATE INDEX access_requests_by_id ON access_requests (id);

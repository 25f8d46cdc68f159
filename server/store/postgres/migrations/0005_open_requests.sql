-- "Action needed" and every state = PENDING list: a tenant's open requests,
-- newest first, found without walking its decided history.
CREATE INDEX access_requests_open ON access_requests (tenant_id, create_time DESC, id DESC)
  WHERE state = 1;

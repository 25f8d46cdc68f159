-- A grant covers what was reviewed (SPEC section 8): its data sources are
-- pinned at approval, each with its support status and whether the customer
-- reviewed it, as the Grant message's pinned_data_sources in JSON
-- ({"pinned_data_sources": [...]}); customer_reviewed says the request had a
-- customer-stage approval.
ALTER TABLE grants
  ADD COLUMN pinned_data_sources jsonb NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN customer_reviewed boolean NOT NULL DEFAULT false;

-- Grants made before this migration held an empty list for "all", decided at
-- check time. Active ones are resolved now, as safely as what is recorded
-- allows:
-- * customer_reviewed: the request has a customer-stage approval.
-- * "all" becomes the environment's data sources as they are now.
-- * A source counts as customer-reviewed only when the request had a
--   customer approval, the environment has not changed since the grant began
--   (so what it says now is what it said at approval), and the source is
--   lockbox-supported in a managed environment. Anything else is pinned as
--   not reviewed, so it stays covered only while it is not protected.
-- Ended grants allow nothing; they keep their list as recorded.
UPDATE grants g SET customer_reviewed = EXISTS (
  SELECT 1
  FROM access_requests r, jsonb_array_elements(r.decisions -> 'decisions') d
  WHERE r.tenant_id = g.tenant_id AND r.id = g.request_id
    AND d ->> 'stage' = 'CUSTOMER_REVIEW' AND d ->> 'verdict' = 'APPROVE');

UPDATE grants g SET data_sources = COALESCE((
  SELECT string_agg(x.ds ->> 'id', ',' ORDER BY x.n)
  FROM environments e,
       jsonb_array_elements(e.data_sources -> 'data_sources') WITH ORDINALITY AS x(ds, n)
  WHERE e.tenant_id = g.tenant_id AND e.id = g.environment_id), '')
WHERE g.state = 1 AND g.data_sources = '';

UPDATE grants g SET pinned_data_sources = jsonb_build_object('pinned_data_sources', COALESCE((
  SELECT jsonb_agg(jsonb_build_object(
           'id', s.id,
           'lockbox_supported', COALESCE((src.ds ->> 'lockbox_supported')::boolean, false),
           'customer_reviewed',
             g.customer_reviewed AND e.managed AND e.update_time <= g.start_time
             AND COALESCE((src.ds ->> 'lockbox_supported')::boolean, false))
         ORDER BY s.n)
  FROM unnest(string_to_array(g.data_sources, ',')) WITH ORDINALITY AS s(id, n)
  JOIN environments e ON e.tenant_id = g.tenant_id AND e.id = g.environment_id
  LEFT JOIN LATERAL (
    SELECT ds FROM jsonb_array_elements(e.data_sources -> 'data_sources') ds
    WHERE ds ->> 'id' = s.id LIMIT 1) src ON true), '[]'::jsonb))
WHERE g.state = 1;

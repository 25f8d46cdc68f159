-- The policy's require_signed_decisions (docs/SIGNED_DECISIONS.md): when on,
-- a customer-stage decision must carry the approver's own signature. Off for
-- every existing tenant, as for a new one.
ALTER TABLE lockbox_policies ADD COLUMN require_signed_decisions boolean NOT NULL DEFAULT false;

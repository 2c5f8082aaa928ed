-- The cloud project (Ironic owner/lessee) that ordered the server, set by the
-- lifecycle's AssignTenant step. Additive: existing rows are unassigned.
ALTER TABLE assets ADD COLUMN tenant TEXT NOT NULL DEFAULT '';

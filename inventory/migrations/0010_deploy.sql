-- A deploy by metalflow's agent: the plan an install attempt writes (JSON,
-- as the lifecycle gave it; NULL for installer attempts), the lifecycle's
-- decision on it (pending until it compared the agent's inventory, then
-- released or refused with a reason), and when the installed disk was
-- made the boot device, so that is done once per attempt.
ALTER TABLE boot_configs ADD COLUMN deploy_plan TEXT;
ALTER TABLE boot_configs ADD COLUMN deploy_decision TEXT NOT NULL DEFAULT '';
ALTER TABLE boot_configs ADD COLUMN deploy_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE boot_configs ADD COLUMN decided_at TIMESTAMP;
ALTER TABLE boot_configs ADD COLUMN disk_booted_at TIMESTAMP;

-- The networks a site's BMCs are in, as its layout declares them (a JSON
-- list of CIDRs): the API refuses a BMC address outside them, so no
-- worker is sent with a BMC's credentials to an address nobody declared.
-- An empty list declares none.
ALTER TABLE sites ADD COLUMN bmc_networks TEXT NOT NULL DEFAULT '[]';

-- Window and reconcile publishes keep a line voided once any VOID named it (publish.projection_sql):
-- the few voided lines of a community are found by this partial index instead of a scan of the
-- whole ledger (5 s of a city reconciliation, docs/benchmarks/README.md).
CREATE INDEX charges_voided ON portal.charges (community_code, charge_id) WHERE voided;

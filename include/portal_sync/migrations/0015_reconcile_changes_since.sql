-- A reconciliation compares contents over a range of dates AND reads every row that changed since
-- its window's start (the mark, less the look-back), whatever its date: the mark moves past them.
ALTER TABLE sync.run_datasets ADD COLUMN IF NOT EXISTS changes_since timestamptz;

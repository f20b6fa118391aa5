-- The fleet status (status.fleet_summary) asks, for every community and data set at once, whether it
-- published within its alert limit: a range of this index per community, newest publish first, so the
-- answer reads only the runs of the last few cadences whatever the history kept.
CREATE INDEX IF NOT EXISTS runs_published ON sync.runs (community_code, published_at DESC)
    WHERE published_at IS NOT NULL;

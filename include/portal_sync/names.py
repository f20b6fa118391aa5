"""Names the sync gives things in the portal database, in a module that imports nothing.

The configuration validates check names while the DAG processor parses every community;
importing the extract or staging code (pyarrow, psycopg) only for these names cost a task
process a quarter of a CPU-second.
"""

ROW_ID = "_row_id"  # staged column: the row's number in its read, the key of its findings
UNREADABLE = "_unreadable"  # staged column: why a value of the row could not be read exactly; NULL when all were
STAGE_SCHEMA = "stage"  # the schema of the per-run staging tables

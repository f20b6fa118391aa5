"""Every reading connection proves it reaches the run's own Caselle, not only the one prepare opened.

The source behind a connection string is replaced between prepare and the extract of one data set
(a SQLite file overwritten by another community's): that data set fails naming both org codes and
the table, and nothing of the other community reaches the portal. Split reads check in each child.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from synctest import community

from portal_sync.datasets import DATASETS
from portal_sync.extract import ExtractStats, read_extract, read_pieces
from portal_sync.pipeline import RunContext, SyncError, extract_dataset, prepare, publish_run, validate_dataset
from portal_sync.source import SourceMismatchError

pytestmark = pytest.mark.integration


def _swap(ours, theirs) -> None:
    """Overwrite our source's file with theirs (both closed first: no WAL left to replay onto the other)."""
    ours.close()
    theirs.close()
    target = Path(ours.spec.database)
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(theirs.spec.database, target)


def test_a_source_replaced_during_a_run_fails_the_data_set_read_from_it(make_source, portal):
    ours = make_source("sqlite", seed=71)
    theirs = make_source("sqlite", seed=72, org_code="SHELBY", org_name="Shelby County")
    ctx = RunContext(community(datasets=("accounts", "charges")), "identity_swap", portal,
                     ours.spec.odbc_connection_string(), use_gx=False)
    prepare(ctx)
    extract_dataset(ctx, "accounts")
    validate_dataset(ctx, "accounts")

    _swap(ours, theirs)
    with pytest.raises(SyncError) as failure:
        extract_dataset(ctx, "charges")
    message = str(failure.value)
    assert "SourceMismatchError" in message and "UB_Transaction" in message, message
    assert "'SHELBY'" in message and "'SPRINGFLD'" in message, message

    with pytest.raises(SyncError, match="charges"):
        publish_run(ctx)
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT count(*) FROM portal.charges").fetchone()[0] == 0
        assert conn.execute("SELECT array_agg(DISTINCT community_code) FROM portal.accounts").fetchone()[0] == \
            ["SPRINGFLD"]
        phase, error = conn.execute("SELECT phase, error FROM sync.run_datasets WHERE run_key = %s"
                                    " AND dataset = 'charges'", (ctx.run_key,)).fetchone()
    assert phase == "failed" and "'SHELBY'" in error and "'SPRINGFLD'" in error


def test_every_read_checks_the_org_and_split_pieces_check_in_their_own_process(make_source):
    sim = make_source("sqlite", seed=73)
    odbc = sim.spec.odbc_connection_string()
    charges = DATASETS["charges"].primary
    stats = ExtractStats()
    rows = sum(b.num_rows for b in read_extract(odbc, charges, [(None, None)], stats=stats, expected_org="SPRINGFLD"))
    assert rows == stats.rows > 0
    with pytest.raises(SourceMismatchError, match=r"UB_Transaction: .*'SPRINGFLD', not 'SHELBY'"):
        list(read_extract(odbc, charges, [(None, None)], stats=ExtractStats(), expected_org="SHELBY"))
    pieces = [('"TransactionID" < 100', None), ('"TransactionID" >= 100', None)]
    with pytest.raises(SourceMismatchError, match=r"UB_Transaction: .*'SPRINGFLD', not 'SHELBY'"):
        list(read_pieces(odbc, charges, pieces, stats=ExtractStats(), expected_org="SHELBY"))

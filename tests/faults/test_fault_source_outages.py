"""The source goes away in the middle of an extract, for the two source engines the PostgreSQL
outage test (test_fault_outages.py) does not cover:

- a `town` Caselle on a **private MariaDB server** (read over MariaDB Connector/ODBC) is killed
  (SIGKILL of our own mariadbd) while the ledger read runs on it, and again while the lines it
  handed over stream into staging;
- a **SQLite** Caselle file is emptied under the reader (truncated to 0 bytes) while the ledger
  streams into staging; it is restored from a copy afterwards. (The tests run as root: chmod would
  not make the file unreadable, and a lock cannot stop a read that has begun in WAL mode.)

Each time the step fails with a message that names the community and the data set, nothing
partial is published, and the retry, once the source is back, brings the portal to the projection.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from faultkit import (
    FAULT_DATASETS,
    Step,
    assert_no_duplicates,
    build_source,
    copy_progress,
    fault_context,
    phases,
    portal_rows,
    rest_of_run,
    stage_tables,
    wait_until,
)
from synctest import assert_in_sync, community, portal_fingerprint

from portal_sync.pipeline import (
    RunContext,
    SyncError,
    extract_dataset,
    prepare,
    publish_run,
    validate_dataset,
)

pytestmark = pytest.mark.integration

CODE = "SPRINGFLD"
DATASETS = FAULT_DATASETS
COMM = {"datasets": list(DATASETS)}
FAILED = f"STEP FAILED: SyncError: {CODE} charges: extract failed:"








def failure_of(victim: Step) -> str:
    """The step's last words (it must have failed), printed for the fault table."""
    assert victim.wait(timeout=180) == 1, victim.output()[-3000:]
    output = victim.output()
    failure = output[output.find("STEP FAILED"):].strip()
    print(failure[:600])
    return failure


def assert_failed_cleanly(portal: str, ctx: RunContext, failure: str, before: str) -> None:
    """The message names community and data set, the audit row says so, nothing reached the portal."""
    assert failure.startswith(FAILED), failure[:3000]
    phase, error = phases(portal, ctx.run_key)["charges"]
    assert phase == "failed" and error.startswith(f"{CODE} charges: extract failed:"), (phase, error)
    assert "Traceback" not in error, error  # the source's own error, not ADBC's wrapping of it
    assert portal_fingerprint(portal) == before


def test_the_mariadb_source_dying_mid_extract_fails_naming_community_and_data_set_then_the_retry_succeeds(
        private_mariadb, portal, tmp_path):
    from caselle_sim import SourceSpec, create_source, open_source

    spec = SourceSpec.from_url(private_mariadb.url(f"caselle_{uuid.uuid4().hex[:6]}"))
    create_source(spec, preset="town", seed=31, org_code=CODE, org_name="City of Springfield",
                  time_zone="America/Denver", customer_number_mask="###-#####-##").close()
    odbc = spec.odbc_connection_string()
    assert "MariaDB" in odbc
    ctx = fault_context(odbc, portal, "mariadb-outage")
    prepare(ctx)
    extract_dataset(ctx, "accounts")
    validate_dataset(ctx, "accounts")
    before = portal_fingerprint(portal)

    # 1. The server dies while it is sending the ledger to the extract.
    victim = Step(portal, odbc, "mariadb-outage", "extract_dataset", ("charges",), COMM,
                  app="fault_mariadb_read").start(tmp_path)
    # Strike once the server has been at it for a while (a town's ledger takes it about a second).
    reading = wait_until("the ledger read running on the MariaDB server for 100 ms",
                         lambda: [q for q in private_mariadb.queries("SELECT%UB_Transaction%") if q["time_ms"] >= 100]
                         or not victim.alive(), every=0.005, timeout=180)
    assert victim.alive(), victim.output()
    private_mariadb.kill()
    print(f"MariaDB killed while its session was {reading[0]['state']!r} for {reading[0]['time_ms']} ms"
          f" on {reading[0]['info'][:40]}...")
    try:
        failure = failure_of(victim)
        assert_failed_cleanly(portal, ctx, failure, before)
        assert "Lost connection to server during query" in failure or "Can't connect" in failure, failure[:3000]
    finally:
        private_mariadb.start()  # InnoDB crash recovery, then the server is back

    # 2. The retry dies again, later: MariaDB Connector/ODBC fetches the whole result before it hands
    # over the first row, so while lines stream into staging the server has finished sending them;
    # the kill then lands on the data set's next read (the customer keys).
    victim = Step(portal, odbc, "mariadb-outage", "extract_dataset", ("charges",), COMM,
                  app="fault_mariadb_copy").start(tmp_path)
    wait_until("ledger lines streaming into staging",
               lambda: copy_progress(portal, "fault_mariadb_copy") > 0 or not victim.alive(), every=0.01,
               timeout=180)
    assert victim.alive(), victim.output()
    still_sending = private_mariadb.queries("SELECT%UB_Transaction%")
    copied = copy_progress(portal, "fault_mariadb_copy")
    private_mariadb.kill()
    print(f"MariaDB killed with {copied} lines in the COPY; ledger read still on the server: {bool(still_sending)}")
    try:
        failure = failure_of(victim)
        assert_failed_cleanly(portal, ctx, failure, before)
        # If the outage outlasts the retries, the publish (ALL_DONE) leaves charges out.
        with pytest.raises(SyncError, match=f"{CODE}: not published: charges: {CODE} charges: extract failed"):
            publish_run(ctx)
        assert portal_rows(portal, CODE)["charges"] == 0
        assert portal_rows(portal, CODE)["accounts"] > 0
    finally:
        private_mariadb.start()

    extract_dataset(ctx, "charges")  # the retry, the server back
    validate_dataset(ctx, "charges")
    rest_of_run(ctx, {"accounts", "charges"})
    with open_source(spec) as sim:
        assert_in_sync(sim, portal, community(**COMM))
    assert_no_duplicates(portal, CODE)
    assert stage_tables(portal, ctx.run_key) == []


def test_the_sqlite_file_emptied_mid_extract_fails_naming_community_and_data_set_then_the_retry_succeeds(
        portal, tmp_path):
    from caselle_sim import Preset, open_source

    sim = build_source(tmp_path / "caselle.db", Preset("village", 800), seed=23)
    spec, lines = sim.spec, sim.counts()["UB_Transaction"]
    sim.close()  # checkpoints the WAL: the file alone is the source
    path = spec.path
    backup = tmp_path / "caselle.backup.db"
    shutil.copyfile(path, backup)
    odbc = spec.odbc_connection_string()
    ctx = fault_context(odbc, portal, "sqlite-outage")
    prepare(ctx)
    extract_dataset(ctx, "accounts")
    validate_dataset(ctx, "accounts")
    before = portal_fingerprint(portal)

    victim = Step(portal, odbc, "sqlite-outage", "extract_dataset", ("charges",), COMM,
                  app="fault_sqlite_gone").start(tmp_path)
    wait_until("ledger lines streaming from the SQLite file into staging",
               lambda: (copy_progress(portal, "fault_sqlite_gone") > 0 and path in victim.open_files())
               or not victim.alive(), every=0.01, timeout=180)
    assert victim.alive(), victim.output()
    copied = copy_progress(portal, "fault_sqlite_gone")
    os.truncate(path, 0)  # the file is emptied under the reader (a botched copy, a restore in progress)
    print(f"SQLite file truncated with {copied} of {lines} lines in the COPY")
    try:
        failure = failure_of(victim)
        assert_failed_cleanly(portal, ctx, failure, before)
        assert "database disk image is malformed" in failure, failure[:3000]

        # A retry while the file is still empty must fail too, never stage an empty ledger.
        gone = "(no such table:|has no table) UB_Transaction"
        with pytest.raises(SyncError, match=f"(?s){CODE} charges: extract failed: .*{gone}"):
            extract_dataset(ctx, "charges")
        with pytest.raises(SyncError, match=f"{CODE}: not published: charges: {CODE} charges: extract failed"):
            publish_run(ctx)
        assert portal_rows(portal, CODE)["charges"] == 0
        assert portal_rows(portal, CODE)["accounts"] > 0
    finally:
        for suffix in ("-wal", "-shm", "-journal"):  # no reader is left: nothing of the empty file may stay
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        shutil.copyfile(backup, path)  # the file is restored

    extract_dataset(ctx, "charges")  # the retry
    validate_dataset(ctx, "charges")
    rest_of_run(ctx, {"accounts", "charges"})
    with open_source(spec) as restored:
        assert restored.counts()["UB_Transaction"] == lines
        assert_in_sync(restored, portal, community(**COMM))
    assert_no_duplicates(portal, CODE)
    assert stage_tables(portal, ctx.run_key) == []

"""Great Expectations results as analysts read them: a community's ``quality.mostly`` reaches GX (its success
flag, sync.gx_results, the report's pass/fail) without changing what is refused, and the run page of the
data-quality site shows GX's result per expectation with sample rows and our reasons, and links GX's JSON."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from synctest import community, sync

from portal_sync.dq_report import build_run_report, page_name

pytestmark = pytest.mark.integration

ORPHAN = 7_300_001  # a line whose customer does not exist: refused (integrity, mostly 1.0 by default)
OLD = 7_300_002  # a line dated 1900: warned (plausibility, mostly 0.99 by default)
TUNED = {"charges.orphan_account": 0.5, "implausible_date": 1.0}


def line(customer: int, key: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "TransactionID": key, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA",
        "Description": "GX REPORT", "Amount": Decimal("1.00"), "TransactionDate": date(2026, 11, 2),
        "InputDate": "2026-11-02 09:00:00.000", "DueDate": None, "Period": "2026-11", "ReferenceNumber": None,
        "ReceiptID": None, "VoidsTransactionID": None}
    row.update(values)
    return row


class Tables(HTMLParser):
    """The GX rows of a run page: per ``tr.gx-result`` its id and cell texts; the sample tables' rows; links."""

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, list[str]] = {}
        self.samples: list[list[str]] = []
        self.links: list[dict[str, str | None]] = []
        self.headers: list[str] = []
        self._row: list[str] | None = None
        self._row_id: str | None = None
        self._in_sample = 0
        self._in_gx = False
        self._cell: list[str] | None = None
        self._header: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "a":
            self.links.append(a)
        if tag == "table" and "gx" in classes:
            self._in_gx = True
        if tag == "table" and "gx-sample" in classes:
            self._in_sample += 1
        if tag == "tr" and "gx-result" in classes:
            self._row, self._row_id = [], a.get("id")
        elif tag == "tr" and self._in_sample:
            self._row, self._row_id = [], None
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "th" and self._in_gx and not self._in_sample:
            self._header = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "th" and self._header is not None:
            self.headers.append("".join(self._header).strip())
            self._header = None
        if tag == "tr" and self._row is not None:
            if self._row_id:
                self.results[self._row_id] = self._row
            elif self._in_sample and self._row:
                self.samples.append(self._row)
            self._row = None
        if tag == "table" and self._in_sample:
            self._in_sample -= 1
        elif tag == "table" and self._in_gx:
            self._in_gx = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._header is not None:
            self._header.append(data)


def gx_rows(portal: str, run_key: str) -> dict[str, dict]:
    with psycopg.connect(portal) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM sync.gx_results WHERE run_key = %s AND dataset = 'charges'",
                           (run_key,)).fetchall()
    return {r["expectation"]: r for r in rows}


def run_key_of(portal: str, run_id: str) -> str:
    with psycopg.connect(portal) as conn:
        return conn.execute("SELECT run_key FROM sync.runs WHERE airflow_run_id = %s", (run_id,)).fetchone()[0]


def test_tuned_mostly_reaches_gx_and_the_report_and_refusals_stay(make_source, portal, tmp_path: Path) -> None:
    sim = make_source("sqlite", seed=31)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    sim.insert_rows("UB_Transaction", [
        line(999_999, ORPHAN), line(customer, OLD, TransactionDate=date(1900, 1, 1), Period="1900-01")])
    comm = community(code="GXTUNE", source_org_code="SPRINGFLD", datasets=("accounts", "charges"),
                     quality={"mostly": TUNED})
    results = sync(sim, portal, "gx-tuned", comm, use_gx=True)
    assert {name: row["phase"] for name, row in results.items()} == {"accounts": "published", "charges": "published"}
    run_key = run_key_of(portal, "gx-tuned")

    stored = gx_rows(portal, run_key)
    orphan, old = stored["orphan_account:CustomerID"], stored["implausible_date:TransactionDate"]
    # orphan_account: 1 bad row of thousands, mostly 0.5: GX calls it a success; the default 1.0 would not
    assert (orphan["mostly"], orphan["unexpected_count"], orphan["success"], orphan["severity"]) == (
        0.5, 1, True, "refuse")
    # implausible_date tuned up to 1.0: one 1900 line fails it (the default 0.99 would pass)
    assert (old["mostly"], old["unexpected_count"], old["success"], old["severity"]) == (1.0, 1, False, "warn")
    assert stored["amount_size:Amount"]["mostly"] == 0.99 and stored["money_exact:Amount"]["mostly"] == 1.0
    # GX ran with the values, not the stored parameters (it leaves out a mostly equal to its default 1)
    assert orphan["kwargs"]["mostly"] == 0.5 and old["kwargs"].get("mostly", 1.0) == 1.0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(old["kwargs"]["max_value"]))
    assert orphan["sample_keys"][0]["TransactionID"] == ORPHAN
    with psycopg.connect(portal) as conn:
        # severity still decides: the orphan is refused whatever mostly says, the old line publishes
        assert conn.execute("SELECT count(*) FROM portal.charges WHERE charge_id = %s", (ORPHAN,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM portal.charges WHERE charge_id = %s", (OLD,)).fetchone()[0] == 1
        refused = conn.execute("SELECT rule, severity FROM sync.run_findings WHERE run_key = %s AND row_key = %s",
                               (run_key, str(ORPHAN))).fetchall()
    assert refused == [("orphan_account", "refuse")]

    build_run_report(portal, "GXTUNE", run_key, out_dir=tmp_path)
    page_path = tmp_path / "runs" / page_name(run_key)
    page = page_path.read_text()
    parsed = Tables()
    parsed.feed(page)
    assert parsed.headers[:8] == ["expectation", "arguments", "observed", "unexpected", "unexpected %", "severity",
                                  "mostly", "result"]
    orphan_row = parsed.results["gx-charges-orphan_account:CustomerID"]
    assert orphan_row[0].startswith("expect_reference_to_resolve")
    assert orphan_row[3:] == ["1", orphan_row[4], "refuse", "50 %", "pass"] and orphan_row[4].endswith(" %")
    old_row = parsed.results["gx-charges-implausible_date:TransactionDate"]
    assert old_row[0].startswith("expect_column_values_to_be_between")
    assert "column=TransactionDate" in old_row[1] and "min_value=1950-01-01" in old_row[1]
    assert old_row[3] == "1" and old_row[5:] == ["warn", "100 %", "fail"]
    assert parsed.results["gx-charges-amount_size:Amount"][6] == "99 %"
    # the sample rows carry our key and our reason (sync.run_findings)
    samples = {row[0]: row[1] for row in parsed.samples}
    assert str(ORPHAN) in samples and "999999" in samples[str(ORPHAN)]
    assert str(OLD) in samples and "1900-01-01" in samples[str(OLD)]

    # the JSON download: linked from the page, next to it, and GX's own result
    [link] = [a for a in parsed.links if (a.get("href") or "").endswith(".gx.json")]
    assert "download" in link and "/" not in str(link["href"])
    downloaded = json.loads((page_path.parent / str(link["href"])).read_text())
    assert downloaded["run_key"] == run_key and set(downloaded["datasets"]) == {"accounts", "charges"}
    gx_results = downloaded["datasets"]["charges"]["rows"]["results"]
    by_type = {r["expectation_config"]["meta"]["portal_sync_rule"]: r for r in gx_results}
    assert by_type["implausible_date:TransactionDate"]["success"] is False
    assert by_type["orphan_account:CustomerID"]["success"] is True
    # offline as before: no external reference
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page)
    assert "default-src 'none'" in page

    # the next run validates only what it would publish: the refused line again (retried), nothing of accounts
    sync(sim, portal, "gx-again", comm, use_gx=True)
    again = run_key_of(portal, "gx-again")
    with psycopg.connect(portal) as conn:
        validated = dict(conn.execute("SELECT dataset, rows_validated FROM sync.gx_validations WHERE run_key = %s",
                                      (again,)).fetchall())
    assert validated == {"charges": 1}
    assert gx_rows(portal, again)["orphan_account:CustomerID"]["success"] is False  # 1 of 1 row: under 0.5
    build_run_report(portal, "GXTUNE", again, out_dir=tmp_path)
    again_page = (tmp_path / "runs" / page_name(again)).read_text()
    accounts = again_page[again_page.index('id="gx-accounts"'):again_page.index('id="ds-charges"')]
    assert "validated no row of this data set" in accounts
    assert json.loads((tmp_path / "runs" / page_name(again).replace(".html", ".gx.json")).read_text())[
        "datasets"].keys() == {"charges"}


def test_a_column_expectation_screened_clean_or_failing_reads_as_its_full_result(make_source, portal) -> None:
    """The screen (mostly 1, no samples) decides only a clean expectation; one that finds a row runs as
    configured: under the default mostly 0.99 the 1900 line passes, counted and sampled."""
    sim = make_source("sqlite", seed=32)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    sim.insert_rows("UB_Transaction", [line(customer, OLD, TransactionDate=date(1900, 1, 1), Period="1900-01")])
    comm = community(code="GXSCREEN", source_org_code="SPRINGFLD", datasets=("accounts", "charges"))
    sync(sim, portal, "gx-screen", comm, use_gx=True)
    run_key = run_key_of(portal, "gx-screen")

    stored = gx_rows(portal, run_key)
    old, size = stored["implausible_date:TransactionDate"], stored["amount_size:Amount"]
    assert (old["mostly"], old["unexpected_count"], old["success"], old["severity"]) == (0.99, 1, True, "warn")
    assert [s["TransactionID"] for s in old["sample_keys"]] == [OLD]
    assert old["kwargs"]["mostly"] == 0.99
    # clean: decided by the screen, recorded as the configured expectation with nothing unexpected
    assert (size["mostly"], size["unexpected_count"], size["unexpected_percent"], size["success"]) == (
        0.99, 0, 0.0, True)
    assert size["sample_keys"] == [] and size["kwargs"]["mostly"] == 0.99
    assert size["element_count"] == old["element_count"] > 1
    with psycopg.connect(portal) as conn:
        result = conn.execute("SELECT result FROM sync.gx_validations WHERE run_key = %s AND dataset = 'charges'",
                              (run_key,)).fetchone()[0]
    screened = {r["expectation_config"]["meta"]["portal_sync_rule"]: r for r in result["screen"]["results"]}
    rerun = {r["expectation_config"]["meta"]["portal_sync_rule"] for r in result["rows"]["results"]}
    assert screened["implausible_date:TransactionDate"]["success"] is False
    assert screened["amount_size:Amount"]["success"] is True
    assert "implausible_date:TransactionDate" in rerun and "amount_size:Amount" not in rerun


def test_a_custom_expectation_counts_every_bad_row_and_samples_a_few(make_source, portal) -> None:
    """The custom expectations read the count and the sample in one query (a window count, LIMIT 20):
    25 orphan lines count 25, keep 20 keys, and all 25 are refused."""
    sim = make_source("sqlite", seed=33)
    orphans = list(range(ORPHAN + 100, ORPHAN + 125))
    sim.insert_rows("UB_Transaction", [line(999_999, key) for key in orphans])
    comm = community(code="GXCOUNT", source_org_code="SPRINGFLD", datasets=("accounts", "charges"))
    sync(sim, portal, "gx-count", comm, use_gx=True)
    run_key = run_key_of(portal, "gx-count")

    orphan = gx_rows(portal, run_key)["orphan_account:CustomerID"]
    assert (orphan["unexpected_count"], orphan["success"], orphan["severity"]) == (25, False, "refuse")
    sampled = [s["TransactionID"] for s in orphan["sample_keys"]]
    assert len(sampled) == 20 and set(sampled) <= set(orphans)
    assert orphan["element_count"] > 25
    clean = gx_rows(portal, run_key)["money_exact:Amount"]
    assert (clean["unexpected_count"], clean["success"], clean["sample_keys"]) == (0, True, [])
    with psycopg.connect(portal) as conn:
        refused = conn.execute("SELECT count(DISTINCT row_key) FROM sync.run_findings WHERE run_key = %s"
                               " AND rule = 'orphan_account'", (run_key,)).fetchone()[0]
        published = conn.execute("SELECT count(*) FROM portal.charges WHERE charge_id = ANY(%s)",
                                 (orphans,)).fetchone()[0]
    assert (refused, published) == (25, 0)

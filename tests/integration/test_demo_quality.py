"""The demo shows data quality at work: the community the demo plants bad rows in gets them refused and
warned by the expected rules, and its data-quality report has content.

Same code path as `make demo`, only without Airflow: the source is built by scripts/demo.py's
``build_source`` from its ``SOURCES`` entry, the community comes from the demo configuration
(include/config/communities.yaml), and the run is the pipeline's, with Great Expectations.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from synctest import sync

from caselle_sim import SourceSpec
from portal_sync.config import load_config
from portal_sync.dq_report import build_site

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "CEDARHLS"  # the demo community with planted bad rows


def demo_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))  # scripts/demo.py reads it at import
    spec = importlib.util.spec_from_file_location("cps_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def findings(portal: str, run_id: str) -> dict[tuple[str, str, str], set[str]]:
    """(data set, rule, severity) -> row keys the run flagged."""
    out: dict[tuple[str, str, str], set[str]] = {}
    with psycopg.connect(portal) as conn:
        for dataset, rule, severity, key in conn.execute(
            "SELECT f.dataset, f.rule, f.severity, f.row_key FROM sync.run_findings f JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = %s", (run_id,)).fetchall():
            out.setdefault((dataset, rule, severity), set()).add(key)
    return out


def test_demo_community_refuses_and_warns_its_planted_rows(portal: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_module(monkeypatch)
    settings = demo.SOURCES[PLANTED]
    assert settings.get("plant_bad_rows"), "the demo should plant bad rows in one community"
    [community] = [c for c in load_config(ROOT / "include" / "config" / "communities.yaml").communities
                   if c.code == PLANTED]
    sim = demo.build_source(PLANTED, settings, tmp_path / "cedarhls.db")
    try:
        [orphan_receipt] = sim.query('SELECT "ReceiptID" FROM "CR_Receipt" WHERE "CustomerID" NOT IN'
                                     ' (SELECT "CustomerID" FROM "UB_Customer") AND "CustomerID" IS NOT NULL')
        [old_line] = sim.query('SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionDate" < ?',
                               ("1950-01-01",))
        [odd_line] = sim.query('SELECT "TransactionID" FROM "UB_Transaction"'
                               ' WHERE abs("Amount" * 100 - round("Amount" * 100)) > 0.001')

        results = sync(sim, portal, "demo-quality", comm=community, use_gx=True)
        assert all(row["phase"] == "published" for row in results.values()), results  # the rest publishes
        found = findings(portal, "demo-quality")
        assert found[("payments", "orphan_account", "refuse")] == {str(orphan_receipt[0])}
        assert found[("charges", "money_exact", "refuse")] == {str(odd_line[0])}
        assert str(old_line[0]) in found[("charges", "implausible_date", "warn")]
        with psycopg.connect(portal) as conn:
            published = {r[0] for r in conn.execute(
                "SELECT charge_id FROM portal.charges WHERE community_code = %s AND charge_id = ANY(%s)",
                (PLANTED, [old_line[0], odd_line[0]]))}
            quarantined = {(r[0], r[1]) for r in conn.execute(
                "SELECT dataset, rule FROM sync.quarantine WHERE community_code = %s", (PLANTED,))}
        assert published == {old_line[0]}  # a warning publishes, a refusal does not
        assert {("payments", "orphan_account"), ("charges", "money_exact")} <= quarantined

        # The report a newcomer opens has the refusals and warnings, with their rows.
        index, _ = build_site(portal, PLANTED, tmp_path / "report")
        pages = "".join(p.read_text() for p in (tmp_path / "report").rglob("*.html"))
        for text in ("orphan_account", "money_exact", "implausible_date", str(orphan_receipt[0]), str(odd_line[0])):
            assert text in pages
        assert "payments refused 1" in index.read_text()
    finally:
        sim.close()
        SourceSpec.from_url(f"sqlite:///{tmp_path / 'cedarhls.db'}").drop()


def test_planting_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_module(monkeypatch)
    planted = []
    for n in (1, 2):
        sim = demo.build_source(PLANTED, demo.SOURCES[PLANTED], tmp_path / f"cedarhls{n}.db")
        try:
            planted.append(sim.query('SELECT "TransactionID", "CustomerID", "Amount", "TransactionDate"'
                                     ' FROM "UB_Transaction" ORDER BY "TransactionID" DESC LIMIT 2')
                           + sim.query('SELECT "ReceiptID", "CustomerID", "Amount" FROM "CR_Receipt"'
                                       ' ORDER BY "ReceiptID" DESC LIMIT 1'))
        finally:
            sim.close()
    assert planted[0] == planted[1]

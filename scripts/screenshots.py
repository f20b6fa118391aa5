"""Screenshots of the data-quality report and the sync status page, for docs/screenshots/.

Builds the demo's small communities (scripts/demo.py's sources, CEDARHLS with its planted bad
rows, and MESAVRD) in a temporary directory, syncs each a few times with the pipeline into a
throw-away portal database (no Airflow), renders the community report's index and the status
page with the same functions the report task and the Airflow plugin use, and photographs them
with headless Chromium, offline. The database and the sources are removed afterwards.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--runs 3]

All the runs happen now, so the 30-day charts have today's points only: what a newcomer sees on
the first day of the demo.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

CHROMIUM = "/usr/bin/chromium"
COMMUNITIES = ("CEDARHLS", "MESAVRD")  # the demo's small ones: quick to build and sync
REPORT_OF = "CEDARHLS"  # the one whose report is shown: it has the planted bad rows


def demo_sources() -> dict[str, dict]:
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    spec = importlib.util.spec_from_file_location("cps_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shoot(page: Path, out: Path, profile: Path, height: int) -> None:
    """A PNG of a local page, offline: no name resolves, no proxy answers."""
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost", "--proxy-server=127.0.0.1:9",
         "--hide-scrollbars", f"--screenshot={out}", f"--window-size=1280,{height}", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=180,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--runs", type=int, default=3, help="syncs per community (the first reads everything)")
    parser.add_argument("--admin-url", default=os.environ.get("CPS_ADMIN_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cps-screenshots-"))
    os.environ["PORTAL_SYNC_REPORT_DIR"] = str(work / "reports")
    from portal_sync import dq_report, status
    from portal_sync.config import LoadedConfig, load_config
    from portal_sync.migrate import migrate
    from portal_sync.pipeline import RunContext, sync_run
    from portal_sync.reporting import html, model
    from portal_sync.store import reads

    demo = demo_sources()
    config = load_config(ROOT / "include" / "config" / "communities.yaml")
    communities = [c for c in config.communities if c.code in COMMUNITIES]
    name = f"cps_screenshots_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    portal_url = f"{base}/{name}"
    try:
        migrate(portal_url)
        for community in communities:
            sim = demo.build_source(community.code, demo.SOURCES[community.code], work / f"{community.code}.db")
            for n in range(args.runs):  # the first reads everything, the next ones the window up to now
                outcome = sync_run(RunContext(community, f"screenshots_{n}", portal_url,
                                              sim.spec.odbc_connection_string()))
                print(f"{community.code} run {n}: {outcome.message or 'published'}")
            sim.close()
            dq_report.build_site(portal_url, community.code)

        # The report's index with its trends, as the report task writes it.
        site = dq_report.report_dir(REPORT_OF)
        with reads.connect(portal_url) as conn:
            tz = dq_report.site_zone(conn, REPORT_OF)
            summaries = dq_report.Site(site, REPORT_OF).with_pages(
                model.summaries(conn, reads.latest_runs(conn, REPORT_OF, dq_report.INDEX_RUNS)))
            months = dq_report.Site(site, REPORT_OF).months()
            index = site / "index.html"
            index.write_text(html.render_index(REPORT_OF, summaries, months, tz, dq_report.INDEX_RUNS,
                                               trends=model.trends(conn, REPORT_OF, tz)), encoding="utf-8")
        shown = LoadedConfig(tuple(communities), ())
        page = work / "status.html"
        page.write_text(html.status_page("Caselle sync status", shown,
                                         data=status.overview(portal_url, shown, now=datetime.now(UTC))),
                        encoding="utf-8")
        args.out.mkdir(parents=True, exist_ok=True)
        shoot(index, args.out / "dq-report.png", work / "profile", 1500)
        shoot(page, args.out / "status-page.png", work / "profile", 2100)
        for png in ("dq-report.png", "status-page.png"):
            print(f"wrote {args.out / png} ({(args.out / png).stat().st_size:,} bytes)")
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

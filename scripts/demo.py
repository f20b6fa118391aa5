"""The demo: simulated communities in SQLite, synced into PostgreSQL by a real Airflow.

Called by `make demo` after the set-up. Safe to run again: existing demo sources are
reused, Airflow components already running are left alone, and a new run of each
community's DAG re-syncs (changing nothing when the sources did not change).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from caselle_sim import Simulator

ROOT = Path(os.environ["PROJECT_ROOT"])
DEMO_DIR = ROOT / ".demo"

# code -> how its simulated Caselle is built (matching airflow_settings.yaml and communities.yaml)
SOURCES = {
    "SPRINGFLD": dict(file="springfld.db", preset="town", seed=11, org_name="City of Springfield",
                      time_zone="America/Denver", customer_number_mask="###-#####-##"),
    # plant_bad_rows: an orphan payment, a line dated 1900 and an amount of three decimals (caselle_sim's
    # Simulator.plant_bad_rows), so the demo shows refusals, warnings and a data-quality report with content
    "CEDARHLS": dict(file="cedarhls.db", preset="tiny", seed=22, org_name="Town of Cedar Hills",
                     time_zone="America/Los_Angeles", customer_number_mask="#.####.#", plant_bad_rows=True),
    "MESAVRD": dict(file="mesavrd.db", preset="tiny", seed=33, org_name="Mesa Verde Water District",
                    time_zone="America/Phoenix", customer_number_mask="######"),
}


def say(message: str) -> None:
    print(f"[demo {datetime.now():%H:%M:%S}] {message}", flush=True)


def build_source(code: str, spec: dict, path: Path) -> Simulator:
    """One demo Caselle in a SQLite file, its clock on the community's local time now (tests build it the same way)."""
    from caselle_sim import SourceSpec, create_source

    now = datetime.now(ZoneInfo(spec["time_zone"])).replace(tzinfo=None, second=0, microsecond=0)
    return create_source(SourceSpec.from_url(f"sqlite:///{path}"), preset=spec["preset"], seed=spec["seed"],
                         org_code=code, org_name=spec["org_name"], time_zone=spec["time_zone"],
                         customer_number_mask=spec["customer_number_mask"], start=now,
                         plant_bad_rows=spec.get("plant_bad_rows", False))


def build_sources() -> None:
    DEMO_DIR.mkdir(exist_ok=True)
    for code, spec in SOURCES.items():
        path = DEMO_DIR / spec["file"]
        if path.exists():
            say(f"{code}: reusing {path.relative_to(ROOT)}")
            continue
        started = time.monotonic()
        tmp = path.with_suffix(".building")
        tmp.unlink(missing_ok=True)
        build_source(code, spec, tmp).close()
        tmp.rename(path)  # a half-built source is never mistaken for a finished one
        say(f"{code}: built a '{spec['preset']}' Caselle in {time.monotonic() - started:.1f}s -> "
            f"{path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.1f} MB)")


def main() -> int:
    from portal_sync.airflow_api import AirflowClient
    from portal_sync.config import load_config
    from portal_sync.migrate import ensure_database, migrate
    from portal_sync.report import format_runs, last_runs

    started = time.monotonic()
    session_start = datetime.now(UTC)
    portal_url = os.environ["PORTAL_DB_URL"]
    build_sources()
    ensure_database(portal_url)
    applied = migrate(portal_url)
    say(f"portal database ready ({len(applied)} migration(s) applied)")

    subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "start"], check=True)
    client = AirflowClient(os.environ["AIRFLOW__API__BASE_URL"], "admin", os.environ["CPS_AIRFLOW_PASSWORD"])
    communities = load_config().communities
    runs = {}
    for community in communities:
        client.wait_for_dag(community.dag_id)
        client.set_paused(community.dag_id, False)
        runs[community.dag_id] = client.trigger(community.dag_id)
        say(f"{community.code}: triggered {community.dag_id} run {runs[community.dag_id]}")
    say("waiting for the runs (the first task start costs Airflow some seconds)...")
    states = client.wait_for_runs(runs)
    print()
    # Every run of this session (unpausing also lets the scheduler start the latest interval's run).
    print(format_runs(last_runs(portal_url, None, limit=10, since=session_start)))
    print()
    for dag_id, state in states.items():
        say(f"{dag_id}: {state}")
    base = os.environ["AIRFLOW__API__BASE_URL"]
    say(f"done in {time.monotonic() - started:.0f}s. Airflow UI: {base}  (login admin / "
        f"{os.environ['CPS_AIRFLOW_PASSWORD']}). The DAGs stay unpaused and keep syncing on their schedules;"
        " stop Airflow with `make airflow-down`.")
    return 0 if all(state == "success" for state in states.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

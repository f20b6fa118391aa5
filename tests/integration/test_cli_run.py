"""`portal-sync run` takes a trigger's parameters from the shell and can answer in JSON."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
import pytest
from synctest import advance

from portal_sync.cli import main
from portal_sync.datasets import DATASET_NAMES, DATASETS

pytestmark = pytest.mark.integration

CONFIG = """
communities:
  - code: SPRINGFLD
    caselle_conn_id: caselle_test
    time_zone: America/Denver
    reconcile_schedule: null
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "communities.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("PORTAL_SYNC_CONFIG", str(path))
    return path


def run(portal: str, sim, *options: str) -> list[str]:
    return ["--portal-url", portal, "run", "springfld", "--source-odbc", sim.spec.odbc_connection_string(), "--no-gx",
            *options]


def portal_rows(portal: str, table: str) -> int:
    with psycopg.connect(portal) as conn:
        return conn.execute(f"SELECT count(*) FROM portal.{table}").fetchone()[0]


def test_json_outcome_per_data_set(make_source, portal, config, capsys):
    sim = make_source("sqlite", seed=41)
    assert main(run(portal, sim, "--json")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["community"] == "SPRINGFLD" and answer["run_key"].startswith("springfld_")
    assert (answer["outcome"], answer["error"]) == ("published", None)
    assert set(answer["datasets"]) == set(DATASET_NAMES)
    for name, ds in answer["datasets"].items():
        assert set(ds) == {"mode", "phase", "window_start", "window_end", "counts", "refused", "error"}, name
        assert (ds["mode"], ds["phase"], ds["error"]) == ("full", "published", None), name
        assert set(ds["counts"]) == {"extracted", "warned", "inserted", "updated", "unchanged", "deleted", "restored",
                                     "archived", "superseded"}
        assert ds["counts"]["inserted"] + ds["refused"] <= ds["counts"]["extracted"]
    assert answer["datasets"]["accounts"]["counts"]["inserted"] == portal_rows(portal, "accounts") > 0

    # The data interval a scheduled run would have: the windowed data sets read that window.
    (start, end), _ = advance(sim, minutes=10)
    assert main(run(portal, sim, "--json", "--interval-start", start.isoformat(),
                    "--interval-end", end.isoformat())) == 0
    again = json.loads(capsys.readouterr().out)
    charges = again["datasets"]["charges"]
    assert (charges["mode"], charges["phase"]) == ("window", "published")
    assert datetime.fromisoformat(charges["window_end"]) == end


def test_datasets_narrow_the_run(make_source, portal, config, capsys):
    sim = make_source("sqlite", seed=42)
    assert main(run(portal, sim, "--json", "--datasets", "accounts,charges", "--datasets", "balances")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["datasets"]) == {"accounts", "charges", "balances"}
    assert portal_rows(portal, "accounts") > 0 and portal_rows(portal, DATASETS["payments"].portal_table) == 0


def test_dry_run_publishes_nothing(make_source, portal, config, capsys):
    sim = make_source("sqlite", seed=43)
    assert main(run(portal, sim, "--json", "--dry-run")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "dry_run"
    assert {ds["phase"] for ds in answer["datasets"].values()} == {"validated"}
    assert all(portal_rows(portal, DATASETS[name].portal_table) == 0 for name in DATASET_NAMES)


@pytest.mark.parametrize(("options", "named"), [
    (("--window-start", "yesterday", "--window-end", "2026-01-02T00:00:00+00:00"), "window_start"),
    (("--window-start", "2026-01-01T00:00:00+00:00"), "window_start and window_end go together"),
    (("--datasets", "acounts"), "datasets"),
    (("--allow-mass-delete", "everything"), "allow_mass_delete"),
    (("--interval-start", "2026-01-01T00:00:00", "--interval-end", "2026-01-01T00:05:00+00:00"), "--interval-start"),
    (("--interval-start", "2026-01-01T00:00:00+00:00"), "--interval-end"),
])
def test_a_bad_option_value_exits_2_naming_it(portal, config, capsys, options, named):
    argv = ["--portal-url", portal, "run", "springfld", "--source-odbc", "Driver={none}", *options]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT count(*) FROM sync.runs").fetchone()[0] == 0  # refused before any work


@pytest.mark.parametrize(("argv", "named"), [
    (["run", "springfld", "--source-odbc", "Driver={SQLite3};Database=/nonexistent/caselle.db;StepAPI=1;", "--no-gx"],
     "/nonexistent/caselle.db does not exist"),
    (["run", "springfld", "--source-odbc", "Driver={No Such Driver};Database=x;"], "No Such Driver"),
    (["run", "NOWHERE", "--source-odbc", "Driver={SQLite3};Database=x;"], "no community 'NOWHERE'"),
    (["status", "NOWHERE"], "no community 'NOWHERE'"),
    (["explain", "NOWHERE", "1"], "no community 'NOWHERE'"),
    (["runs", "NOWHERE"], "no community 'NOWHERE'"),
    (["dq-report", "NOWHERE"], "no community 'NOWHERE'"),
    (["roles", "--community", "NOWHERE"], "no community 'NOWHERE'"),
])
def test_an_operator_mistake_is_one_line_and_exit_2(portal, config, capsys, argv, named):
    assert main(["--portal-url", portal, *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err, err
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT count(*) FROM sync.runs").fetchone()[0] == 0


def test_a_mistyped_source_path_from_the_shell_is_one_line(portal, config, tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "springfeld.db"
    done = subprocess.run([sys.executable, "-m", "portal_sync.cli", "--portal-url", portal, "run", "SPRINGFLD",
                           "--source-odbc", f"Driver={{SQLite3}};Database={path};"],
                          env={**os.environ, "PORTAL_SYNC_CONFIG": str(config)}, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"portal-sync run: --source-odbc: the SQLite source's database file "
                                                 f"{path} does not exist (check Database= in the connection string)"]
    assert not path.exists()


def test_an_unreachable_portal_database_is_one_line(config, capsys):
    url = "postgresql://postgres@127.0.0.1:5432/cps_no_such_portal_db"
    assert main(["--portal-url", url, "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cps_no_such_portal_db" in err, err

"""The caselle-sim command line, end to end on a SQLite file."""

from __future__ import annotations

from caselle_sim import SourceSpec
from caselle_sim.cli import main


def test_cli_create_evolve_events_info_drop(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["create", url, "--preset", "tiny", "--seed", "3", "--org-code", "CEDARHLS",
                 "--org-name", "Town of Cedar Hills", "--tz", "America/Boise", "--mask", "##-####",
                 "--start", "2026-06-01T09:00"]) == 0
    assert "UB_Transaction" in capsys.readouterr().out
    assert main(["evolve", url, "--minutes", "30", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "2026-06-01 09:30:00 -> 2026-06-01 10:00:00" in out
    for event in (["period-close", "--purge-before", "2019-01-01"], ["delete-inactive", "--count", "2"],
                  ["renumber", "--fraction", "0.5"], ["modify-data", "--count", "3"],
                  ["orphans", "--lines", "2", "--receipts", "1"]):
        assert main(["event", url, *event]) == 0
    capsys.readouterr()
    assert main(["info", url]) == 0
    out = capsys.readouterr().out
    assert "step 7" in out and "America/Boise" in out and "UB_PeriodClose" in out
    assert main(["drop", url]) == 0
    assert not SourceSpec.from_url(url).exists()

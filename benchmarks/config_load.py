"""What reading the communities configuration costs at fleet scale. Not a test: run it on purpose.

    .venv/bin/python benchmarks/config_load.py [--communities 1000] [--repeat 5] [--layout file|dir]

Writes a generated configuration of N communities (one file, or a directory of one file per
community with ``--layout dir``) to a temporary directory, then measures CPU seconds
(``time.process_time``) of:

- ``load_config()`` (what the DAG processor runs on every parse), and its parts: the YAML parse
  with libyaml (``CSafeLoader``) against the pure-Python ``SafeLoader``, and pydantic validation,
  cold and with ``portal_sync.rules`` imported already (``validate_warm``: the first configured
  ``quality.severity`` imports it to know the check names, and it imports the extract code);
- ``load_community(code)`` (what a task process runs once), for the last community of the file.

Each figure is measured cold, in a fresh process that has imported ``portal_sync.config`` (the
import itself is reported apart: the DAG file pays it anyway), as the median of ``--repeat``
processes. The generated entries look like a real fleet: a few zones, crons and pools, some with
``quality`` severities and cadences.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ZONES = ["America/Denver", "America/Los_Angeles", "America/Phoenix", "America/Chicago", "America/New_York"]
SCHEDULES = ["*/5 * * * *", "*/15 * * * *", "*/10 * * * *", "0 * * * *"]


def entry(i: int) -> dict:
    """One generated community, varied the way a fleet varies."""
    item: dict = {
        "code": f"C{i:05d}",
        "name": f"Community number {i}",
        "caselle_conn_id": f"caselle_c{i:05d}",
        "pool": f"caselle_server_{i % 40}",
        "time_zone": ZONES[i % len(ZONES)],
        "schedule": SCHEDULES[i % len(SCHEDULES)],
        "datasets": ["accounts", "residents", "charges", "payments", "balances", "assessments"][: 4 + i % 3],
    }
    if i % 3 == 0:
        item["cadence_minutes"] = {"accounts": 60, "residents": 60}
    if i % 4 == 0:
        item["quality"] = {"severity": {"charges.amount_size": "warn", "row_count_change": "warn"}, "max_amount": 500000}
    return item


def write_config(root: Path, n: int, layout: str) -> Path:
    defaults = {"visible_statuses": ["active", "final"], "start_date": "2026-11-01", "look_back_minutes": 30}
    if layout == "file":
        path = root / "communities.yaml"
        path.write_text(yaml.safe_dump({"defaults": defaults, "communities": [entry(i) for i in range(n)]},
                                       sort_keys=False))
        return path
    path = root / "communities.d"
    path.mkdir()
    for i in range(n):
        (path / f"c{i:05d}.yaml").write_text(
            yaml.safe_dump({"defaults": defaults, "communities": [entry(i)]}, sort_keys=False))
    return path


CHILD = r"""
import json, sys, time
t0 = time.process_time()
import yaml
from portal_sync import config
imported = time.process_time() - t0
path, what, code = sys.argv[1], sys.argv[2], sys.argv[3]
from pathlib import Path
path = Path(path)
text = path.read_text() if path.is_file() else ""
t0 = time.process_time()
if what == "load_config":
    loaded = config.load_config(path)
    assert not loaded.errors, loaded.errors[:3]
    count = len(loaded.communities)
elif what == "load_community":
    count = 1 if config.load_community(code, path).code == code else 0
elif what == "yaml_c":
    count = len(config.load_yaml(text)[0]["communities"])
elif what == "yaml_py":
    count = len(yaml.load(text, Loader=yaml.SafeLoader)["communities"])
elif what in ("validate", "validate_warm"):
    document, dups = config.load_yaml(text)
    if what == "validate_warm":  # the severity check's import of portal_sync.rules paid already
        config._check_names()
    t0 = time.process_time()
    count = len(config.parse_config(document, duplicates=dups).communities)
print(json.dumps({"cpu": time.process_time() - t0, "import": imported, "count": count}))
"""


def measure(path: Path, what: str, code: str, repeat: int) -> tuple[float, float, int]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), what, code], check=True,
                             capture_output=True, text=True)
        runs.append(json.loads(out.stdout))
    return (statistics.median(r["cpu"] for r in runs), statistics.median(r["import"] for r in runs),
            runs[0]["count"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--communities", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--layout", choices=["file", "dir"], default="file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), args.communities, args.layout)
        last = entry(args.communities - 1)["code"]
        steps = ["load_config", "load_community"]
        if args.layout == "file":
            steps[1:1] = ["yaml_c", "yaml_py", "validate", "validate_warm"]
        print(f"{args.communities} communities, layout {args.layout}, median of {args.repeat} fresh processes "
              f"(load {time.strftime('%Y-%m-%d %H:%M')})")
        for what in steps:
            cpu, imported, count = measure(path, what, last, args.repeat)
            print(f"  {what:15s} {cpu:7.3f} CPU-s  ({count} communities; import of portal_sync.config "
                  f"{imported:.2f} CPU-s apart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where Great Expectations' time goes: benchmarks/gx_cost.py with every SQLAlchemy statement timed.

    .venv/bin/python benchmarks/gx_trace.py [town|city] [idle-first]

Only GX talks to PostgreSQL through SQLAlchemy here, so the engine events see GX's statements and
nothing else. Prints, after gx_cost.py's own figures, the statements by total time (docs/benchmarks/gx.md).
Run on purpose, not by the tests.
"""

import atexit
import collections
import re
import runpy
import sys
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

_TIMES: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])


@event.listens_for(Engine, "before_cursor_execute")
def _started(conn, cursor, statement, parameters, context, executemany) -> None:
    conn.info.setdefault("cps_started", []).append(time.monotonic())


@event.listens_for(Engine, "after_cursor_execute")
def _finished(conn, cursor, statement, parameters, context, executemany) -> None:
    seconds = time.monotonic() - conn.info["cps_started"].pop()
    entry = _TIMES[re.sub(r"\s+", " ", statement)[:300]]
    entry[0] += 1
    entry[1] += seconds


def _report() -> None:
    total = sum(t for _, t in _TIMES.values())
    print(f"\n== {sum(int(n) for n, _ in _TIMES.values())} GX statements, {total:.1f} s")
    for text, (count, seconds) in sorted(_TIMES.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"{seconds:8.2f}s {int(count):4d}x  {text}")


atexit.register(_report)
sys.argv = ["gx_cost.py", *sys.argv[1:]]
runpy.run_path(str(Path(__file__).with_name("gx_cost.py")), run_name="__main__")

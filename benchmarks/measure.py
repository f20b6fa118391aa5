"""Measuring one unit of work: a fresh child interpreter, its wall, CPU and peak RSS, and the
CPU the PostgreSQL server spent for it.

Every measured unit runs in its own ``python benchmarks/child.py`` process, so peak RSS is that
unit's alone (``ru_maxrss`` of the child, including its imports, as an Airflow task would have)
and nothing a previous unit loaded stays in memory. The child times the work itself (wall and
``getrusage`` CPU of itself and anything it waited for); the parent samples the PostgreSQL
backends that serve the unit's databases (their process titles name the database) from /proc,
because most of a load's CPU is spent in the server, not in the client.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CODE_ROOT = Path(os.environ.get("CPS_BENCH_CODE_ROOT") or ROOT)  # the product code measured (run.py --code)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class PgCpuSampler(threading.Thread):
    """Sum the CPU of PostgreSQL backends whose process title names one of ``databases``.

    Backends are sampled every ``period`` seconds; a backend's last sample counts (a backend
    that lives less than one period is missed: fine for loads, merges and long queries).
    """

    def __init__(self, databases: list[str], period: float = 0.2, *, client_backends_only: bool = False):
        super().__init__(daemon=True)
        self.needles = [f" {db} " for db in databases if db]
        self.client_backends_only = client_backends_only  # leave autovacuum's work out: it is not the run's
        self.period = period
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start time) -> cpu seconds
        self.baseline: dict[tuple[int, int], float] = {}
        self._stop_event = threading.Event()

    def _sample(self) -> dict[tuple[int, int], float]:
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    title = fh.read().replace(b"\0", b" ").decode(errors="replace")
                if not title.startswith("postgres:") or not any(n in title for n in self.needles):
                    continue
                if self.client_backends_only and "autovacuum" in title:
                    continue
                with open(f"/proc/{entry.name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
                out[(int(entry.name), int(fields[19]))] = cpu  # starttime tells a reused pid apart
            except (OSError, IndexError, ValueError):
                continue
        return out

    def run(self) -> None:
        self.baseline = self._sample()
        self.seen.update(self.baseline)
        while not self._stop_event.wait(self.period):
            self.seen.update(self._sample())
        self.seen.update(self._sample())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return round(sum(cpu - self.baseline.get(key, 0.0) for key, cpu in self.seen.items()), 2)


@dataclass
class Measurement:
    name: str
    wall: float
    cpu: float
    pg_cpu: float
    rss_mib: float
    rows: int = 0
    extra: dict = field(default_factory=dict)
    process_wall: float = 0.0  # including interpreter start and imports

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall if self.wall else 0.0


def run_child(name: str, function: str, kwargs: dict, *, databases: list[str] = (), env: dict | None = None,
              profile: str | None = None, timeout: float = 4 * 3600, client_backends_only: bool = False,
              ) -> Measurement:
    """Run ``benchmarks.tasks.<function>(**kwargs)`` in a fresh interpreter and measure it.

    ``client_backends_only``: count the client backends' CPU only, not autovacuum's.
    ``profile``: write a py-spy flame graph (SVG) of the child to this path (py-spy must be
    installed in the venv; used only when investigating a missed target).
    """
    with tempfile.TemporaryDirectory(prefix="cps_bench_child_") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"function": function, "kwargs": kwargs}, default=str))
        command = [sys.executable, str(HERE / "child.py"), str(spec), str(out)]
        if profile:  # wall-clock profile: --idle keeps the time spent waiting for PostgreSQL or the driver
            pyspy = Path(sys.executable).with_name("py-spy")
            command = [str(pyspy), "record", "--idle", "--subprocesses", "--rate", "50", "--format", "raw",
                       "-o", profile, "--", *command]
        sampler = PgCpuSampler(list(databases), client_backends_only=client_backends_only)
        sampler.start()
        started = time.perf_counter()
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(
            [str(CODE_ROOT / "include"), str(HERE), *filter(None, [child_env.get("PYTHONPATH")])])
        proc = subprocess.run(command, env=child_env, cwd=ROOT, timeout=timeout, capture_output=True, text=True)
        process_wall = time.perf_counter() - started
        pg_cpu = sampler.stop()
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{name}: child failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-6000:]}")
        result = json.loads(out.read_text())
    if profile and Path(profile).exists():
        Path(profile).with_suffix(".top.txt").write_text(profile_summary(profile))
    return Measurement(name, result["wall"], result["cpu"], pg_cpu, result["rss_mib"], int(result.get("rows") or 0),
                       result.get("extra") or {}, round(process_wall, 2))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[Measurement]) -> dict:
    """Medians over repetitions (rows/s is the median of the per-run rates)."""
    return {
        "name": runs[0].name,
        "n": len(runs),
        "rows": int(median([r.rows for r in runs])),
        "wall": median([r.wall for r in runs]),
        "rows_per_s": median([r.rows_per_s for r in runs]),
        "cpu": median([r.cpu for r in runs]),
        "pg_cpu": median([r.pg_cpu for r in runs]),
        "rss_mib": median([r.rss_mib for r in runs]),
        "rss_mib_max": max(r.rss_mib for r in runs),
        "walls": [round(r.wall, 2) for r in runs],
    }


def _frame_name(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/include/", "/benchmarks/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def profile_summary(raw_path: str, top: int = 45) -> str:
    """Inclusive wall-clock share per function (each function counted once per sampled stack).

    The main thread and the run's data-set worker threads (``pipeline._stage_and_check``) are
    counted; their samples add up to thread-seconds, more than the wall time when data sets ran
    side by side. Other threads (GX's tqdm monitor) only wait and are left out.
    """
    inclusive: dict[str, int] = {}
    total = main = 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if "(child.py" not in stack and "_stage_and_check" not in stack:
            continue
        n = int(count)
        total += n
        main += n if "(child.py" in stack else 0
        for name in {_frame_name(f) for f in stack.split(";") if f}:
            inclusive[name] = inclusive.get(name, 0) + n
    lines = [f"py-spy --idle, main and data-set worker threads, {total} samples at 50 Hz ({total / 50:.1f} "
             f"thread-seconds, {main / 50:.1f} s of them in the main thread); inclusive share:"]
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:5.1f}%  {n / 50:7.1f} s  {name}")
    return "\n".join(lines) + "\n"

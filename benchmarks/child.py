"""Entry point of one measured unit: ``python benchmarks/child.py spec.json out.json``.

Reads ``{"function": name, "kwargs": {...}}``, runs ``tasks.<name>(**kwargs)`` and writes the
wall and CPU seconds of that call, the process's peak RSS and what the function returned.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _vm_hwm_kib() -> int:
    """Peak RSS of this process image. Not ru_maxrss: Linux carries the forking parent's peak across exec."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def main(spec_path: str, out_path: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(open(spec_path).read())
    import tasks

    function = getattr(tasks, spec["function"])
    cpu0, t0 = _cpu(), time.perf_counter()
    result = function(**spec["kwargs"]) or {}
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    peak_kib = max(_vm_hwm_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    with open(out_path, "w") as fh:
        json.dump({"wall": round(wall, 3), "cpu": round(cpu, 2), "rss_mib": round(peak_kib / 1024, 1),
                   "rows": result.pop("rows", 0), "extra": result}, fh, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Run one pipeline step in this process, as an Airflow task process would: the fault tests
start it with subprocess and SIGKILL it at the moment they choose.

    python tests/faults/fault_step.py '{"portal_url": ..., "odbc": ..., "run_id": ..., "step": "extract_dataset",
                                        "args": ["charges"], "community": {...}, "request": {...}}'

Exit status 0 when the step returned, 1 when it raised (the message is printed last).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime


def main() -> int:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from synctest import community

    from portal_sync import pipeline
    from portal_sync.params import RunRequest

    interval = spec.get("interval") or (None, None)
    ctx = pipeline.RunContext(
        community(**spec.get("community", {})), spec["run_id"], spec["portal_url"], spec["odbc"], use_gx=False,
        interval_start=datetime.fromisoformat(interval[0]) if interval[0] else None,
        interval_end=datetime.fromisoformat(interval[1]) if interval[1] else None,
        request=RunRequest(**spec.get("request", {})),
    )
    print(f"step {spec['step']} of {ctx.run_key} starting", flush=True)
    try:
        result = getattr(pipeline, spec["step"])(ctx, *spec.get("args", []))
    except Exception as exc:
        print(f"STEP FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"STEP DONE: {result!r}"[:2000], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

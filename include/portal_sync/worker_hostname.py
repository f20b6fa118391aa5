"""[core] hostname_callable of the Celery workers that scripts/airflow-services.sh starts.

Airflow records in each task instance the host that ran it (``hostname``), from
``[core] hostname_callable``. Workers on separate machines differ by their FQDN; the
local Celery set-up runs several workers on one machine, so each gets its own name in
``CPS_WORKER_HOSTNAME`` and this callable returns it. Unset, it is Airflow's default.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    name = os.environ.get("CPS_WORKER_HOSTNAME", "").strip()
    if name:
        return name
    try:
        from airflow.utils.net import getfqdn
    except ImportError:  # pragma: no cover - task SDK without airflow-core
        return socket.getfqdn()
    return getfqdn()

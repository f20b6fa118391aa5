#!/usr/bin/env bash
# `make demo` runs this after `make setup`: build the demo Caselles, start Airflow,
# run every community's DAG to completion, print what landed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_ROOT"
cps_ensure_db_services postgres
exec python scripts/demo.py "$@"

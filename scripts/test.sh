#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [pytest args...]
# Starts the local PostgreSQL and MariaDB when they do not answer (tests create and
# drop their own databases there). Does not start Airflow: the end-to-end tests
# start private ones (tests/e2e/airflowkit.py). Fails when a test fails, and when no
# test ran.
#
# Tests run in CPS_TEST_WORKERS pytest-xdist workers (3; 0 runs them in this process),
# --dist loadgroup: the tests of one xdist_group (the shared Airflow's, a module's that
# share a module-scoped fixture) stay in one worker; the rest is dealt out as workers free
# up, in collection order, so the long Airflow groups start first.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_ROOT"

if [ ! -x "$PROJECT_ROOT/.venv/bin/python" ]; then
    echo "test.sh: no .venv; run scripts/setup-python.sh (or make test)" >&2
    exit 1
fi

cps_ensure_db_services postgres mariadb redis

set +e
python -m pytest -n "${CPS_TEST_WORKERS:-3}" --dist loadgroup --no-loadscope-reorder "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5): treating as a failure" >&2
    exit 1
fi
exit "$rc"

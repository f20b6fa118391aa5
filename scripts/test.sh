#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [pytest args...]
# Starts the local PostgreSQL and MariaDB when they do not answer (tests create and
# drop their own databases there). Does not start Airflow: the end-to-end tests
# start a private one. Fails when a test fails, and when no test ran.
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
python -m pytest "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5): treating as a failure" >&2
    exit 1
fi
exit "$rc"

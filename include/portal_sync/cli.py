"""`portal-sync`: the pipeline from the shell, without a scheduler.

Airflow is how the sync runs in production; this is for set-up (migrate), support
(runs, status, explain) and debugging one community's run in-process.

Exit codes: 0 done, 1 the run did not publish everything (or a report found nothing to do), 2 an
operator mistake: a bad option, an unknown community, a source or portal database that cannot be
opened. A mistake is one line on stderr naming what was wrong; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime

from portal_sync.config import Community, load_config
from portal_sync.params import RunRequest, RunRequestError
from portal_sync.source.errors import SourceError


class OperatorError(Exception):
    """A mistake in what the operator asked for: printed as one line, exit code 2."""


def _portal_url(args: argparse.Namespace) -> str:
    url = args.portal_url or os.environ.get("PORTAL_DB_URL")
    if not url:
        raise OperatorError("give --portal-url or set PORTAL_DB_URL")
    return url


def _reach_portal(url: str) -> None:
    """Fail as a mistake, naming the database, when the portal database cannot be opened."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        try:
            shown = psycopg.conninfo.conninfo_to_dict(url)
            where = f"{shown.get('dbname', '?')} on {shown.get('host', 'localhost')}:{shown.get('port', 5432)}"
        except psycopg.ProgrammingError:
            where = "(the URL does not parse)"
        reason = " ".join(str(exc).split())
        raise OperatorError(f"cannot open the portal database {where}: {reason}") from exc


def _airflow_problems(args: argparse.Namespace, communities: Sequence[Community]) -> list[str]:
    """The communities' connections and pools in Airflow, when its API server is named and answers."""
    if not args.airflow_url:
        return []
    from portal_sync.airflow_api import AirflowApiError, AirflowClient

    client = AirflowClient(args.airflow_url, args.airflow_user, args.airflow_password)
    try:
        client.health()
    except (AirflowApiError, OSError) as exc:
        print(f"note  Airflow at {args.airflow_url} does not answer ({exc}): connections and pools not checked")
        return []
    return client.deployment_problems(communities, _connection_outside_the_database)


def _connection_outside_the_database(conn_id: str) -> bool:
    """An Airflow connection from an AIRFLOW_CONN_* variable or a secrets backend, as a task sees it."""
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:  # Airflow absent, or no such connection where this process can look
        return False
    return True


def _known_community(code: str | None, loaded: object, url: str | None = None) -> None:
    """Raise OperatorError unless ``code`` is configured (or, with ``url``, has runs in the run store:
    the reports of a community no longer configured stay readable)."""
    if not code:
        return
    known = [c.code for c in loaded.communities]  # type: ignore[attr-defined]
    if code.upper() in known:
        return
    if url is not None:
        from portal_sync.store import reads

        with reads.connect(url) as conn:
            if code.upper() in reads.run_communities(conn):
                return
    listed = ", ".join(known) or "none"
    raise OperatorError(f"no community {code!r} in the configuration (known: {listed})"
                        + (" nor in the run history" if url is not None else ""))


def _run_request(args: argparse.Namespace) -> tuple[RunRequest, datetime | None, datetime | None]:
    """The trigger parameters of ``run`` (validated as a trigger's are) and the data interval."""
    conf: dict[str, object] = {"reconcile": args.reconcile, "reconcile_all_history": args.all_history,
                               "dry_run": args.dry_run, "allow_mass_delete": args.allow_mass_delete,
                               "window_start": args.window_start, "window_end": args.window_end}
    if args.datasets:
        conf["datasets"] = [name.strip() for item in args.datasets for name in item.split(",") if name.strip()]
    interval = []
    for option in ("interval_start", "interval_end"):
        text = getattr(args, option)
        try:
            value = datetime.fromisoformat(text) if text else None
        except ValueError as exc:
            raise RunRequestError(f"--{option.replace('_', '-')}: {exc}") from exc
        if value is not None and value.tzinfo is None:
            raise RunRequestError(f"--{option.replace('_', '-')}: must carry a time zone offset, "
                                  "e.g. 2026-11-01T00:00:00+00:00")
        interval.append(value)
    start, end = interval
    if (start is None) != (end is None) or (start and end and end <= start):
        raise RunRequestError("--interval-start and --interval-end go together, the end after the start")
    return RunRequest.from_conf(conf), start, end


def _run(args: argparse.Namespace, url: str) -> int:
    """``portal-sync run``: one run in this process; exit 0 when it published (or was a dry run)."""
    import json

    from portal_sync.pipeline import RunContext, SyncError, run_sync
    from portal_sync.store import runs

    try:
        request, interval_start, interval_end = _run_request(args)
    except RunRequestError as exc:
        print(f"portal-sync run: {exc}", file=sys.stderr)
        return 2
    loaded = load_config()
    _known_community(args.community, loaded)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ctx = RunContext(loaded.get(args.community.upper()), f"cli__{uuid.uuid4().hex}", url, args.source_odbc,
                     use_gx=not args.no_gx, interval_start=interval_start, interval_end=interval_end,
                     request=request)
    error = None
    try:
        run_sync(ctx)
    except SyncError as exc:
        if isinstance(exc.__cause__, SourceError) and not _run_started(ctx):
            # prepare could not open or read the source as a Caselle: a wrong --source-odbc, not a run
            raise OperatorError(f"--source-odbc: {exc.__cause__}") from exc
        error = str(exc)
        print(f"portal-sync: {exc}", file=sys.stderr)
    if args.json:
        with ctx.portal() as conn:
            run = runs.run_record(conn, ctx.run_key)
            rows = runs.dataset_runs(conn, ctx.run_key)
        print(json.dumps({
            "community": ctx.community.code, "run_id": ctx.run_id, "run_key": ctx.run_key,
            "outcome": run.outcome if run else "failed", "error": (run.error if run else None) or error,
            "datasets": {name: rows[name].outcome() for name in (run.datasets if run else [])},
        }, default=str, indent=2))
    return 1 if error else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _status(args: argparse.Namespace, url: str) -> int:
    """``portal-sync status``: the fleet summary (one line per community, worst first; the counts per state
    on stderr), or with a code that community per data set."""
    import json

    from portal_sync.reporting.text import fleet_footer, format_fleet, format_overview
    from portal_sync.status import fleet, overview

    loaded = load_config()
    if args.community:
        if args.state or args.match or args.limit:
            raise OperatorError("--state, --match and --limit filter the fleet summary: give no community code")
        _known_community(args.community, loaded)
        data = overview(url, loaded, community=args.community)
        print(json.dumps(data, default=str, indent=2) if args.json else format_overview(data) or "no communities")
        return 0
    data = fleet(url, loaded, state=args.state, match=args.match, per_page=args.limit)
    if args.json:
        print(json.dumps(data, default=str, indent=2))
        return 0
    if data["communities"]:
        print(format_fleet(data))
    print(fleet_footer(data), file=sys.stderr)
    return 0


def _run_started(ctx: object) -> bool:
    """Whether prepare opened the run's record (it does so only after reading the source)."""
    from portal_sync.store import runs

    with ctx.portal() as conn:  # type: ignore[attr-defined]
        return runs.run_record(conn, ctx.run_key) is not None  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """The command line; an operator mistake is one line on stderr and exit code 2."""
    try:
        return _main(argv)
    except OperatorError as exc:
        command = f" {argv_command(argv)}" if argv_command(argv) else ""
        print(f"portal-sync{command}: {exc}", file=sys.stderr)
        return 2


def argv_command(argv: list[str] | None) -> str:
    """The sub-command named in the arguments, for messages ('' when none is)."""
    commands = ("migrate", "run", "runs", "summary", "dq-summary", "check-config", "dq-report", "explain", "status",
                "roles")
    return next((a for a in (sys.argv[1:] if argv is None else argv) if a in commands), "")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portal-sync", description=__doc__)
    parser.add_argument("--portal-url", help="libpq URL of the portal database (default: $PORTAL_DB_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the portal, sync and stage schemas")
    run = sub.add_parser("run", help="run one community's sync in this process, with a trigger's parameters")
    run.add_argument("community")
    run.add_argument("--source-odbc", required=True, help="ODBC connection string of the community's Caselle")
    run.add_argument("--no-gx", action="store_true", help="skip Great Expectations (the SQL rules still run)")
    run.add_argument("--datasets", action="append", metavar="NAME[,NAME...]",
                     help="only these data sets (comma-separated or repeated; default: all enabled)")
    run.add_argument("--reconcile", action="store_true", help="full reconciliation of the windowed data sets now")
    run.add_argument("--all-history", action="store_true",
                     help="reconcile comparing contents over all history (implies --reconcile)")
    run.add_argument("--window-start", metavar="ISO8601", help="explicit window start, with offset")
    run.add_argument("--window-end", metavar="ISO8601", help="explicit window end, with offset")
    run.add_argument("--interval-start", metavar="ISO8601",
                     help="the data interval a scheduled run would have: its start, with offset")
    run.add_argument("--interval-end", metavar="ISO8601", help="... and its end, with offset")
    run.add_argument("--dry-run", action="store_true", help="extract and validate, publish nothing")
    run.add_argument("--allow-mass-delete", action="append", default=[], metavar="DATASET",
                     help="let this data set past the mass-delete guard once (repeatable)")
    run.add_argument("--json", action="store_true", help="print the run's outcome as JSON")
    runs = sub.add_parser(
        "runs", aliases=["summary", "dq-summary"],
        help="the last runs of a community (or of each): outcome, data quality and row counts per data set",
    )
    runs.add_argument("community", nargs="?")
    runs.add_argument("--runs", type=int, help="runs per community (default 5; 1 under the name summary)")
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    check = sub.add_parser("check-config", help="validate the communities configuration and list errors; with "
                           "--airflow-url, also that each community's connection and pool exist in Airflow")
    check.add_argument("--airflow-url", default=os.environ.get("CPS_AIRFLOW_URL"),
                       help="Airflow's API server (default $CPS_AIRFLOW_URL; unset: not checked)")
    check.add_argument("--airflow-user", default=os.environ.get("CPS_AIRFLOW_USER", "admin"))
    check.add_argument("--airflow-password", default=os.environ.get("CPS_AIRFLOW_PASSWORD", "admin"))
    dq_report = sub.add_parser("dq-report", help="build or refresh a community's offline data-quality report site")
    dq_report.add_argument("community")
    dq_report.add_argument(
        "--out", help="site directory (default: $PORTAL_SYNC_REPORT_DIR/<code>, else .airflow/dq_reports/<code>)",
    )
    dq_report.add_argument("--run", help="run key to (re)write (default: the latest run)")
    dq_report.add_argument("--keep-days", type=int, help="first prune runs older than this many days")
    explain = sub.add_parser("explain", help="why isn't this customer in the portal? (community, account number)")
    explain.add_argument("community")
    explain.add_argument("account_number", nargs="+", help="as the resident typed it: formatted, digits, spaces")
    explain.add_argument("--json", action="store_true", help="print the answer as JSON")
    from portal_sync.reporting.model import STATES

    status = sub.add_parser(
        "status", help="the fleet summary, one line per community, worst first; with a code, that community per"
                       " data set: publish, freshness, counts, quality, mark")
    status.add_argument("community", nargs="?")
    status.add_argument("--state", choices=STATES, help="only communities in this state (the fleet summary)")
    status.add_argument("--match", metavar="TEXT", help="only communities whose code or name contains TEXT")
    status.add_argument("--limit", type=_positive, metavar="N", help="at most N communities (the worst)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    roles_cmd = sub.add_parser("roles", help="row security on the portal tables and a reader role per community")
    roles_cmd.add_argument("--community", help="only this community (default: every configured one)")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        loaded = load_config()
        for community in loaded.communities:
            print(f"ok    {community.code}: {', '.join(community.datasets)} every '{community.effective_schedule}'")
        for error in loaded.errors:
            print(f"error {error}")
        problems = _airflow_problems(args, loaded.communities)
        for problem in problems:
            print(f"error {problem}")
        return 1 if loaded.errors or problems else 0

    url = _portal_url(args)
    if args.command != "migrate":  # migrate creates the database when it is missing
        _reach_portal(url)
    if args.command == "migrate":
        from portal_sync.migrate import ensure_database, migrate

        created = ensure_database(url)
        applied = migrate(url)
        print(f"portal database {'created, ' if created else ''}{len(applied)} migration(s) applied")
        return 0
    if args.command in ("runs", "summary", "dq-summary"):
        import json

        from portal_sync.report import format_runs, last_runs, runs_json

        _known_community(args.community, load_config(), url)
        limit = args.runs if args.runs is not None else (1 if args.command == "summary" else 5)
        history = last_runs(url, args.community, limit)
        if args.json:
            print(json.dumps(runs_json(history), default=str, indent=2))
        else:
            print(format_runs(history) or (f"{args.community}: no runs yet" if args.community else "no runs yet"))
        return 0
    if args.command == "dq-report":
        from pathlib import Path

        from portal_sync.dq_report import build_site, prune

        _known_community(args.community, load_config(), url)
        out = Path(args.out) if args.out else None
        args.community = args.community.upper()  # codes are upper case (config); accept "springfld" too
        try:
            if args.keep_days is not None:
                removed = prune(url, args.community, args.keep_days, out)
                print(f"pruned {removed} run page(s) older than {args.keep_days} day(s)", file=sys.stderr)
            index, _ = build_site(url, args.community, out, args.run)
        except (LookupError, ValueError) as exc:
            print(f"portal-sync: {exc}", file=sys.stderr)
            return 1
        print(index)
        return 0
    if args.command == "explain":
        import json

        from portal_sync.explain import explain
        from portal_sync.reporting.text import format_explanation

        answer = explain(url, args.community, " ".join(args.account_number), load_config())
        if answer.verdict == "unknown_community":
            if args.json:
                print(json.dumps(answer.as_dict(), default=str, indent=2))
            raise OperatorError(answer.message)
        print(json.dumps(answer.as_dict(), default=str, indent=2) if args.json else format_explanation(answer))
        return 0
    if args.command == "status":
        return _status(args, url)
    if args.command == "roles":
        from portal_sync.roles import refresh

        loaded = load_config()
        _known_community(args.community, loaded)
        codes = [c.code for c in loaded.communities]
        result = refresh(url, [args.community.upper()] if args.community else codes,
                         all_configured=not args.community)
        print("\n".join(result.lines()))
        return 0
    if args.command == "run":
        return _run(args, url)
    return 2


if __name__ == "__main__":
    sys.exit(main())

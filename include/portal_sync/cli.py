"""`portal-sync`: the pipeline from the shell, without a scheduler.

Airflow is how the sync runs in production; this is for set-up (migrate), support
(summary) and debugging one community's run in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid

from portal_sync.config import load_config


def _portal_url(args: argparse.Namespace) -> str:
    url = args.portal_url or os.environ.get("PORTAL_DB_URL")
    if not url:
        sys.exit("portal-sync: give --portal-url or set PORTAL_DB_URL")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portal-sync", description=__doc__)
    parser.add_argument("--portal-url", help="libpq URL of the portal database (default: $PORTAL_DB_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the portal, sync and stage schemas")
    run = sub.add_parser("run", help="run one community's full sync in this process")
    run.add_argument("community")
    run.add_argument("--source-odbc", required=True, help="ODBC connection string of the community's Caselle")
    run.add_argument("--no-gx", action="store_true", help="skip Great Expectations (the SQL rules still run)")
    summary = sub.add_parser("summary", help="print the last runs per community")
    summary.add_argument("community", nargs="?")
    summary.add_argument("--runs", type=int, default=1)
    sub.add_parser("check-config", help="validate the communities file and list errors")
    dq_report = sub.add_parser("dq-report", help="build or refresh a community's offline data-quality report site")
    dq_report.add_argument("community")
    dq_report.add_argument(
        "--out", help="site directory (default: $PORTAL_SYNC_REPORT_DIR/<code>, else .airflow/dq_reports/<code>)",
    )
    dq_report.add_argument("--run", help="run key to (re)write (default: the latest run)")
    dq_report.add_argument("--keep-days", type=int, help="first prune runs older than this many days")
    dq_summary = sub.add_parser("dq-summary", help="print the data-quality summary of a community's last runs")
    dq_summary.add_argument("community")
    dq_summary.add_argument("--runs", type=int, default=5)
    explain = sub.add_parser("explain", help="why isn't this customer in the portal? (community, account number)")
    explain.add_argument("community")
    explain.add_argument("account_number", nargs="+", help="as the resident typed it: formatted, digits, spaces")
    explain.add_argument("--json", action="store_true", help="print the answer as JSON")
    status = sub.add_parser("status", help="sync status per data set: publish, freshness, counts, quality, mark")
    status.add_argument("community", nargs="?")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    roles_cmd = sub.add_parser("roles", help="row security on the portal tables and a reader role per community")
    roles_cmd.add_argument("--community", help="only this community (default: every configured one)")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        loaded = load_config()
        for community in loaded.communities:
            print(f"ok    {community.code}: {', '.join(community.datasets)} every '{community.schedule}'")
        for error in loaded.errors:
            print(f"error {error}")
        return 1 if loaded.errors else 0

    url = _portal_url(args)
    if args.command == "migrate":
        from portal_sync.migrate import ensure_database, migrate

        created = ensure_database(url)
        applied = migrate(url)
        print(f"portal database {'created, ' if created else ''}{len(applied)} migration(s) applied")
        return 0
    if args.command == "summary":
        from portal_sync.report import format_runs, last_runs

        print(format_runs(last_runs(url, args.community, args.runs)) or "no runs yet")
        return 0
    if args.command == "dq-report":
        from pathlib import Path

        from portal_sync.dq_report import build_site, prune

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
    if args.command == "dq-summary":
        from portal_sync.dq_report import format_summary

        try:
            print(format_summary(url, args.community.upper(), args.runs) or f"{args.community}: no runs yet")
        except ValueError as exc:
            print(f"portal-sync: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "explain":
        import json

        from portal_sync.explain import explain, format_explanation

        answer = explain(url, args.community, " ".join(args.account_number), load_config())
        print(json.dumps(answer.as_dict(), default=str, indent=2) if args.json else format_explanation(answer))
        return 1 if answer.verdict == "unknown_community" else 0
    if args.command == "status":
        import json

        from portal_sync.status import format_overview, overview

        loaded = load_config()
        if args.community and args.community.upper() not in {c.code for c in loaded.communities}:
            print(f"portal-sync: no community {args.community!r} in the configuration", file=sys.stderr)
            return 1
        data = overview(url, loaded, community=args.community)
        print(json.dumps(data, default=str, indent=2) if args.json else format_overview(data) or "no communities")
        return 0
    if args.command == "roles":
        from portal_sync.roles import refresh

        codes = [c.code for c in load_config().communities]
        if args.community and args.community.upper() not in codes:
            print(f"portal-sync: no community {args.community!r} in the configuration", file=sys.stderr)
            return 1
        result = refresh(url, [args.community.upper()] if args.community else codes,
                         all_configured=not args.community)
        print("\n".join(result.lines()))
        return 0
    if args.command == "run":
        from portal_sync.pipeline import RunContext, SyncError, run_sync

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        community = load_config().get(args.community)
        ctx = RunContext(community, f"cli__{uuid.uuid4().hex}", url, args.source_odbc, use_gx=not args.no_gx)
        try:
            run_sync(ctx)
        except SyncError as exc:
            print(f"portal-sync: {exc}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

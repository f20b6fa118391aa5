"""``caselle-sim``: create, evolve and inspect simulated Caselle sources from the shell.

Examples::

    caselle-sim create sqlite:////tmp/springfield.db --preset town --seed 1
    caselle-sim evolve sqlite:////tmp/springfield.db --minutes 15 --steps 4
    caselle-sim event sqlite:////tmp/springfield.db period-close --purge-before 2019-01-01
    caselle-sim info sqlite:////tmp/springfield.db
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from .changes import ChangeSet
from .engines import SourceSpec
from .presets import PRESETS
from .simulator import Simulator, create_source, open_source


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caselle-sim", description="Simulated Caselle source databases.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("create", help="generate a community (replaces an existing one)")
    c.add_argument("url", help="sqlite:////abs/file.db, postgresql://user@host:port/db or mariadb://...")
    c.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--org-code", default="SPRINGFLD")
    c.add_argument("--org-name", default="City of Springfield")
    c.add_argument("--tz", default="America/Denver", help="IANA time zone of the community")
    c.add_argument("--mask", default="###-#####-##", help="customer number mask ('#' digit, '-' and '.')")
    c.add_argument("--start", type=datetime.fromisoformat, default=None,
                   help="simulation clock, naive local ISO time (default 2026-11-02T08:00)")
    c.add_argument("--no-replace", action="store_true", help="fail if the source exists")

    e = sub.add_parser("evolve", help="advance the clock and apply normal activity")
    e.add_argument("url")
    e.add_argument("--minutes", type=float, default=15.0)
    e.add_argument("--steps", type=int, default=1, help="repeat the step this many times")

    ev = sub.add_parser("event", help="a rare event")
    ev.add_argument("url")
    kinds = ev.add_subparsers(dest="event", required=True)
    pc = kinds.add_parser("period-close", help="purge old lines, write BEGBAL lines, log the close")
    pc.add_argument("--purge-before", type=date.fromisoformat, default=None)
    di = kinds.add_parser("delete-inactive", help="Delete Inactive Customers")
    di.add_argument("--count", type=int, default=None)
    rn = kinds.add_parser("renumber", help="rewrite CustomerNumber")
    rn.add_argument("--fraction", type=float, default=1.0)
    md = kinds.add_parser("modify-data", help="edit ledger lines in place")
    md.add_argument("--count", type=int, default=50)
    orph = kinds.add_parser("orphans", help="lines and receipts for customers that do not exist")
    orph.add_argument("--lines", type=int, default=5)
    orph.add_argument("--receipts", type=int, default=2)

    i = sub.add_parser("info", help="row counts and clock")
    i.add_argument("url")

    d = sub.add_parser("drop", help="delete the file / drop the database")
    d.add_argument("url")
    return p


def _print_changes(cs: ChangeSet, seconds: float) -> None:
    print(cs.summary())
    print(f"  ({seconds:.2f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``caselle-sim`` console script."""
    args = _parser().parse_args(argv)
    t0 = time.monotonic()
    if args.command == "drop":
        SourceSpec.from_url(args.url).drop()
        print(f"dropped {args.url}")
        return 0
    if args.command == "create":
        sim = create_source(args.url, preset=args.preset, seed=args.seed, org_code=args.org_code,
                            org_name=args.org_name, time_zone=args.tz, customer_number_mask=args.mask,
                            start=args.start, replace=not args.no_replace)
        with sim:
            print(f"created {args.preset} source {args.url} in {time.monotonic() - t0:.1f} s")
            _print_info(sim)
        return 0
    with open_source(args.url) as sim:
        if args.command == "info":
            _print_info(sim)
        elif args.command == "evolve":
            for _ in range(args.steps):
                t = time.monotonic()
                _print_changes(sim.evolve(timedelta(minutes=args.minutes)), time.monotonic() - t)
        else:
            ev = args.event
            if ev == "period-close":
                cs = sim.period_close(args.purge_before)
            elif ev == "delete-inactive":
                cs = sim.delete_inactive_customers(args.count)
            elif ev == "renumber":
                cs = sim.renumber(args.fraction)
            elif ev == "modify-data":
                cs = sim.modify_data(args.count)
            else:
                cs = sim.add_orphans(lines=args.lines, receipts=args.receipts)
            _print_changes(cs, time.monotonic() - t0)
    return 0


def _print_info(sim: Simulator) -> None:
    print(f"engine {sim.spec.engine}, preset {sim.preset}, seed {sim.seed}, step {sim.step}")
    print(f"clock  {sim.now:%Y-%m-%d %H:%M:%S} {sim.time_zone}")
    for name, n in sim.counts().items():
        print(f"  {name:<16} {n:>12,}")


if __name__ == "__main__":
    sys.exit(main())

"""The simulator: create a source, reopen it, and make it change the way Caselle does.

The clock is a real instant (kept in UTC in ``SIM_State``); every timestamp is
written as a naive local time in the community's time zone, exactly like
Caselle. So when daylight saving ends, an hour of local InputDates repeats,
and when it starts an hour of local times never appears: the sync has to cope
with both.

Every call that changes data is one *unit of work*: one transaction, one step
of the step counter, and its own random stream derived from (seed, step), so
the same seed, start and calls always give the same database. A unit of work
returns a :class:`~caselle_sim.changes.ChangeSet`.

Rules the simulator keeps, because the contract says so:

* IDs are never reused (sequences live in ``SIM_State``; orphans take IDs from
  the customer sequence that no customer will ever get).
* InputDate is set once; "Modify Data" edits Amount, Description,
  TransactionDate and DueDate in place and nothing else.
* Every customer whose ledger changes gets its UB_Balance recomputed in the
  same unit of work with AsOf = the end of it (so "every UB_Balance row equals
  its account's ledger" always holds); a period close rewrites the ledger
  without changing any balance and therefore leaves UB_Balance alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .changes import ChangeSet
from .engines import Backend, SourceSpec
from .generate import Org, generate
from .ledger import TXN_CODE, Lines, compute_balances
from .presets import PRESETS, Preset, Rates
from .schema import (
    INDEXES,
    STATE,
    TABLE_ORDER,
    TABLES,
    add_key_sql,
    create_table_sql,
    index_sql,
)
from .util import NULL_DAY, date_of, day_of, format_numbers, mask_digits

DEFAULT_START = datetime(2026, 11, 2, 8, 0)
STATE_VERSION = "1"
CHUNK = 500


def create_source(spec: SourceSpec | str, preset: str | Preset = "tiny", seed: int = 1, org_code: str = "SPRINGFLD",
                  org_name: str = "City of Springfield", time_zone: str = "America/Denver",
                  customer_number_mask: str = "###-#####-##", start: datetime | None = None,
                  replace: bool = True, plant_bad_rows: bool = False) -> Simulator:
    """Generate a community and write it to ``spec``; returns the open simulator.

    ``start`` is the simulation clock as a naive local time (default
    2026-11-02 08:00). With ``replace=False`` an existing file/database is an error.
    ``plant_bad_rows``: add the few bad rows of :meth:`Simulator.plant_bad_rows` (the demo's data quality).
    """
    spec = SourceSpec.from_url(spec) if isinstance(spec, str) else spec
    p = PRESETS[preset] if isinstance(preset, str) else preset
    ZoneInfo(time_zone)  # fail early on an unknown zone
    mask_digits(customer_number_mask)
    if len(org_code) > 10 or not org_code:
        raise ValueError("org_code must be 1-10 characters")
    start = (start or DEFAULT_START).replace(tzinfo=None)
    start = start.replace(microsecond=start.microsecond // 1000 * 1000)
    if spec.exists():
        if not replace:
            raise FileExistsError(f"source already exists: {spec.url}")
        spec.drop()
    spec.create_empty()
    try:
        built = generate(p, seed, Org(org_code, org_name, time_zone, customer_number_mask), start)
    except BaseException:
        spec.drop()
        raise
    db = spec.connect()
    try:
        _write_tables(db, built.tables)
        start_utc = start.replace(tzinfo=ZoneInfo(time_zone)).astimezone(UTC)
        state = {"version": STATE_VERSION, "preset": p.name, "seed": str(seed), "time_zone": time_zone,
                 "mask": customer_number_mask, "org_code": org_code, "now_utc": start_utc.isoformat(),
                 "step": "0", **{f"seq.{k}": str(v) for k, v in built.sequences.items()}}
        sim = Simulator(spec, db, state)
        with db.transaction():
            db.execute(create_table_sql(STATE, spec.engine))
            sim._save_state()
    except BaseException:
        db.close()
        spec.drop()  # no half-built source is left behind
        raise
    if plant_bad_rows:
        sim.plant_bad_rows()
    return sim


def _write_tables(db: Backend, tables: dict[str, Any]) -> None:
    """Create the contract tables and bulk-load them, keys and indexes in the cheapest order per engine."""
    engine = db.engine
    if engine == "sqlite":
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        with db.transaction():
            for name in TABLE_ORDER:
                db.execute(create_table_sql(TABLES[name], engine))
                db.bulk_load(TABLES[name], tables[name])
            for table, column in INDEXES:
                db.execute(index_sql(table, column, engine))
        db.execute("PRAGMA journal_mode=WAL")  # readers over ODBC do not block the simulator, nor it them
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("ANALYZE")
        return
    if engine == "mariadb":
        db.execute("SET SESSION unique_checks = 0")
    for name in TABLE_ORDER:
        db.execute(create_table_sql(TABLES[name], engine, with_key=engine == "mariadb"))
        db.bulk_load(TABLES[name], tables[name])
        db.commit()
    if engine == "postgresql":
        for name in TABLE_ORDER:
            db.execute(add_key_sql(TABLES[name], engine))
    for table, column in INDEXES:
        db.execute(index_sql(table, column, engine))
    if engine == "mariadb":
        db.execute("SET SESSION unique_checks = 1")
    db.commit()
    if engine == "postgresql":
        db.conn.autocommit = True
        db.execute("VACUUM ANALYZE")
        db.conn.autocommit = False


def open_source(spec: SourceSpec | str) -> Simulator:
    """Reopen a source created by :func:`create_source`; clock and sequences come from SIM_State."""
    spec = SourceSpec.from_url(spec) if isinstance(spec, str) else spec
    if not spec.exists():
        raise FileNotFoundError(f"no source at {spec.url}")
    db = spec.connect()
    try:
        state = {k: v for k, v in db.query('SELECT "Key", "Value" FROM "SIM_State"')}
        db.commit()
    except Exception:
        db.close()
        raise
    return Simulator(spec, db, state)


class Simulator:
    """An open simulated Caselle source. Use :func:`create_source` or :func:`open_source`."""

    def __init__(self, spec: SourceSpec, db: Backend, state: dict[str, str]):
        self.spec = spec
        self.db = db
        self.seed = int(state["seed"])
        self.preset = state["preset"]
        self.time_zone = state["time_zone"]
        self.tz = ZoneInfo(self.time_zone)
        self.mask = state["mask"]
        self.org_code = state["org_code"]
        self._utc = datetime.fromisoformat(state["now_utc"])
        self.step = int(state["step"])
        self.seq = {k[4:]: int(v) for k, v in state.items() if k.startswith("seq.")}

    # -- clock and state ------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        """The simulation clock as a naive local time (what Caselle would write)."""
        return self.local(self._utc)

    @property
    def now_utc(self) -> datetime:
        return self._utc

    def local(self, utc: datetime) -> datetime:
        t = utc.astimezone(self.tz).replace(tzinfo=None)
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def _save_state(self) -> None:
        state = {"version": STATE_VERSION, "preset": self.preset, "seed": str(self.seed),
                 "time_zone": self.time_zone, "mask": self.mask, "org_code": self.org_code,
                 "now_utc": self._utc.isoformat(), "step": str(self.step),
                 **{f"seq.{k}": str(v) for k, v in self.seq.items()}}
        self.db.execute('DELETE FROM "SIM_State"')
        self.db.executemany('INSERT INTO "SIM_State" ("Key", "Value") VALUES (?, ?)', sorted(state.items()))

    def take_ids(self, name: str, n: int) -> list[int]:
        """Reserve ``n`` new IDs of a sequence (never reused)."""
        first = self.seq[name]
        self.seq[name] = first + n
        return list(range(first, first + n))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- units of work ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _work(self, kind: int, duration: timedelta) -> Iterator[Any]:
        from .activity import Work

        before = self._utc
        after = before + duration
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.step, kind]))
        seq_before = dict(self.seq)
        try:
            with self.db.transaction():
                work = Work(self, rng, before, after)
                yield work
                work.flush()
                work.recompute()
                self._utc = after
                self.step += 1
                self._save_state()
        except BaseException:
            self.seq = seq_before
            self._utc = before
            raise

    def evolve(self, dt: timedelta, rates: Rates | dict[str, float] | None = None) -> ChangeSet:
        """Advance the clock by ``dt`` and apply a community's normal activity in that time."""
        if dt <= timedelta(0):
            raise ValueError("evolve needs a positive time span")
        r = Rates.coerce(rates)
        with self._work(1, dt) as w:
            w.activity(r)
        return w.changes

    def period_close(self, purge_before: date | None) -> ChangeSet:
        """Log a period close; purge lines dated before ``purge_before`` and write BEGBAL lines.

        Balances do not change (see :mod:`caselle_sim.ledger`), so UB_Balance is not
        touched. The clock moves by one second.
        """
        with self._work(2, timedelta(seconds=1)) as w:
            w.period_close(purge_before)
        return w.changes

    def delete_inactive_customers(self, count: int | None = None) -> ChangeSet:
        """Caselle's "Delete Inactive Customers": settled I/F accounts go with their balance rows and lines.

        Eligible: Status I or F, TotalBalance 0, and no other account names it as
        MasterCustomerID. ``count`` (oldest final bill first) or all. Their receipts
        stay, and become orphans.
        """
        with self._work(3, timedelta(seconds=1)) as w:
            w.delete_inactive(count)
        return w.changes

    def renumber(self, fraction: float = 1.0) -> ChangeSet:
        """Rewrite CustomerNumber of ``fraction`` of the accounts (new numbers fit the mask, all unique)."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        with self._work(4, timedelta(seconds=1)) as w:
            w.renumber(fraction)
        return w.changes

    def modify_data(self, count: int) -> ChangeSet:
        """Caselle's "Modify Data": edit ``count`` ledger lines in place (InputDate untouched).

        Edits Amount, Description, TransactionDate and/or DueDate of BILL, ADJ, PEN or
        DEP lines that no VOID names; the customers' balances are recomputed.
        """
        with self._work(5, timedelta(seconds=1)) as w:
            w.modify_data(count)
        return w.changes

    def add_orphans(self, lines: int = 5, receipts: int = 2) -> ChangeSet:
        """Ledger lines and posted receipts (each with its PMT line) for CustomerIDs no customer has.

        The IDs come from the customer sequence, so no future customer takes them.
        """
        with self._work(6, timedelta(seconds=1)) as w:
            w.add_orphans(lines, receipts)
        return w.changes

    def plant_bad_rows(self) -> dict[str, int]:
        """Plant the three kinds of bad row a real Caselle holds, so a sync has something to refuse and warn about.

        - an orphan payment: a posted receipt for a CustomerID no customer has (``payments.orphan_account``,
          refused);
        - an implausible date: a conversion line dated 1900-01-01 (``charges.implausible_date``, a warning);
        - an amount off the money scale: a line of three decimals, stored as Caselle-on-SQLite would
          (``charges.money_exact``, refused).

        Deterministic: the customer and amounts come from the source's seed, the IDs from its sequences
        (never reused). Returns the planted keys by kind: ``orphan_receipt``, ``old_line``, ``odd_amount_line``.
        """
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7_000]))
        active = [int(r[0]) for r in self.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\''
                                                ' ORDER BY "CustomerID"')]
        if not active:
            raise ValueError("plant_bad_rows needs an active customer")
        customer = active[int(rng.integers(len(active)))]
        [orphan] = self.take_ids("CustomerID", 1)  # an ID no future customer takes
        receipt, old_line, odd_line = self.seq["ReceiptID"], self.seq["TransactionID"], self.seq["TransactionID"] + 1
        now = self.now.replace(microsecond=0)
        stamp = f"{now:%Y-%m-%d %H:%M:%S}.000"
        cents = int(rng.integers(1_000, 9_000))
        paid = Decimal(int(rng.integers(2_000, 20_000))).scaleb(-2)
        odd_amount = Decimal(cents).scaleb(-2) + Decimal("0.005")  # e.g. 48.125: three decimals

        def line(key: int, **values: Any) -> dict[str, Any]:
            row = {"TransactionID": key, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": None,
                   "Description": "BILLING ADJUSTMENT", "Amount": Decimal("0.00"), "TransactionDate": now.date(),
                   "InputDate": stamp, "DueDate": None, "Period": f"{now:%Y-%m}", "ReferenceNumber": None,
                   "ReceiptID": None, "VoidsTransactionID": None}
            return {**row, **values}

        self.insert_rows("CR_Receipt", [{
            "ReceiptID": receipt, "ReceiptNumber": f"R{receipt}", "CustomerID": orphan, "ReceiptDate": stamp,
            "InputDate": stamp, "PaymentMethod": "CHECK", "Amount": paid,
            "Status": "P", "StatusDate": stamp, "ConfirmationNumber": None, "PayerName": None}])
        self.insert_rows("UB_Transaction", [
            line(old_line, Description="CONVERSION - OPENING BALANCE", TransactionDate=date(1900, 1, 1),
                 Period="1900-01"),
            line(odd_line, Amount=odd_amount),
        ])
        return {"orphan_receipt": receipt, "old_line": old_line, "odd_amount_line": odd_line}

    # -- direct access for tests --------------------------------------------------------------
    def insert_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Plant arbitrary rows with the native driver, stored the way this engine stores values.

        Only what the driver cannot store is converted (on SQLite: Decimal to float,
        date/datetime to ISO text). Sequences are moved past planted IDs so the
        simulator never reuses them.
        """
        if not rows:
            return
        t = TABLES[table]
        cols = list(rows[0])
        for c in cols:
            t.column(c)
        sql = (f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)}) '
               f'VALUES ({", ".join("?" * len(cols))})')
        with self.db.transaction():
            self.db.executemany(sql, [[self.db.plant_value(t.column(c).kind, r.get(c)) for c in cols]
                                      for r in rows])
            seq_of = {"SM_Contact": "ContactID", "UB_Location": "LocationID", "UB_Customer": "CustomerID",
                      "UB_Transaction": "TransactionID", "CR_Receipt": "ReceiptID", "UB_PeriodClose": "CloseID",
                      "PI_Assessment": "AssessmentID"}
            name = seq_of.get(table)
            if name:
                ids = [int(r[t.key]) for r in rows if r.get(t.key) is not None]
                if ids:
                    self.seq[name] = max(self.seq[name], max(ids) + 1)
            self._save_state()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (``?`` markers, double-quoted identifiers) and commit it."""
        with self.db.transaction():
            return self.db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a query (``?`` markers, double-quoted identifiers); values as the native driver returns them."""
        rows = self.db.query(sql, params)
        self.db.commit()
        return rows

    def counts(self) -> dict[str, int]:
        """Rows per contract table."""
        out = {name: int(self.db.query(f'SELECT COUNT(*) FROM "{name}"')[0][0]) for name in TABLE_ORDER}
        self.db.commit()
        return out

    # -- normalised reads (used by the activity code and by tests) -----------------------------
    def read_table(self, table: str, columns: Sequence[str] | None = None, where: str = "",
                   params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts in normal form (money in cents, dates, datetimes), ordered by key."""
        t = TABLES[table]
        cols = list(columns or t.column_names)
        kinds = [t.column(c).kind for c in cols]
        sql = (f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}"'
               f'{" WHERE " + where if where else ""} ORDER BY "{t.key}"')
        rows = self.db.query(sql, params)
        self.db.commit()
        return [{c: self.db.from_db(k, v) for c, k, v in zip(cols, kinds, row, strict=True)} for row in rows]

    def read_lines(self, customers: Sequence[int] | None = None) -> Lines:
        """Ledger lines (all, or of ``customers``) as arrays for :func:`compute_balances`."""
        return _read_lines(self.db, customers)

    def recompute_balances(self, customers: Sequence[int], asof: datetime) -> dict[int, dict[str, Any]]:
        """What UB_Balance rows for ``customers`` must hold at ``asof`` (the rule in caselle_sim.ledger)."""
        ids = np.array(sorted(set(int(c) for c in customers)), dtype=np.int64)
        lines = _read_lines(self.db, ids.tolist())
        bal = compute_balances(lines, ids, np.full(ids.size, day_of(asof.date())))
        return _balance_rows(bal, asof)


def _days(values: Sequence[Any]) -> np.ndarray:
    """Dates or ISO strings (None allowed) to day numbers (NULL_DAY for None)."""
    arr = np.array(["NaT" if v is None else str(v)[:10] for v in values], dtype="datetime64[D]")
    out = arr.astype(np.int64)
    out[np.isnat(arr)] = NULL_DAY
    return out


def _cents(values: Sequence[Any]) -> np.ndarray:
    return np.rint(np.array([float(v) for v in values], dtype=np.float64) * 100).astype(np.int64)


def _read_lines(db: Backend, customers: Sequence[int] | None) -> Lines:
    cols = '"CustomerID", "TransactionID", "TransactionType", "Amount", "TransactionDate", "DueDate"'
    parts: list[Lines] = []

    def convert(rows: list[tuple]) -> None:
        if not rows:
            return
        c, t, ty, a, td, dd = zip(*rows, strict=True)
        parts.append(Lines(np.array(c, dtype=np.int64), np.array(t, dtype=np.int64),
                           np.array([TXN_CODE.get(x, -1) for x in ty], dtype=np.int64), _cents(a), _days(td),
                           _days(dd)))

    if customers is None:
        for chunk in db.iter_query(f'SELECT {cols} FROM "UB_Transaction"'):
            convert(chunk)
    else:
        ids = list(customers)
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            convert(db.query(f'SELECT {cols} FROM "UB_Transaction" WHERE "CustomerID" IN '
                             f'({", ".join("?" * len(part))})', part))
    db.commit()
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return Lines(z, z, z, z, z, z)
    return Lines(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                   ("cust", "txid", "ttype", "amount", "tdate", "due")))


def _balance_rows(bal: Any, asof: datetime) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for i, cid in enumerate(bal.customers.tolist()):
        b = bal.buckets[i]
        lb, lp = int(bal.last_bill_day[i]), int(bal.last_pay_day[i])
        out[cid] = {
            "CustomerID": cid, "AsOf": asof, "BalanceCurrent": int(b[0]), "Balance30": int(b[1]),
            "Balance60": int(b[2]), "Balance90": int(b[3]), "Balance120": int(b[4]),
            "TotalBalance": int(bal.total[i]),
            "LastBillDate": None if lb == NULL_DAY else date_of(lb),
            "LastBillAmount": None if lb == NULL_DAY else int(bal.last_bill_amount[i]),
            "DueDate": None if int(bal.due_day[i]) == NULL_DAY else date_of(int(bal.due_day[i])),
            "LastPaymentDate": None if lp == NULL_DAY else date_of(lp),
            "LastPaymentAmount": None if lp == NULL_DAY else int(bal.last_pay_amount[i]),
            "Delinquent": "Y" if bool(bal.delinquent[i]) else "N",
        }
    return out


def new_customer_numbers(rng: np.random.Generator, mask: str, taken: set[int], n: int) -> list[str]:
    """``n`` new numbers through the mask, none in ``taken`` (which is updated)."""
    space = 10 ** mask_digits(mask)
    if len(taken) + n > space // 2:
        raise ValueError(f"customer number mask {mask!r} has no room for {n} more numbers")
    out: list[int] = []
    while len(out) < n:
        for v in rng.integers(0, space, size=2 * (n - len(out))).tolist():
            if v not in taken:
                taken.add(v)
                out.append(v)
                if len(out) == n:
                    break
    return list(format_numbers(np.array(out, dtype=np.int64), mask))

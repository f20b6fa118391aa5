"""Where a simulated Caselle lives, and how the simulator talks to it.

The product reads the source only over ODBC; the simulator writes with native
drivers (sqlite3, psycopg 3, PyMySQL) because bulk loads over ODBC would turn a
minutes-long ``city`` build into hours.

Inside the simulator every value has one normal form: money is ``int`` cents,
dates are ``datetime.date``, times are naive local ``datetime.datetime`` at
millisecond precision. :meth:`Backend.to_db` and :meth:`Backend.from_db`
translate to and from each engine's storage convention. On SQLite that
convention is deliberately naive: money is a REAL (so 12.00 is stored as the
integer 12 by SQLite's NUMERIC affinity), dates are ``YYYY-MM-DD`` text and
times ``YYYY-MM-DD HH:MM:SS.fff`` text.

All SQL the simulator sends uses ``?`` markers and double-quoted identifiers on
every engine: PostgreSQL takes them as they are, MariaDB sessions opened here
add ``ANSI_QUOTES`` and ``PIPES_AS_CONCAT`` to ``sql_mode`` (the tables themselves are created with
backticks and need no special mode to be read).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .schema import DATE, DATETIME, MONEY, Table, quote

ENGINES = ("sqlite", "postgresql", "mariadb")
_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql",
            "mariadb": "mariadb", "mysql": "mariadb"}
_SAFE_DB = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class SourceSpec:
    """A source database location, parsed from a URL.

    ``sqlite:////abs/path/file.db``, ``postgresql://user@host:5432/db`` or
    ``mariadb://user:password@host:3306/db``. Database names are limited to
    letters, digits and ``_`` so they never need escaping in DDL.
    """

    url: str
    engine: str
    database: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> SourceSpec:
        """Parse a URL; raises ValueError for unknown schemes or unsafe names."""
        parts = urlsplit(url)
        engine = _SCHEMES.get(parts.scheme.lower())
        if engine is None:
            raise ValueError(f"unsupported source URL scheme: {parts.scheme!r} (use sqlite, postgresql, mariadb)")
        if engine == "sqlite":
            path = unquote(parts.path[1:])  # sqlite:////abs/file.db: three slashes, then the absolute path
            if not path.startswith("/") or parts.netloc:
                raise ValueError("a SQLite URL needs an absolute path: sqlite:////abs/path/file.db")
            return cls(url=url, engine=engine, database=path)
        database = unquote(parts.path.lstrip("/"))
        if not _SAFE_DB.match(database or ""):
            raise ValueError(f"database name must match [A-Za-z0-9_]+: {database!r}")
        default_port, default_user = (5432, "postgres") if engine == "postgresql" else (3306, "root")
        return cls(url=url, engine=engine, database=database, host=parts.hostname or "127.0.0.1",
                   port=parts.port or default_port, user=unquote(parts.username or default_user),
                   password=unquote(parts.password or ""))

    @property
    def path(self) -> str:
        """The SQLite file (SQLite only)."""
        return self.database

    def odbc_connection_string(self) -> str:
        """The connection string for the matching ODBC driver.

        Streaming is switched on where the driver would otherwise buffer the whole
        result (SQLite ``StepAPI=1``, psqlODBC ``UseDeclareFetch=1``), and
        psqlODBC's per-process communication log (on in Debian's odbcinst.ini) is
        switched off.
        """
        if self.engine == "sqlite":
            return f"Driver={{SQLite3}};Database={self.database};StepAPI=1;"
        pwd = f"PWD={self.password};" if self.password or self.engine == "mariadb" else ""
        if self.engine == "postgresql":
            return (f"Driver={{PostgreSQL Unicode}};Server={self.host};Port={self.port};"
                    f"Database={self.database};UID={self.user};{pwd}UseDeclareFetch=1;Fetch=10000;CommLog=0;")
        return (f"Driver={{MariaDB Unicode}};Server={self.host};Port={self.port};"
                f"Database={self.database};UID={self.user};{pwd}")

    def exists(self) -> bool:
        """Whether the file / database is there."""
        if self.engine == "sqlite":
            return os.path.exists(self.database)
        with _admin(self) as conn:
            cur = conn.cursor()
            if self.engine == "postgresql":
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            else:
                cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (self.database,))
            return cur.fetchone() is not None

    def create_empty(self) -> None:
        """Create an empty database (the SQLite file is created on first connect)."""
        if self.engine == "sqlite":
            os.makedirs(os.path.dirname(self.database) or ".", exist_ok=True)
            return
        with _admin(self) as conn:
            if self.engine == "postgresql":
                conn.execute(f'CREATE DATABASE "{self.database}" ENCODING \'UTF8\' TEMPLATE template0')
            else:
                conn.cursor().execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 "
                                      "COLLATE utf8mb4_general_ci")

    def drop(self) -> None:
        """Delete the file (with its WAL/journal files) or drop the database; idempotent."""
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.database + suffix)
            return
        with _admin(self) as conn:
            if self.engine == "postgresql":
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            else:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS `{self.database}`")

    def connect(self) -> Backend:
        """Open a native connection to the database."""
        return Backend(self)


@contextlib.contextmanager
def _admin(spec: SourceSpec) -> Iterator[Any]:
    """An autocommit server connection outside the target database (for CREATE/DROP DATABASE)."""
    if spec.engine == "postgresql":
        import psycopg

        conn = psycopg.connect(host=spec.host, port=spec.port, user=spec.user, password=spec.password or None,
                               dbname="postgres", autocommit=True)
    else:
        import pymysql

        conn = pymysql.connect(host=spec.host, port=spec.port, user=spec.user, password=spec.password,
                               autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _fmt_datetime(v: datetime) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S.") + f"{v.microsecond // 1000:03d}"


def _to_cents(v: Any) -> int:
    if isinstance(v, int):  # SQLite returns whole amounts as INTEGER
        return v * 100
    if isinstance(v, float):
        return int(round(v * 100))
    return int((Decimal(str(v)) * 100).to_integral_value())


class Backend:
    """A native connection plus the engine's conventions (placeholders, storage, bulk load)."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.engine = spec.engine
        if self.engine == "sqlite":
            self.conn: Any = sqlite3.connect(spec.database, isolation_level=None, timeout=60)
        elif self.engine == "postgresql":
            import psycopg

            self.conn = psycopg.connect(host=spec.host, port=spec.port, user=spec.user,
                                        password=spec.password or None, dbname=spec.database)
        else:
            import pymysql

            self.conn = pymysql.connect(host=spec.host, port=spec.port, user=spec.user, password=spec.password,
                                        database=spec.database, charset="utf8mb4", local_infile=True,
                                        autocommit=False)
            with self.conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,PIPES_AS_CONCAT')")
        self._in_tx = False

    # -- plain SQL -----------------------------------------------------------------
    def _sql(self, sql: str, has_params: bool) -> str:
        if self.engine == "sqlite" or not has_params:
            return sql
        return sql.replace("%", "%%").replace("?", "%s")

    @contextlib.contextmanager
    def _executed(self, sql: str, params: Sequence[Any], cur: Any = None) -> Iterator[Any]:
        """A cursor (a new plain one by default) that has run one statement with ``?`` markers,
        closed when the caller is done."""
        cur = self.conn.cursor() if cur is None else cur
        try:
            if params:
                cur.execute(self._sql(sql, True), tuple(params))
            else:
                cur.execute(sql)
            yield cur
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement with ``?`` markers; returns the affected row count."""
        with self._executed(sql, params) as cur:
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows (batched by the driver)."""
        if not rows:
            return
        cur = self.conn.cursor()
        try:
            cur.executemany(self._sql(sql, True), [tuple(r) for r in rows])
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a query with ``?`` markers and return all rows as tuples (driver's own value types)."""
        with self._executed(sql, params) as cur:
            return [tuple(r) for r in cur.fetchall()]

    def iter_query(self, sql: str, params: Sequence[Any] = (), size: int = 100_000) -> Iterator[list[tuple]]:
        """Yield result rows in chunks (for whole-ledger reads that would not fit as Python tuples)."""
        if self.engine == "postgresql":
            cur = self.conn.cursor(name="sim_stream")
            cur.itersize = size
        elif self.engine == "mariadb":
            import pymysql.cursors

            cur = self.conn.cursor(pymysql.cursors.SSCursor)
        else:
            cur = self.conn.cursor()
        with self._executed(sql, params, cur) as cur:
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    break
                yield [tuple(r) for r in rows]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of simulated work: readers see all of it or none of it."""
        if self._in_tx:
            yield
            return
        self._in_tx = True
        if self.engine == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.engine == "sqlite":
                self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
            raise
        else:
            if self.engine == "sqlite":
                self.conn.execute("COMMIT")
            else:
                self.conn.commit()
        finally:
            self._in_tx = False

    def commit(self) -> None:
        """End the driver's implicit read transaction (not inside :meth:`transaction`, which commits itself)."""
        if self.engine != "sqlite" and not self._in_tx:
            self.conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def q(self, name: str) -> str:
        """Quote an identifier for SQL sent through this connection (ANSI double quotes)."""
        return f'"{name}"'

    # -- values ----------------------------------------------------------------------
    def to_db(self, kind: str, value: Any) -> Any:
        """Normal form (cents, date, datetime) to the engine's storage convention."""
        if value is None:
            return None
        if kind == MONEY:
            return value / 100 if self.engine == "sqlite" else Decimal(value).scaleb(-2)
        if kind == DATE:
            return value.isoformat() if self.engine == "sqlite" else value
        if kind == DATETIME:
            if self.engine == "sqlite":
                return _fmt_datetime(value)
            return value.replace(microsecond=value.microsecond // 1000 * 1000)
        return value

    def from_db(self, kind: str, value: Any) -> Any:
        """The engine's stored value to the normal form."""
        if value is None:
            return None
        if kind == MONEY:
            return _to_cents(value)
        if kind == DATE:
            if isinstance(value, datetime):
                return value.date()
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if kind == DATETIME:
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if isinstance(value, str) and kind == "char":
            return value.rstrip()
        return value

    def plant_value(self, kind: str, value: Any) -> Any:
        """A caller's Python value as a naive application would hand it to this engine.

        Used by ``Simulator.insert_rows``: only what the driver cannot store is
        converted (Decimal/date/datetime on SQLite); everything else is passed
        through, so tests can plant odd values (text in a money column, three
        decimals) on purpose.
        """
        if self.engine != "sqlite" or value is None:
            return value
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, datetime):
            return _fmt_datetime(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    # -- bulk load --------------------------------------------------------------------
    def bulk_load(self, table: Table, data: pa.Table, chunk_rows: int = 500_000) -> None:
        """Append a columnar table (internal form: money int64 cents, date32, timestamp[ms]).

        SQLite: executemany inside the caller's transaction. PostgreSQL: COPY ... FROM
        STDIN (CSV). MariaDB: LOAD DATA LOCAL INFILE from a temporary CSV file.
        """
        if data.num_rows == 0:
            return
        data = data.select(table.column_names)
        cols_sql = ", ".join(quote(c, self.engine) for c in table.column_names)
        name = quote(table.name, self.engine)
        for start in range(0, data.num_rows, chunk_rows):
            chunk = data.slice(start, chunk_rows).combine_chunks()
            if self.engine == "sqlite":
                lists = [_sqlite_list(chunk.column(c.name), c.kind) for c in table.columns]
                marks = ", ".join("?" * len(lists))
                self.conn.executemany(f"INSERT INTO {name} ({cols_sql}) VALUES ({marks})", zip(*lists, strict=True))
                continue
            csv_table = pa.table({c.name: _csv_array(chunk.column(c.name), c.kind) for c in table.columns})
            if self.engine == "postgresql":
                buf = io.BytesIO()
                pacsv.write_csv(csv_table, buf, pacsv.WriteOptions(include_header=False))
                with self.conn.cursor() as cur, cur.copy(
                        f"COPY {name} ({cols_sql}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(buf.getbuffer())
            else:
                with tempfile.NamedTemporaryFile(prefix="caselle_sim_", suffix=".csv") as tmp:
                    pacsv.write_csv(csv_table, tmp.name, pacsv.WriteOptions(include_header=False,
                                                                             null_string="NULL"))
                    with self.conn.cursor() as cur:
                        cur.execute(f"LOAD DATA LOCAL INFILE '{tmp.name}' INTO TABLE {name} CHARACTER SET utf8mb4 "
                                    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                                    f"LINES TERMINATED BY '\\n' ({cols_sql})")


def _sqlite_list(arr: pa.Array | pa.ChunkedArray, kind: str) -> list[Any]:
    """A column as Python values in SQLite's naive storage convention."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if kind == MONEY:
        return pc.divide(arr.cast(pa.float64()), 100.0).to_pylist()
    if kind in (DATE, DATETIME):
        return arr.cast(pa.string()).to_pylist()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(pa.string())
    return arr.to_pylist()


def _csv_array(arr: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array:
    """A column ready for CSV: money becomes an exact decimal128(12,2) built from the cents."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if kind == MONEY:
        cents = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        words = np.empty((len(cents), 2), dtype=np.int64)
        words[:, 0] = cents
        words[:, 1] = np.where(cents < 0, -1, 0)
        validity = None
        if arr.null_count:
            validity = pa.array(arr.is_valid().to_numpy(zero_copy_only=False)).buffers()[1]
        return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [validity, pa.py_buffer(words.tobytes())],
                                     null_count=arr.null_count)
    if pa.types.is_dictionary(arr.type):
        return arr.cast(pa.string())
    return arr

"""Tools of the fault tests: private PostgreSQL and MariaDB servers, pipeline steps in killable
processes, and a look into pg_stat_activity / pg_locks to strike at the right moment.

Nothing here touches the shared servers' processes: a private cluster (or MariaDB data
directory) is initialised into /tmp by the test that needs it, owned by the test, stopped and
removed by its fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
def _pg_bin() -> Path:
    """PostgreSQL server binaries: $CPS_FAULT_PG_BIN, else Debian's 15, else the newest installed."""
    if os.environ.get("CPS_FAULT_PG_BIN"):
        return Path(os.environ["CPS_FAULT_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    preferred = Path("/usr/lib/postgresql/15/bin")
    return preferred if (preferred / "initdb").exists() or not found else found[-1].parent


PG_BIN = _pg_bin()
STEP_SCRIPT = HERE / "fault_step.py"


def with_app(url: str, app: str) -> str:
    """The same libpq URI with an application_name, so a step's sessions are found in pg_stat_activity."""
    return url + ("&" if "?" in url else "?") + f"application_name={app}"


def wait_until(what: str, check: Callable[[], object], timeout: float = 60, every: float = 0.02):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def build_source(path: Path, preset="town", seed: int = 21, **kwargs):
    """A simulated Caselle of SPRINGFLD (America/Denver) in a SQLite file."""
    from caselle_sim import SourceSpec, create_source

    kwargs.setdefault("org_code", "SPRINGFLD")
    kwargs.setdefault("org_name", "City of Springfield")
    kwargs.setdefault("time_zone", "America/Denver")
    kwargs.setdefault("customer_number_mask", "###-#####-##")
    return create_source(SourceSpec.from_url(f"sqlite:///{path}"), preset=preset, seed=seed, **kwargs)


# --- a private PostgreSQL cluster ------------------------------------------------------------------


def _free_port(preferred: int) -> int:
    for port in (preferred, *range(preferred + 1, preferred + 40)):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port near {preferred}")


def _as_postgres(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a PostgreSQL server binary as the postgres user (initdb and the server refuse root)."""
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL 15 cluster on 127.0.0.1:<port>, trust auth, owned by one test module.

    ``start``/``stop``/``crash`` at will; ``destroy`` stops it and removes its directory.
    """

    root: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "server.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def create(cls, root: Path, port: int = 5499) -> PrivatePostgres:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL server binaries in {PG_BIN} (set CPS_FAULT_PG_BIN): the outage "
                               "tests need a private cluster")
        root.mkdir(parents=True, exist_ok=False)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pg = cls(root, _free_port(port))
        try:
            pg._init()
        except BaseException:
            pg.destroy()
            raise
        return pg

    def _init(self) -> None:
        """initdb, our settings, first start."""
        done = _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                            "-E", "UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}\n{done.stderr}")
        # fsync=off: a crash here is a process crash, never an OS crash, so nothing committed is lost.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       "fsync = off\nfull_page_writes = off\nshared_buffers = 64MB\nmax_connections = 40\n"
                       "log_min_messages = warning\n")
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args, timeout=timeout)

    def start(self) -> None:
        done = self.pg_ctl("-l", str(self.log), "-w", "-t", "90", "start")
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"private PostgreSQL did not start: {done.stdout}{done.stderr}\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: backends are terminated, clean shutdown; ``immediate``: like a crash (recovery on start)."""
        self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return self.pg_ctl("status").returncode == 0

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: end our own postmaster, by its pid
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# --- a private MariaDB server -----------------------------------------------------------------------

MARIADBD = Path(os.environ.get("CPS_FAULT_MARIADBD", "/usr/sbin/mariadbd"))
MARIADB_INSTALL_DB = Path(os.environ.get("CPS_FAULT_MARIADB_INSTALL_DB",
                                         shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"))


@dataclass
class PrivateMariaDB:
    """A throw-away MariaDB server on 127.0.0.1:<port> with its own data directory and socket, run
    as the current user; ``root`` connects from 127.0.0.1 without a password (like the shared one).

    ``start``/``stop`` (clean shutdown)/``kill`` (SIGKILL of our own mariadbd: a crash, InnoDB
    recovers on the next start); ``destroy`` ends it and removes its directory. It never reads
    /etc/mysql (``--no-defaults``), so it shares nothing with the server on 3306.
    """

    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def log(self) -> Path:
        return self.root / "error.log"

    @classmethod
    def create(cls, root: Path, port: int = 3399) -> PrivateMariaDB:
        for binary in (MARIADBD, MARIADB_INSTALL_DB):
            if not binary.exists():
                raise RuntimeError(f"no {binary} (set CPS_FAULT_MARIADBD / CPS_FAULT_MARIADB_INSTALL_DB): the "
                                   "MariaDB outage test needs a private server")
        root.mkdir(parents=True, exist_ok=False)
        db = cls(root, _free_port(port))
        try:
            db._init()
        except BaseException:
            db.destroy()
            raise
        return db

    def _init(self) -> None:
        user = pwd.getpwuid(os.geteuid()).pw_name
        done = subprocess.run(
            [str(MARIADB_INSTALL_DB), "--no-defaults", f"--datadir={self.data}", f"--user={user}",
             "--auth-root-authentication-method=socket", f"--auth-root-socket-user={user}", "--skip-test-db",
             "--skip-name-resolve"], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout}\n{done.stderr}")
        # Run at every start with the server's own privileges: root over TCP from 127.0.0.1, no password.
        (self.root / "init.sql").write_text(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n")
        self.start()

    def url(self, dbname: str) -> str:
        """A caselle_sim source URL of a database on this server."""
        return f"mariadb://root@127.0.0.1:{self.port}/{dbname}"

    def connect(self):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True, connect_timeout=5)

    def start(self, timeout: float = 120) -> None:
        user = pwd.getpwuid(os.geteuid()).pw_name
        command = [str(MARIADBD), "--no-defaults", f"--datadir={self.data}", f"--user={user}",
                   f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                   f"--pid-file={self.root / 'mysqld.pid'}", f"--log-error={self.log}",
                   f"--init-file={self.root / 'init.sql'}", "--skip-name-resolve", "--skip-log-bin",
                   "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
                   "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
                   "--innodb-doublewrite=0", "--local-infile=1", "--max-connections=40"]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

        def answers() -> bool:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"private MariaDB exited with {self.proc.returncode}:\n{tail}")
            try:
                self.connect().close()
                return True
            except Exception:
                return False
        wait_until(f"the private MariaDB on port {self.port}", answers, timeout=timeout, every=0.2)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL of our own mariadbd (its pid is the child we started): every connection is cut."""
        assert self.running(), "the private MariaDB is not running"
        self.proc.kill()
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM), waited for."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)

    def queries(self, like: str) -> list[dict]:
        """Statements running on this server whose text matches ``like`` (information_schema.PROCESSLIST)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT ID, COMMAND, STATE, TIME_MS, INFO FROM information_schema.PROCESSLIST"
                            " WHERE INFO LIKE %s AND ID <> CONNECTION_ID()", (like,))
                names = ("id", "command", "state", "time_ms", "info")
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        with contextlib.suppress(Exception):
            if self.running():
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


# --- a pipeline step in its own process -------------------------------------------------------------


@dataclass
class Step:
    """One pipeline step (prepare, extract_dataset, validate_dataset, publish_run, ...) in a child
    process, like an Airflow task process: it can be SIGKILLed mid-flight. Its portal sessions carry
    application_name ``app``."""

    portal_url: str
    odbc: str
    run_id: str
    step: str
    args: tuple = ()
    community: dict = field(default_factory=dict)
    request: dict = field(default_factory=dict)
    interval: tuple[str, str] | None = None
    app: str = "fault_step"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, log_dir: Path) -> Step:
        spec = {"portal_url": with_app(self.portal_url, self.app), "odbc": self.odbc, "run_id": self.run_id,
                "step": self.step, "args": list(self.args), "community": self.community, "request": self.request,
                "interval": list(self.interval) if self.interval else None}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
        self.log_path = log_dir / f"{self.app}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(STEP_SCRIPT), json.dumps(spec)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL: no exception handler, no finally, no rollback from our side."""
        assert self.alive(), f"{self.step} ended before the fault could be injected:\n{self.output()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def open_files(self) -> list[str]:
        out = []
        with contextlib.suppress(OSError):  # the process may end while we look
            for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    out.append(os.readlink(fd))
        return out


# --- what the portal database is doing --------------------------------------------------------------


def backends(url: str, app: str) -> list[dict]:
    """Sessions of application ``app`` in this database: pid, state, wait, query, client port."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, query, client_port, backend_xid IS NOT NULL"
            " FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()", (app,))
        names = ("pid", "state", "wait_event_type", "wait_event", "query", "client_port", "has_xid")
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def backend_running(url: str, app: str, query_prefix: str, *, waiting: bool | None = None) -> dict | None:
    """The session of ``app`` that is executing a statement starting with ``query_prefix``, if any."""
    for b in backends(url, app):
        running = b["state"] == "active" and b["query"].lstrip().upper().startswith(query_prefix.upper())
        if running and (waiting is None or (b["wait_event_type"] == "Lock") == waiting):
            return b
    return None


def advisory_lock_holder(url: str, community: str) -> int | None:
    """pid of the session holding the publish's advisory lock of ``community`` (granted), if any."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid = hashtext('portal_sync')::oid AND l.objid = hashtext(%s)::oid AND l.objsubid = 2"
            # advisory locks are per database; pg_locks shows every database's (other tests' too)
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (community,)).fetchone()
    return row[0] if row else None


def advisory_lock_waiters(url: str, community: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted"
            " AND l.classid = hashtext('portal_sync')::oid AND l.objid = hashtext(%s)::oid AND l.objsubid = 2"
            # advisory locks are per database; pg_locks shows every database's (other tests' too)
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (community,)).fetchall()
    return [r[0] for r in rows]


def wait_backend_gone(url: str, pid: int, timeout: float = 60) -> None:
    def gone() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 0
    wait_until(f"backend {pid} to end", gone, timeout=timeout, every=0.1)


@contextlib.contextmanager
def blocker(url: str) -> Iterator[psycopg.Connection]:
    """A session whose open transaction holds whatever locks a test takes; rolled back on exit."""
    conn = psycopg.connect(url, autocommit=False)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


def stage_tables(url: str, run_key: str | None = None) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stage' ORDER BY 1").fetchall()
    names = [r[0] for r in rows]
    return [n for n in names if run_key is None or n.startswith(run_key + "__")]


def phases(url: str, run_key: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {d: (p, e) for d, p, e in conn.execute(
            "SELECT dataset, phase, error FROM sync.run_datasets WHERE run_key = %s", (run_key,)).fetchall()}


def assert_no_duplicates(url: str, community: str) -> None:
    """Belt and braces beside the primary keys: one live row per business key in every portal table."""
    keys = {"accounts": "account_id", "residents": "resident_id", "charges": "charge_id",
            "payments": "payment_id", "balances": "account_id", "assessments": "assessment_id"}
    with psycopg.connect(url, autocommit=True) as conn:
        for table, key in keys.items():
            rows, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT {key}) FROM portal.{table} WHERE community_code = %s",
                (community,)).fetchone()
            assert rows == distinct, f"portal.{table}: {rows} rows for {distinct} keys"


def portal_rows(url: str, community: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM portal.{t} WHERE community_code = %s",
                                (community,)).fetchone()[0]
                for t in ("accounts", "residents", "charges", "payments", "balances", "assessments")}


# --- Airflow task processes ---------------------------------------------------------------------------


def process_of_client_port(port: int) -> psutil.Process:
    """The local process that owns the TCP connection from ``port`` to the portal database (the task
    process that opened the session)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.raddr and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"no local process owns a connection from port {port}")


# --- the pipeline steps the in-process fault tests drive ----------------------------------------------

FAULT_DATASETS = ("accounts", "charges", "balances")


def copy_progress(url: str, app: str) -> int:
    """Rows a running COPY of ``app``'s sessions has taken so far (pg_stat_progress_copy)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(p.tuples_processed) FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)"
            " WHERE a.application_name = %s", (app,)).fetchone()
    return int(row[0] or 0)


def fault_context(odbc: str, portal: str, run_id: str, **request):
    """A run of SPRINGFLD's FAULT_DATASETS, validated by our SQL (the steps run one by one)."""
    from synctest import community

    from portal_sync.params import RunRequest
    from portal_sync.pipeline import RunContext

    return RunContext(community(datasets=FAULT_DATASETS), run_id, portal, odbc, use_gx=False,
                      request=RunRequest(**request))


def rest_of_run(ctx, done: set[str]) -> dict:
    """The data sets not yet staged, then the publish and the cleanup, as Airflow would run them."""
    from portal_sync.pipeline import cleanup, extract_dataset, publish_run, validate_dataset

    for name in ctx.community.datasets:
        if name not in done:
            extract_dataset(ctx, name)
            validate_dataset(ctx, name)
    try:
        return publish_run(ctx)
    finally:
        cleanup(ctx)

"""The portal connection honours its TLS options: against a private PostgreSQL that accepts TLS
connections only (pg_hba ``hostssl``, a self-signed certificate), a connection without them is
refused and the URI built from the Airflow connection ``portal_db`` with ``sslmode`` in its extras
connects, encrypted and with the certificate verified.

The private cluster is initialised into /tmp by this module and removed after it; the shared
server on 5432 is never touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from portal_sync import connections

pytestmark = pytest.mark.integration

PG_BIN = Path(os.environ.get("CPS_FAULT_PG_BIN", "/usr/lib/postgresql/15/bin"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _as_postgres(*args: str) -> subprocess.CompletedProcess:
    """Server binaries refuse to run as root: run them as the postgres user then."""
    command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _free_port(first: int) -> int:
    for port in range(first, first + 40):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port from {first}")


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, in PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


@pytest.fixture(scope="module")
def tls_only_pg() -> Iterator[tuple[int, Path, Path]]:
    """A private PostgreSQL on 127.0.0.1 that takes TLS connections only: (port, its CA, another CA)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set CPS_FAULT_PG_BIN)")
    root = Path(f"/tmp/cps_tlspg_{uuid.uuid4().hex[:8]}")
    root.mkdir()
    data = root / "data"
    try:
        crt, key = _self_signed(root, "server")
        stranger, _ = _self_signed(root, "stranger")  # a CA that did not sign the server's certificate
        if os.geteuid() == 0:
            for path in (root, crt, key, stranger):
                shutil.chown(path, "postgres", "postgres")
        done = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                            "--locale=C", "--no-sync")
        assert done.returncode == 0, f"initdb failed: {done.stdout}\n{done.stderr}"
        port = _free_port(5600 + 50 * _WORKER)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                       f"ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\n"
                       "fsync = off\nshared_buffers = 16MB\nmax_connections = 20\n")
        (data / "pg_hba.conf").write_text("local all all trust\n"
                                          "hostssl all all 127.0.0.1/32 trust\n"
                                          "hostnossl all all 127.0.0.1/32 reject\n")
        started = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                               "-t", "60", "start")
        assert started.returncode == 0, f"{started.stdout}{started.stderr}"
        yield port, crt, stranger
    finally:
        with contextlib.suppress(Exception):
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop")
        pid_file = data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: end our own postmaster, by its pid
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _portal_db(monkeypatch, port: int, **extra) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_PORTAL_DB", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": port, "schema": "postgres", "login": "postgres",
        "extra": extra}))
    return connections.portal_url("portal_db")


def test_only_the_connection_with_its_tls_extras_reaches_a_tls_only_portal(tls_only_pg, monkeypatch):
    port, ca, stranger = tls_only_pg
    # A client whose default is no TLS (PGSSLMODE, as a container image may set) is refused ...
    monkeypatch.setenv("PGSSLMODE", "disable")
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=10).close()
    # ... and so is the URI of an Airflow connection built without its extras.
    plain = _portal_db(monkeypatch, port)
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba"):
        psycopg.connect(plain).close()

    url = _portal_db(monkeypatch, port, sslmode="require", application_name="cps-tls-test", connect_timeout=10,
                     options="-c statement_timeout=4321", cursor="dictcursor")
    with psycopg.connect(url) as conn:
        ssl, app, timeout = conn.execute(
            "SELECT s.ssl, a.application_name, current_setting('statement_timeout') FROM pg_stat_ssl s"
            " JOIN pg_stat_activity a USING (pid) WHERE s.pid = pg_backend_pid()").fetchone()
    assert (ssl, app, timeout) == (True, "cps-tls-test", "4321ms")

    # verify-full checks the server's certificate against the root the extras name.
    verified = _portal_db(monkeypatch, port, sslmode="verify-full", sslrootcert=str(ca))
    with psycopg.connect(verified) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    wrong_root = _portal_db(monkeypatch, port, sslmode="verify-full", sslrootcert=str(stranger))
    with pytest.raises(psycopg.OperationalError, match=r"certificate verify failed"):
        psycopg.connect(wrong_root).close()

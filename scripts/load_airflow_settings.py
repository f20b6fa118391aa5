#!/usr/bin/env python
"""Load an Astronomer-format ``airflow_settings.yaml`` into the Airflow metadata DB.

Usage: python scripts/load_airflow_settings.py [airflow_settings.yaml] [--dry-run]

Airflow does not read ``airflow_settings.yaml`` itself (it is an astro CLI file).
This script:

* expands ``${VAR}`` in string values from the environment (``PROJECT_ROOT`` is set
  by ``scripts/env.sh``); an unset variable is an error; ``$${`` gives a literal ``${``;
* reads what the metadata DB holds now (one read-only pass with Airflow's models);
* writes only what is missing or different, through the public Airflow CLI:
  ``airflow connections import --overwrite``, ``airflow pools import`` and
  ``airflow variables import -a overwrite``;
* prints one summary line.

Objects present in the DB but absent from the file are left alone (never deleted).
Running it twice changes nothing the second time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SettingsError(Exception):
    pass


def expand(value: Any, env: dict[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` in every string of a YAML value (recursively)."""
    env = os.environ if env is None else env
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name = m.group(1)
            if name not in env:
                raise SettingsError(f"${{{name}}} is used in the settings file but is not set")
            return env[name]

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, env) for k, v in value.items()}
    return value


def _blank(v: Any) -> Any:
    return None if v is None or v == "" else v


def _extra_dict(extra: Any) -> dict:
    if extra in (None, ""):
        return {}
    if isinstance(extra, dict):
        return extra
    if isinstance(extra, str):
        try:
            parsed = json.loads(extra)
        except ValueError as e:
            raise SettingsError(f"conn_extra is not JSON: {extra!r}") from e
        if not isinstance(parsed, dict):
            raise SettingsError(f"conn_extra must be a JSON object: {extra!r}")
        return parsed
    raise SettingsError(f"conn_extra must be a mapping or a JSON string, got {extra!r}")


def parse_settings(doc: Any) -> tuple[dict[str, dict], dict[str, dict], dict[str, Any]]:
    """Return (connections, pools, variables) in the shapes the Airflow CLI imports."""
    if not isinstance(doc, dict) or not isinstance(doc.get("airflow", {}), dict):
        raise SettingsError("expected a top-level 'airflow:' mapping")
    section = doc.get("airflow") or {}

    connections: dict[str, dict] = {}
    for item in section.get("connections") or []:
        conn_id = item.get("conn_id")
        if not conn_id or not item.get("conn_type"):
            raise SettingsError(f"connection needs conn_id and conn_type: {item!r}")
        if conn_id in connections:
            raise SettingsError(f"connection {conn_id} is listed twice")
        port = _blank(item.get("conn_port"))
        connections[conn_id] = {
            "conn_type": item["conn_type"],
            "host": _blank(item.get("conn_host")),
            "schema": _blank(item.get("conn_schema")),
            "login": _blank(item.get("conn_login")),
            "password": _blank(item.get("conn_password")),
            "port": int(port) if port is not None else None,
            "extra": json.dumps(_extra_dict(item.get("conn_extra")), sort_keys=True),
        }

    pools: dict[str, dict] = {}
    for item in section.get("pools") or []:
        name = item.get("pool_name")
        if not name or item.get("pool_slot") is None:
            raise SettingsError(f"pool needs pool_name and pool_slot: {item!r}")
        pools[name] = {
            "slots": int(item["pool_slot"]),
            "description": item.get("pool_description") or "",
            "include_deferred": bool(item.get("pool_include_deferred", False)),
        }

    variables: dict[str, Any] = {}
    for item in section.get("variables") or []:
        name = item.get("variable_name")
        if not name or "variable_value" not in item:
            raise SettingsError(f"variable needs variable_name and variable_value: {item!r}")
        variables[name] = item["variable_value"]
    return connections, pools, variables


def _same_conn(current: Any, want: dict) -> bool:
    try:
        have = {
            "conn_type": current.conn_type,
            "host": _blank(current.host),
            "schema": _blank(current.schema),
            "login": _blank(current.login),
            "password": _blank(current.password),
            "port": current.port,
            "extra": json.dumps(_extra_dict(current.extra), sort_keys=True),
        }
    except Exception:  # e.g. encrypted with a fernet key that is gone: rewrite it
        return False
    return have == want


def _same_var(current_val: str | None, want: Any) -> bool:
    if current_val is None:
        return False
    if isinstance(want, str):
        return current_val == want
    try:
        return json.loads(current_val) == want
    except ValueError:
        return False


def plan(connections: dict, pools: dict, variables: dict) -> dict[str, dict[str, list[str]]]:
    """Compare the wanted objects with the metadata DB: created/updated/unchanged names."""
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    result: dict[str, dict[str, list[str]]] = {
        kind: {"created": [], "updated": [], "unchanged": []} for kind in ("connections", "pools", "variables")
    }
    with create_session() as session:
        for conn_id, want in connections.items():
            cur = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            key = "created" if cur is None else ("unchanged" if _same_conn(cur, want) else "updated")
            result["connections"][key].append(conn_id)
        for name, want in pools.items():
            cur = session.scalar(select(Pool).where(Pool.pool == name))
            if cur is None:
                key = "created"
            elif (cur.slots, cur.description or "", bool(cur.include_deferred)) == (
                want["slots"],
                want["description"],
                want["include_deferred"],
            ):
                key = "unchanged"
            else:
                key = "updated"
            result["pools"][key].append(name)
        for name, want in variables.items():
            cur = session.scalar(select(Variable).where(Variable.key == name))
            if cur is None:
                key = "created"
            else:
                try:
                    val = cur.val
                except Exception:
                    val = None
                key = "unchanged" if _same_var(val, want) else "updated"
            result["variables"][key].append(name)
    return result


def _airflow(*args: str) -> None:
    proc = subprocess.run(["airflow", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SettingsError(f"`airflow {' '.join(args)}` failed (exit {proc.returncode})")


def apply(result: dict, connections: dict, pools: dict, variables: dict) -> None:
    def todo(kind: str) -> list[str]:
        return result[kind]["created"] + result[kind]["updated"]

    with tempfile.TemporaryDirectory(prefix="cps-settings-") as tmp:
        tmpdir = Path(tmp)  # mode 0700: connection passwords never sit in a readable file

        def write(name: str, data: dict) -> str:
            path = tmpdir / name
            path.write_text(json.dumps(data, indent=2))
            return str(path)

        if names := todo("connections"):
            _airflow(
                "connections",
                "import",
                "--overwrite",
                write("connections.json", {n: connections[n] for n in names}),
            )
        if names := todo("pools"):
            _airflow("pools", "import", write("pools.json", {n: pools[n] for n in names}))
        if names := todo("variables"):
            _airflow(
                "variables",
                "import",
                "-a",
                "overwrite",
                write("variables.json", {n: variables[n] for n in names}),
            )


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    dry_run = "--dry-run" in argv
    default = Path(os.environ.get("PROJECT_ROOT", Path(__file__).resolve().parent.parent)) / "airflow_settings.yaml"
    path = Path(args[0]) if args else default
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        connections, pools, variables = parse_settings(expand(doc))
        result = plan(connections, pools, variables)
        if not dry_run:
            apply(result, connections, pools, variables)
    except (SettingsError, OSError, yaml.YAMLError) as e:
        print(f"load_airflow_settings: {path}: {e}", file=sys.stderr)
        return 1
    parts = []
    for kind, r in result.items():
        parts.append(
            f"{kind} {len(r['created'])} created, {len(r['updated'])} updated, {len(r['unchanged'])} unchanged"
        )
    print(f"{path.name}{' (dry run)' if dry_run else ''}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

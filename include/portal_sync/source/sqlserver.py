"""Microsoft SQL Server (Caselle's own engine): window bounds in the form every login language reads alike.

arrow-odbc binds parameters as text, and SQL Server converts text to DATETIME by the session's
language (the login's default, or SET LANGUAGE): ``YYYY-MM-DD hh:mm:ss`` is read year-day-month
under British, French or German settings, so a window would be silently wrong. ISO 8601 with a
``T`` (``YYYY-MM-DDThh:mm:ss``) is read the same under every language, into DATETIME, DATETIME2,
SMALLDATETIME and DATE alike. Date bounds stay ``YYYY-MM-DD``: they meet DATE columns (the
reconciliation's date columns are DATE in the source contract), which read that form the same
under every language. No test here reaches a SQL Server: tests/unit/test_dialects.py shows the SQL
and parameters this dialect sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from portal_sync.source.dialect import Dialect


@dataclass(frozen=True)
class SqlServer(Dialect):
    name: str = "Microsoft SQL Server"
    timestamp_format: ClassVar[str] = "%Y-%m-%dT%H:%M:%S"  # ISO 8601: the same instant under every language

    def schema_preference(self) -> tuple[str, ...]:
        return ("dbo",)  # Caselle's tables live in dbo

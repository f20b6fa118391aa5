"""The SQL text Great Expectations runs for our checks, and how much of a result we keep.

Apart from gx_runner so that the suites (expectations.py) can build their custom
expectations' queries without importing the runner, which imports them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SAMPLE_SIZE = 20
"""How many bad ``_row_id`` values a result keeps (GX itself fetches up to 200 bad rows)."""

ROW_ID_COLUMN = "_row_id"

UNEXPECTED_COUNT_COLUMN = "portal_sync_unexpected_count"
"""Carries, on each sampled bad row of a counted query, how many bad rows there are in all."""

# SQLAlchemy text() treats ``:word`` as a bind parameter unless preceded by ``:``, a word character
# or a backslash, and it strips the backslash from ``\:word`` before sending the SQL (see
# sqlalchemy.sql.elements.TextClause._bind_params_regex and compiler.BIND_PARAMS_ESC).
_TEXT_BIND_RE = re.compile(r"(?<![:\w\\]):(?=\w+(?![:\w]))")
_TEXT_ESCAPED_BIND_RE = re.compile(r"\\(?=:\w*(?![:\w]))")


def build_unexpected_rows_query(bad_rows_where: str, select: Sequence[str] = (ROW_ID_COLUMN,), *,
                                counted: bool = False) -> str:
    """Return the ``unexpected_rows_query`` template selecting the ``_row_id`` (and ``select``) of bad rows.

    Only the row id and key are selected: GX fetches up to 200 bad rows, and a few values
    per row keep that cheap. The JOIN with a one-row constant makes GX leave ``{batch}``
    unaliased in every case (see gx_runner's module docstring), so ``{batch} AS s`` is always valid.
    The predicate sits on its own lines inside parentheses so that a trailing ``--`` comment or
    an OR in it cannot escape the WHERE clause.

    ``counted`` (our custom expectations): each row also carries the count of all bad rows
    (:data:`UNEXPECTED_COUNT_COLUMN`, a window over the whole result), so one scan gives both the
    count and the sample. GX's own ``UnexpectedRowsExpectation`` scans twice, for a count and for
    the rows, even when none fails. No ``LIMIT``: it makes PostgreSQL choose a fast-start plan (a
    nested-loop anti-join for a reference check, 30 s instead of 0.3 s on a town) although the
    window reads every row; GX keeps the first 200 rows it is sent.
    """
    predicate = _escape_for_text_clause(_escape_format_braces(bad_rows_where.strip()))
    columns = ", ".join('s."' + c.replace('"', '""') + '"' for c in select)
    if counted:
        columns += f', count(*) OVER () AS "{UNEXPECTED_COUNT_COLUMN}"'
    return (
        f"SELECT {columns} FROM {{batch}} AS s\n"
        "CROSS JOIN (SELECT 1) AS portal_sync_join_guard\n"
        f"WHERE (\n{predicate}\n)"
    )


def _escape_format_braces(sql: str) -> str:
    """Double braces: GX fills ``{batch}`` with ``str.format``, so a regex ``{1,10}`` would break."""
    return sql.replace("{", "{{").replace("}", "}}")


def _escape_for_text_clause(sql: str) -> str:
    """Escape colons so that SQLAlchemy ``text()`` sends the predicate unchanged.

    ``:word`` would become a bind parameter (``LIKE '%:x%'`` fails with "A value is required for
    bind parameter"); ``\\:word`` would lose its backslash. Both get one more backslash, which
    SQLAlchemy removes again. ``::cast`` and ``12:30`` are left alone, as SQLAlchemy does.
    """
    sql = _TEXT_ESCAPED_BIND_RE.sub(r"\\\\", sql)
    return _TEXT_BIND_RE.sub(r"\\:", sql)

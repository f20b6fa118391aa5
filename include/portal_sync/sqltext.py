"""Small helpers for SQL text the sync builds for the portal database (PostgreSQL).

Every identifier the sync puts into SQL comes from the data-set declarations or from a
staging table name checked in ``stage.stage_table_name``; these helpers only quote them.
"""

from __future__ import annotations

from collections.abc import Mapping

from portal_sync.names import STAGE_SCHEMA


def quote_pg_ident(name: str) -> str:
    """A PostgreSQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def render_staged(text: str, tables: Mapping[str, str]) -> str:
    """Put the run's staging tables in place of ``{extract_name}`` in SQL text."""
    return render_relations(text, {name: f"{quote_pg_ident(STAGE_SCHEMA)}.{quote_pg_ident(table)}"
                                   for name, table in tables.items()})


def render_relations(text: str, relations: Mapping[str, str]) -> str:
    """Put relations (a table name or a parenthesised row source built by the sync, never user
    text) in place of ``{extract_name}`` in SQL text."""
    for name, relation in relations.items():
        text = text.replace("{" + name + "}", relation)
    return text

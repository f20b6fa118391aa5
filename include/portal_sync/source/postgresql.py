"""PostgreSQL (a test engine here): the generic ANSI read as it is.

Standard double-quoted identifiers, ``YYYY-MM-DD hh:mm:ss`` read as ISO whatever ``DateStyle``
says, typed values (text cannot even hold a NUL, the one value a typed engine hands over
inexactly), and the work done in the server: nothing to override. Streaming is a matter of the
connection string: psqlODBC holds a whole result in client memory unless it asks for a
server-side cursor (``UseDeclareFetch=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from portal_sync.source.dialect import Dialect


@dataclass(frozen=True)
class PostgreSQL(Dialect):
    name: str = "PostgreSQL"

    def schema_preference(self) -> tuple[str, ...]:
        return ("public",)  # the default search_path's schema

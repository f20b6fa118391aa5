"""MariaDB (a test engine here): backtick identifiers.

MariaDB quotes identifiers with a backtick unless ``ANSI_QUOTES`` is set; the driver reports its
quote and ``source.dialect_of`` uses that. Timestamps compare as ``YYYY-MM-DD hh:mm:ss`` and the
work is done in the server, so nothing else differs. The driver shipped here holds a query's whole
result before the first batch (README, known limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from portal_sync.source.dialect import Dialect


@dataclass(frozen=True)
class MariaDB(Dialect):
    name: str = "MariaDB"
    quote: str = "`"

"""What can be wrong with a source, as exceptions the rest of the product can tell apart."""

from __future__ import annotations


class SourceError(RuntimeError):
    """The source is not what the sync can read (the message says what)."""


class SourceUnreachable(SourceError):
    """No connection could be opened: a mistyped path, driver or host, a login refused, a server down."""


class SourceSchemaError(SourceError):
    """A table the sync reads lacks a declared column, or the column's type changed (message: table, column, what)."""

    retryable = False  # the same source fails the same way until the contract or Caselle changes


class SourceMismatchError(SourceError):
    """A reading connection reached the Caselle of another organization than the run's community."""

    retryable = False  # a connection that reaches another community's Caselle needs a person, not a retry


class ExtractError(SourceError):
    """A read handed over something the sync cannot take, or its reading process died (the message says what)."""

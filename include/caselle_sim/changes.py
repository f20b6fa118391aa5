"""What a simulator call changed, key by key, so tests can work out what a sync must do.

Keys are the tables' primary-key values (``OrgCode`` for SM_Organization, the
integer ID everywhere else). Within one ChangeSet a key is in at most one of
``inserted`` / ``updated`` / ``deleted``, and the sets are *net* effects seen
from outside: a row inserted and then updated is only ``inserted``; a row
inserted and deleted in the same span is in none of them; a row updated and
then deleted is only ``deleted``. IDs are never reused, so a deleted key never
comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .schema import TABLE_ORDER


@dataclass
class TableChanges:
    """Net inserted / updated / deleted keys of one table."""

    inserted: set[Any] = field(default_factory=set)
    updated: set[Any] = field(default_factory=set)
    deleted: set[Any] = field(default_factory=set)

    def insert(self, keys: Iterable[Any]) -> None:
        self.inserted.update(keys)

    def update(self, keys: Iterable[Any]) -> None:
        for k in keys:
            if k not in self.inserted:
                self.updated.add(k)

    def delete(self, keys: Iterable[Any]) -> None:
        for k in keys:
            if k in self.inserted:
                self.inserted.discard(k)
            else:
                self.deleted.add(k)
            self.updated.discard(k)

    def __bool__(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)

    def __len__(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.deleted)


@dataclass
class ChangeSet:
    """Changes per contract table between two clock readings (naive local times)."""

    before: datetime
    after: datetime
    tables: dict[str, TableChanges] = field(default_factory=lambda: {t: TableChanges() for t in TABLE_ORDER})

    def __getitem__(self, table: str) -> TableChanges:
        return self.tables[table]

    def merge(self, later: ChangeSet) -> ChangeSet:
        """This span followed by ``later``: one ChangeSet with the net effect of both."""
        out = ChangeSet(self.before, later.after)
        for name in TABLE_ORDER:
            mine, theirs, target = self.tables[name], later.tables[name], out.tables[name]
            target.insert(mine.inserted)
            target.updated |= mine.updated
            target.deleted |= mine.deleted
            target.insert(theirs.inserted)
            target.update(theirs.updated)
            target.delete(theirs.deleted)
        return out

    def is_empty(self) -> bool:
        return not any(self.tables.values())

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """(inserted, updated, deleted) per table that changed."""
        return {n: (len(c.inserted), len(c.updated), len(c.deleted)) for n, c in self.tables.items() if c}

    def summary(self) -> str:
        """A short human summary, one line per changed table."""
        lines = [f"{self.before:%Y-%m-%d %H:%M:%S} -> {self.after:%Y-%m-%d %H:%M:%S}"]
        for name, (i, u, d) in self.counts().items():
            lines.append(f"  {name:<16} +{i:<7} ~{u:<7} -{d}")
        if len(lines) == 1:
            lines.append("  no changes")
        return "\n".join(lines)

"""Reading a communities file: PyYAML's safe loader, plus what the configuration needs of it.

Two things PyYAML does not do: record a key written twice in one mapping (it keeps the last
silently), and read one community out of a large file without building the others. A task
process needs only its own entry; at 1,000 communities in one file, constructing every entry
cost 0.23 CPU-s of each task's parse. :func:`load_yaml_naming` parses the whole file (every
syntax error still counts) but composes and constructs only the entries whose text could name
the code, and falls back to :func:`load_yaml` whenever skipping an entry could change the
outcome (an anchor or alias, an explicit tag, a merge key, a value that might not construct).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import yaml
from yaml import events
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping of a file (PyYAML alone keeps the last one silently)."""

    entry: int | None  # index in the file's ``communities`` list; None: anywhere else in the file
    key: str  # dotted path inside the entry (or the file), e.g. ``quality.max_amount``
    line: int  # 1-based, of the repeat
    first_line: int

    def describe(self) -> str:
        return f"duplicate key '{self.key}' at line {self.line} (first at line {self.first_line})"


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses about 9x faster
_MERGE_TAG = "tag:yaml.org,2002:merge"


class RecordsDuplicateKeys:
    """Mixin for a safe loader: records every key repeated within one mapping, with both key nodes."""

    repeated: list[tuple[MappingNode, ScalarNode, ScalarNode]]  # mapping, first key, repeat

    def __init__(self, stream: str) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        self.repeated = []
        self._checked: set[int] = set()

    def flatten_mapping(self, node: MappingNode) -> None:
        # Checked before merge keys (<<) are folded in, and once: a key overriding a merged one
        # is no repeat, and a merged anchor is flattened (changed) before it is constructed.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            first: dict[tuple[str, str], ScalarNode] = {}
            for key_node, _value in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                    seen = first.setdefault((key_node.tag, key_node.value), key_node)
                    if seen is not key_node:
                        self.repeated.append((node, seen, key_node))
        super().flatten_mapping(node)  # type: ignore[misc]


class DuplicateKeyLoader(RecordsDuplicateKeys, _BaseLoader):  # type: ignore[misc, valid-type]
    """The loader of the configuration: libyaml's safe loader when present, recording repeated keys."""


def _key_path(root: Node, mapping: MappingNode, key: ScalarNode) -> list[str | int]:
    """Where ``key`` of ``mapping`` is written: the keys and list indexes leading to it.

    Followed by text position, not by reference, so an anchor is named where it is written.
    """
    at = key.start_mark.index
    path: list[str | int] = []
    node = root
    for _ in range(1000):  # each step narrows the text: the bound only guards a broken tree
        if node is mapping:
            break
        if isinstance(node, MappingNode):
            children: Iterable[tuple[str | int, Node]] = (
                (k.value if isinstance(k, ScalarNode) else "?", v) for k, v in node.value)
        elif isinstance(node, SequenceNode):
            children = enumerate(node.value)
        else:
            break
        for label, child in children:
            if child.start_mark.index <= at < child.end_mark.index:
                path.append(label)
                node = child
                break
        else:
            break
    path.append(key.value)
    return path


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector while a file is read.

    Reading creates some 100,000 objects that stay alive (events, nodes, marks); in a process that
    has imported Airflow each batch of them sets off a collection of the whole heap: 0.27 CPU-s
    instead of 0.15 to load 1,000 communities, 0.17-0.25 instead of 0.065 to read one out of
    them (docs/benchmarks/fleet.md). What is read holds no cycle the collector is needed for.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def load_yaml(text: str, loader_class: type[RecordsDuplicateKeys] = DuplicateKeyLoader,
              ) -> tuple[Any, tuple[DuplicateKey, ...]]:
    """Parse one configuration document; also the keys it repeats, placed in their entries.

    Raises what PyYAML raises (``yaml.YAMLError``; ``ValueError`` for an impossible date).
    """
    loader: Any = loader_class(text)
    try:
        with _collector_paused():
            root = loader.get_single_node()
            document = loader.construct_document(root) if root is not None else None
        repeated = list(loader.repeated)
    finally:
        loader.dispose()
    return document, _placed(root, repeated, lambda position: position)


def _placed(root: Node | None, repeated: Iterable[tuple[MappingNode, ScalarNode, ScalarNode]],
            entry_index: Callable[[int], int]) -> tuple[DuplicateKey, ...]:
    """The repeated keys as :class:`DuplicateKey`; ``entry_index`` maps a position in the composed
    ``communities`` list to the entry's index in the file."""
    found = []
    for mapping, first, repeat in repeated:
        path = _key_path(root, mapping, repeat) if root is not None else [repeat.value]
        in_entry = len(path) > 2 and path[0] == "communities" and isinstance(path[1], int)
        found.append(DuplicateKey(
            entry=entry_index(path[1]) if in_entry else None,  # type: ignore[arg-type]
            key=".".join(str(p) for p in (path[2:] if in_entry else path)),
            line=repeat.start_mark.line + 1, first_line=first.start_mark.line + 1))
    return tuple(found)


# --------------------------------------------------------------------------- one entry of a large file

_CONSTRUCTS = frozenset({"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                         "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"})
"""Implicit scalar types that construct from any text the resolver gives them."""
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_COLLECTION_START = (events.MappingStartEvent, events.SequenceStartEvent)
_COLLECTION_END = (events.MappingEndEvent, events.SequenceEndEvent)
_DEPTH_CHANGE = {events.MappingStartEvent: 1, events.SequenceStartEvent: 1, events.DocumentStartEvent: 1,
                 events.MappingEndEvent: -1, events.SequenceEndEvent: -1, events.DocumentEndEvent: -1}
_RISKY_TEXT = re.compile(r"[!?\[{=<]|\d\d\d\d-\d")
"""What an entry's text must hold for it to possibly carry a tag, a complex key, a merge key (``<<``),
a value key (``=``) or a timestamp: the plain scalars of any other text construct whatever they say."""


class _SkipUnsafe(Exception):
    """Leaving an entry out could change the result: read the whole file instead."""


class _EventListLoader(RecordsDuplicateKeys, Composer, SafeConstructor, Resolver):
    """PyYAML's composer and safe constructor over a list of parser events (some entries left out)."""

    def __init__(self, event_list: list[events.Event]) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.repeated = []
        self._checked = set()
        self._events = event_list
        self._at = 0

    def check_event(self, *choices: type) -> bool:
        if self._at >= len(self._events):
            return False
        return not choices or isinstance(self._events[self._at], choices)

    def peek_event(self) -> events.Event:
        return self._events[self._at]

    def get_event(self) -> events.Event:
        self._at += 1
        return self._events[self._at - 1]

    def dispose(self) -> None:
        self._events = []


def _check_skippable(stream: list[events.Event], start: int, end: int, resolver: _EventListLoader) -> None:
    """Raise :class:`_SkipUnsafe` unless the entry ``stream[start:end]`` surely constructs: no tag, no
    collection as a key, no merge key, every plain scalar of a type that cannot fail (a timestamp,
    which can, is constructed); ValueError for an impossible date, as the whole file's load gives."""
    awaiting_key: list[bool | None] = []  # per open collection: a mapping's next node is a key (None: sequence)
    for event in stream[start:end]:
        if isinstance(event, _COLLECTION_END):
            awaiting_key.pop()
        else:
            if getattr(event, "tag", None) is not None:
                raise _SkipUnsafe
            if isinstance(event, _COLLECTION_START):
                if awaiting_key and awaiting_key[-1]:
                    raise _SkipUnsafe  # a collection as a key: unhashable, PyYAML refuses the file
                awaiting_key.append(True if isinstance(event, events.MappingStartEvent) else None)
                continue
            if not isinstance(event, events.ScalarEvent):
                raise _SkipUnsafe
            if event.implicit[0]:  # plain: the resolver picks the type
                tag = resolver.resolve(ScalarNode, event.value, (True, False))
                if tag == _TIMESTAMP:
                    resolver.construct_yaml_timestamp(ScalarNode(tag, event.value))
                elif tag not in _CONSTRUCTS:
                    raise _SkipUnsafe  # a merge key (<<), a value key (=)
        if awaiting_key and awaiting_key[-1] is not None:  # a node of a mapping is complete
            awaiting_key[-1] = not awaiting_key[-1]


def load_yaml_naming(text: str, code: str) -> tuple[Any, tuple[DuplicateKey, ...], list[int]]:
    """Like :func:`load_yaml`, but the ``communities`` list holds only the entries whose text contains
    ``code`` (any case) or a backslash (an escape could spell it); also their indexes in the file.

    The result is what :func:`load_yaml` gives with the other entries removed: the same errors, the
    same repeated keys (of the kept parts), the same values. Raises what :func:`load_yaml` raises.
    """
    with _collector_paused():
        stream = list(yaml.parse(text, Loader=_BaseLoader))  # the whole file parses: a syntax error anywhere counts
        try:
            kept, indexes = _without_other_entries(text, code.upper(), stream)
        except _SkipUnsafe:
            pass
        else:
            loader = _EventListLoader(kept)
            root = loader.get_single_node()
            document = loader.construct_document(root) if root is not None else None
            return document, _placed(root, loader.repeated, lambda position: indexes[position]), indexes
    document, duplicates = load_yaml(text)
    entries = document.get("communities") if isinstance(document, dict) else None
    return document, duplicates, list(range(len(entries))) if isinstance(entries, list) else []


def _without_other_entries(text: str, code: str, stream: list[events.Event]) -> tuple[list[events.Event], list[int]]:
    """The event stream without the ``communities`` entries that cannot be ``code``'s.

    A node's end is found from the running depth (``list.index`` runs in C); an entry left out is
    inspected event by event only when its text holds something that could fail or reach
    elsewhere (a tag, a complex key, a flow collection, a merge, a date).
    """
    kinds = list(map(type, stream))
    if events.AliasEvent in kinds or ("&" in text and any(
            getattr(e, "anchor", None) is not None for e in stream)):
        raise _SkipUnsafe  # an alias may reach into a left-out entry
    if len(stream) < 4 or kinds[2] is not events.MappingStartEvent:
        raise _SkipUnsafe  # not a mapping at the top: nothing to leave out
    depth = list(accumulate(_DEPTH_CHANGE.get(kind, 0) for kind in kinds))  # depth after each event

    def node_end(at: int) -> int:
        return depth.index(depth[at - 1], at) + 1

    checker = _EventListLoader([])
    kept: list[events.Event] = stream[:3]
    indexes: list[int] = []
    at, seen = 3, False
    while kinds[at] is not events.MappingEndEvent:  # the top mapping's keys and values
        key_end = node_end(at)
        value_end = node_end(key_end)
        key = stream[at]
        kept.extend(stream[at:key_end])
        if not (kinds[at] is events.ScalarEvent and key.implicit[0] and key.value == "communities"  # type: ignore[attr-defined]
                and kinds[key_end] is events.SequenceStartEvent):
            kept.extend(stream[key_end:value_end])
            at = value_end
            continue
        if seen:
            raise _SkipUnsafe  # two communities lists: the file is refused, as load_yaml finds
        seen = True
        kept.append(stream[key_end])
        entry, index = key_end + 1, 0
        while entry < value_end - 1:
            entry_end = node_end(entry)
            written = text[stream[entry].start_mark.index:stream[entry_end - 1].end_mark.index]
            if code in written.upper() or "\\" in written:
                kept.extend(stream[entry:entry_end])
                indexes.append(index)
            elif _RISKY_TEXT.search(written):
                _check_skippable(stream, entry, entry_end, checker)
            entry, index = entry_end, index + 1
        kept.append(stream[value_end - 1])
        at = value_end
    kept.extend(stream[at:])
    return kept, indexes

"""Bounded reading of every YAML and JSON file raylens reads: configs, budgets, quotas, pricing, web
config, the cost state and the explain log.

A file is refused, before any of it is used, when it is

* not a regular file (a FIFO or ``/dev/zero`` would block or never end), or larger than the limit;
* not UTF-8 (a binary file, a UTF-16 export from a Windows editor): the refusal names the line;
* YAML whose anchors and aliases expand past a node count (the "billion laughs" bomb: a few hundred
  bytes that expand to 10^9 nodes), nested deeper than a depth limit, with a duplicate key in a
  mapping (the first value would be silently dropped), or a recursive alias;
* not valid YAML or JSON, or holding a number too long for Python to convert.

Every refusal is one ``FileRefused`` naming the file, the line where known and the limit, with any
quoted text shortened. YAML is checked in one streaming pass over libyaml's events (aliases counted
with the size of what they stand for) before the document is built, so a bomb is refused in
milliseconds and never expanded; the document is then loaded with libyaml's C loader.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# libyaml is bundled with PyYAML's wheels; the pure-Python loader is ten times slower but equivalent.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MERGE_KEY = "<<"


@dataclass(frozen=True)
class Limits:
    """Refusal thresholds of one kind of file (documented in docs/reliability.md#hostile-inputs)."""

    max_bytes: int
    max_depth: int
    max_nodes: int = 0  # YAML only: nodes after expanding every alias (0: no limit)


# Configs, budgets, quotas, pricing and web config: 4 MiB is over three times the largest file the count
# limits allow (docs/cost-model.md#limits: a 5,000-row pricing file with 1,000 resource prices is
# 1.2 MB and about 112,000 nodes). Nothing in these formats nests deeper than 8.
CONFIG_LIMITS = Limits(max_bytes=4 << 20, max_depth=32, max_nodes=200_000)
# The exporter's own state: far above what a cluster of thousands of nodes and jobs writes, low enough
# that a stray multi-gigabyte file is refused instead of exhausting memory.
STATE_LIMITS = Limits(max_bytes=1 << 30, max_depth=16)


class FileRefused(Exception):
    """A file raylens will not read; ``str()`` is one line for the user."""

    def __init__(self, path: Path | str, reason: str, line: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: line {self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


class FileMissing(FileRefused):
    """The file does not exist (callers such as the state loader treat that as "nothing yet")."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with ``…``, for quoting user data in messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift} {unit}"
    return f"{count:,} bytes"


def read_bounded_text(path: Path, max_bytes: int) -> str:
    """The file's text, decoded as UTF-8 (a UTF-8 byte-order mark is dropped); ``FileRefused`` else."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FileRefused(path, "not a regular file")
            if info.st_size > max_bytes:
                raise FileRefused(path, f"file is {_size(info.st_size)}; the limit is {_size(max_bytes)}")
            data = handle.read(max_bytes + 1)  # the file may grow between fstat and read
    except FileNotFoundError:
        raise FileMissing(path, "cannot read file: no such file") from None
    except IsADirectoryError:
        raise FileRefused(path, "not a regular file (a directory)") from None
    except OSError as error:
        raise FileRefused(path, f"cannot read file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise FileRefused(path, f"file is larger than the limit of {_size(max_bytes)}")
    return decode_utf8(data, path)


def decode_utf8(data: bytes, path: Path | str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRefused(path, "file is UTF-16 (byte-order mark); save it as UTF-8", 1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise FileRefused(path, "binary file (a NUL byte); expected UTF-8 text", line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise FileRefused(
            path, f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); save it as UTF-8", line
        ) from None


def read_yaml(path: Path, limits: Limits = CONFIG_LIMITS) -> Any:
    """Parse a YAML (or JSON) file within ``limits``; ``FileRefused`` names what is wrong and where."""
    text = read_bounded_text(path, limits.max_bytes)
    return load_yaml_text(text, path, limits)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Building a document allocates hundreds of thousands of containers, each allocation a step towards
    a cyclic collection that rescans the whole heap: 3.5 of 8.9 s for a 5,000-row pricing file. The
    documents hold no cycles (recursive aliases are refused), so reference counting frees them anyway."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_yaml_text(text: str, path: Path | str, limits: Limits = CONFIG_LIMITS) -> Any:
    try:
        with _collector_paused():
            check_yaml_events(text, path, limits)
            return yaml.load(text, Loader=_Loader)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.YAMLError as error:
        raise _yaml_refusal(error, path, text) from None
    except (ValueError, RecursionError) as error:
        # Python refuses integers of more than 4,300 digits; libyaml's stack may give out first.
        raise FileRefused(path, f"not valid YAML: {shorten(str(error), 120)}") from None


def _yaml_refusal(error: yaml.YAMLError, path: Path | str, text: str) -> FileRefused:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is not None and _character_at(text, mark.line, mark.column) == "\t":
        problem += " (a tab: YAML indents with spaces only)"
    column = f", column {mark.column + 1}" if mark is not None else ""
    return FileRefused(path, f"not valid YAML{column}: {shorten(problem, 160)}", line)


def _character_at(text: str, line: int, column: int) -> str:
    start = 0
    for _ in range(line):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    return text[start + column : start + column + 1]


class _Collection:
    __slots__ = ("anchor", "keys", "mapping", "nodes_before", "want_key")

    def __init__(self, anchor: str | None, mapping: bool, nodes_before: int):
        self.anchor = anchor
        self.mapping = mapping
        self.nodes_before = nodes_before
        self.want_key = mapping
        self.keys: dict[str, int] = {}


def check_yaml_events(text: str, path: Path | str, limits: Limits) -> None:
    """One pass over the event stream: depth, expanded node count, duplicate and recursive keys.

    ``nodes`` counts every node the loaded document will hold, an alias counting as a full copy of
    what its anchor names (``sizes``), so the bound holds for whatever reads the document afterwards.
    """
    sizes: dict[str, int] = {}
    stack: list[_Collection] = []
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                if any(open_.anchor == event.anchor for open_ in stack):
                    raise FileRefused(path, f"recursive alias *{shorten(event.anchor or '', 40)}", line)
                size = sizes.get(event.anchor or "")
                if size is None:
                    raise FileRefused(path, f"alias *{shorten(event.anchor or '', 40)} names no anchor", line)
            else:
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            nodes += size
            if limits.max_nodes and nodes > limits.max_nodes:
                raise FileRefused(
                    path,
                    f"anchors and aliases expand past {limits.max_nodes:,} nodes, the limit for this file "
                    "(a YAML bomb?)"
                    if isinstance(event, yaml.AliasEvent)
                    else f"more than {limits.max_nodes:,} nodes, the limit for this file",
                    line,
                )
            if stack:
                parent = stack[-1]
                if parent.mapping:
                    if parent.want_key and isinstance(event, yaml.ScalarEvent):
                        _check_duplicate(parent, event.value, line, path)
                    parent.want_key = not parent.want_key
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            line = event.start_mark.line + 1
            if stack and stack[-1].mapping:
                stack[-1].want_key = not stack[-1].want_key
            nodes += 1
            if len(stack) >= limits.max_depth:
                raise FileRefused(path, f"nested deeper than {limits.max_depth} levels, the limit", line)
            stack.append(_Collection(event.anchor, isinstance(event, yaml.MappingStartEvent), nodes - 1))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            done = stack.pop()
            if done.anchor:
                sizes[done.anchor] = nodes - done.nodes_before


def _check_duplicate(parent: _Collection, key: str, line: int, path: Path | str) -> None:
    if key == MERGE_KEY:
        return
    first = parent.keys.get(key)
    if first is None:
        parent.keys[key] = line
        return
    raise FileRefused(
        path, f"duplicate key {shorten(key, 60)!r} (first at line {first}); the first value would be lost", line
    )


def read_json(path: Path, limits: Limits = STATE_LIMITS) -> Any:
    """Parse a JSON file within ``limits``; ``FileMissing`` when absent, ``FileRefused`` otherwise."""
    text = read_bounded_text(path, limits.max_bytes)
    try:
        with _collector_paused():
            data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileRefused(path, f"not valid JSON, column {error.colno}: {error.msg}", error.lineno) from None
    except (ValueError, RecursionError) as error:
        raise FileRefused(path, f"not valid JSON: {shorten(str(error) or type(error).__name__, 120)}") from None
    depth = nesting_depth(data, limits.max_depth)
    if depth > limits.max_depth:
        raise FileRefused(path, f"nested deeper than {limits.max_depth} levels, the limit")
    return data


def nesting_depth(data: Any, stop_after: int) -> int:
    """Depth of nested lists and dicts (a scalar is 0); stops counting past ``stop_after``."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        pending.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest

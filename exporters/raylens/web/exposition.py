"""The ``/metrics`` body, byte for byte what prometheus_client writes, at a fraction of its CPU.

prometheus_client re-escapes every label name and value on every scrape; at 10,000 Ray nodes the cost
collector's ~113,000 series cost 0.54 s of CPU that way (4.7 µs per sample). Between scrapes only
values change, so ``ExpositionRenderer`` keeps each sample line's ``name{label="value",...} `` prefix
and per scrape formats only the value, with prometheus_client's own ``floatToGoString``. Prefixes are
kept per family in sample order, each beside its series (sample name, label names and values), which
the next render compares with its sample at the same position (a dict lookup when the order changed).
A prefix is built once with prometheus_client's own escaping functions. Each render keeps only what it
wrote, so series that disappear are dropped and the cache holds one render's series, no more.

What the fast path does not know goes to prometheus_client's encoder, one family at a time: samples with
a timestamp, an exemplar or a native histogram, metric or label names outside the legacy character
set, and anything that raises (prometheus_client then raises it in its own words).
``tests/test_exposition_cache.py`` checks both formats against prometheus_client on random families.

    renderer = ExpositionRenderer()      # one per registry, kept between scrapes
    body = renderer.text(registry)       # == prometheus_client.generate_latest(registry)
    body = renderer.openmetrics(registry)  # == prometheus_client.openmetrics.exposition.generate_latest
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from itertools import zip_longest
from typing import NamedTuple, Protocol

from prometheus_client import exposition as text_exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.utils import floatToGoString

try:
    # Private, but the very functions prometheus_client's encoders call (0.23 to 0.26 at least): copies
    # could drift. A release without them gets prometheus_client's own encoders, unchanged.
    from prometheus_client.openmetrics.exposition import (
        ALLOWUTF8,
        UNDERSCORES,
        _escape,
        _is_legacy_labelname_rune,
        escape_label_name,
        escape_metric_name,
    )
    from prometheus_client.validation import _is_valid_legacy_labelname, _is_valid_legacy_metric_name

    CACHED = True
except ImportError:  # pragma: no cover - depends on the installed prometheus_client
    UNDERSCORES, CACHED = "underscores", False


class Collects(Protocol):
    """A registry, a restricted registry, or anything else prometheus_client's encoders accept."""

    def collect(self) -> Iterable[Metric]: ...


Encoder = Callable[[Collects], bytes]
TEXT = "text"
OPENMETRICS = "openmetrics"
_EOF = "# EOF\n"
# Text 0.0.4 moves these OpenMetrics-only samples into gauges of their own after the family, in this order.
_MOVED_SUFFIXES = ("_created", "_gcount", "_gsum")
_NO_MORE = object()

SeriesKey = tuple[str, ...]
FamilyKey = tuple[str, str, str, str]
PrefixMaker = Callable[[str, dict[str, str], str], str]


class _Family(NamedTuple):
    """One family as the last render wrote it: headers, and each sample's series and prefix in order."""

    header: str
    moved_headers: dict[str, str]  # text 0.0.4: a moved sample's name -> its gauge's HELP and TYPE
    keys: list[SeriesKey]
    prefixes: list[str]


class _Unsupported(Exception):
    """The family needs prometheus_client's own encoder."""


class _OneFamily:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


class ExpositionRenderer:
    """Renders a registry as prometheus_client would, caching what does not change between scrapes.

    Keep one per registry for the life of the exporter: a render reads what the previous render of the
    same format and escaping kept, and then replaces it with what it wrote itself. Concurrent renders
    are safe: each builds its own cache and only the swap takes the lock (the last one wins).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[tuple[str, str], dict[FamilyKey, _Family]] = {}

    def text(self, registry: Collects, escaping: str = UNDERSCORES) -> bytes:
        """Same bytes as ``prometheus_client.generate_latest(registry, escaping)``."""
        fallback = partial(text_exposition.generate_latest, escaping=escaping)
        return self._render(registry, TEXT, escaping, fallback)

    def openmetrics(self, registry: Collects, escaping: str = UNDERSCORES, version: str = "1.0.0") -> bytes:
        """Same bytes as ``prometheus_client.openmetrics.exposition.generate_latest(registry, escaping, version)``."""
        # The version only changes how native histograms are written, and those always fall back.
        fallback = partial(openmetrics_exposition.generate_latest, escaping=escaping, version=version)
        return self._render(registry, OPENMETRICS, escaping, fallback)

    def encoder_for(self, encoder: Encoder) -> Encoder:
        """This renderer in place of one of prometheus_client's encoders as ``choose_encoder`` returns it
        (the function itself, or a ``partial`` with ``escaping`` and ``version``); any other is kept."""
        function, keywords = (encoder.func, encoder.keywords) if isinstance(encoder, partial) else (encoder, {})
        if function is text_exposition.generate_latest:
            return partial(self.text, **keywords)
        if function is openmetrics_exposition.generate_latest:
            return partial(self.openmetrics, **keywords)
        return encoder

    def cached_series(self) -> int:
        """Sample prefixes held, over every format rendered."""
        with self._lock:
            return sum(len(family.keys) for families in self._families.values() for family in families.values())

    def _render(self, registry: Collects, kind: str, escaping: str, fallback: Encoder) -> bytes:
        if not CACHED:
            return fallback(registry)
        with self._lock:
            last = self._families.get((kind, escaping), {})
        families: dict[FamilyKey, _Family] = {}
        header_for, prefix_for = (
            (_text_header, _text_prefix) if kind == TEXT else (_openmetrics_header, _openmetrics_prefix)
        )
        out: list[str] = []
        for metric in registry.collect():
            mark = len(out)
            try:
                key = (metric.name, metric.type, metric.documentation, metric.unit)
                family = last.get(key) or _Family(*header_for(metric, escaping), [], [])
                families[key] = _render_family(metric, family, prefix_for, escaping, out)
                continue
            except Exception:
                # Unsupported, or broken in a way prometheus_client should report in its own words.
                del out[mark:]
            family_body = fallback(_OneFamily(metric)).decode("utf-8")
            out.append(family_body.removesuffix(_EOF) if kind == OPENMETRICS else family_body)
        if kind == OPENMETRICS:
            out.append(_EOF)
        body = "".join(out).encode("utf-8")
        with self._lock:
            self._families[(kind, escaping)] = families
        return body


def _render_family(metric: Metric, last: _Family, prefix_for: PrefixMaker, escaping: str, out: list[str]) -> _Family:
    """Append the family's lines to ``out``; answer what the next render can reuse."""
    header, moved_headers, last_keys, last_prefixes = last
    out.append(header)
    append = out.append
    keys: list[SeriesKey] = []
    prefixes: list[str] = []
    keep_key, keep_prefix = keys.append, prefixes.append
    moved: dict[str, list[str]] | None = None
    index: dict[SeriesKey, str] | None = None
    # Collectors yield a family's samples in the same order scrape after scrape, so the last render's
    # series at the same position is almost always the one; a dict is built only when it is not.
    for sample, last_key, last_prefix in zip_longest(metric.samples, last_keys, last_prefixes, fillvalue=_NO_MORE):
        if sample is _NO_MORE:
            break
        name, labels, value, timestamp, exemplar, native_histogram = sample
        if timestamp is not None or exemplar is not None or native_histogram is not None:
            raise _Unsupported(name)
        # Flat (name, label names..., label values...): the length fixes the split, so it is as exact as
        # (name, items) at a third of the memory (~100 B a series instead of ~290).
        key = (name, *labels, *labels.values())
        if key == last_key:
            # Keeping the last render's objects means a warm render leaves no new objects for the GC.
            key, prefix = last_key, last_prefix
        else:
            if index is None:
                index = dict(zip(last_keys, last_prefixes, strict=True))
            prefix = index.get(key) or prefix_for(name, labels, escaping)
        keep_key(key)
        keep_prefix(prefix)
        if name in moved_headers:
            if moved is None:
                moved = {}
            moved.setdefault(name, []).extend((prefix, floatToGoString(value), "\n"))
        else:
            append(prefix)
            append(floatToGoString(value))
            append("\n")
    if moved is not None:
        for name, gauge_header in moved_headers.items():
            if name in moved:
                out.append(gauge_header)
                out.extend(moved[name])
    # Not _Family(...): the NamedTuple's generated __new__ costs twice this, once per family per scrape.
    return tuple.__new__(_Family, (header, moved_headers, keys, prefixes))


def _check_legacy(name: str) -> None:
    """UTF-8 names are quoted or escaped by rules that differ per format and escaping: leave them to
    prometheus_client."""
    if not _is_valid_legacy_metric_name(name):
        raise _Unsupported(name)


# Names repeat across millions of samples: validating and escaping each once is most of a cold render.
@lru_cache(maxsize=4096)
def _label_name(name: str, escaping: str) -> str:
    if not _is_valid_legacy_labelname(name):
        raise _Unsupported(name)
    return escape_label_name(name, escaping)


@lru_cache(maxsize=4096)
def _text_sample_name(name: str, escaping: str) -> str:
    _check_legacy(name)
    return escape_metric_name(name, escaping)


@lru_cache(maxsize=4096)
def _openmetrics_sample_name(name: str, escaping: str) -> str:
    _check_legacy(name)
    # Not escape_metric_name, as prometheus_client does: with underscores escaping even ':' becomes '_'.
    return _escape(name, escaping, _is_legacy_labelname_rune)


def _text_header(metric: Metric, escaping: str) -> tuple[str, dict[str, str]]:
    """prometheus_client's text ``generate_latest``: OpenMetrics types munged into text 0.0.4 ones, and
    the HELP and TYPE of the gauges that ``_created``, ``_gsum`` and ``_gcount`` samples move to."""
    _check_legacy(metric.name)
    name, kind = metric.name, metric.type
    if kind == "counter":
        name += "_total"
    elif kind == "info":
        name, kind = name + "_info", "gauge"
    elif kind == "stateset":
        kind = "gauge"
    elif kind == "gaugehistogram":
        kind = "histogram"
    elif kind == "unknown":
        kind = "untyped"
    help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    escaped = escape_metric_name(name, escaping)
    moved = {}
    for suffix in _MOVED_SUFFIXES:
        gauge = escape_metric_name(metric.name + suffix, escaping)
        moved[metric.name + suffix] = f"# HELP {gauge} {help_text}\n# TYPE {gauge} gauge\n"
    return f"# HELP {escaped} {help_text}\n# TYPE {escaped} {kind}\n", moved


def _text_prefix(name: str, labels: dict[str, str], escaping: str) -> str:
    escaped = _text_sample_name(name, escaping)
    if not labels:
        return f"{escaped} "
    pairs = ",".join(
        [
            f'{_label_name(key, escaping)}="{_escape(value, ALLOWUTF8, False)}"'  # type: ignore[arg-type]
            for key, value in sorted(labels.items())
        ]
    )
    return f"{escaped}{{{pairs}}} "


def _openmetrics_header(metric: Metric, escaping: str) -> tuple[str, dict[str, str]]:
    """prometheus_client's OpenMetrics ``generate_latest``: HELP escapes quotes too; UNIT when there is one."""
    _check_legacy(metric.name)
    name = escape_metric_name(metric.name, escaping)
    help_text = _escape(metric.documentation, ALLOWUTF8, _is_legacy_labelname_rune)
    header = f"# HELP {name} {help_text}\n# TYPE {name} {metric.type}\n"
    if metric.unit:
        header += f"# UNIT {name} {metric.unit}\n"
    return header, {}


def _openmetrics_prefix(name: str, labels: dict[str, str], escaping: str) -> str:
    escaped = _openmetrics_sample_name(name, escaping)
    if not labels:
        return f"{escaped} "
    pairs = ",".join(
        [
            f'{_label_name(key, escaping)}="{_escape(value, ALLOWUTF8, _is_legacy_labelname_rune)}"'
            for key, value in sorted(labels.items())
        ]
    )
    return f"{escaped}{{{pairs}}} "

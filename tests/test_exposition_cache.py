"""The cached exposition renderer (``raylens.web.exposition``) writes exactly prometheus_client's bytes:
random families in both formats and every escaping, cold, warm and after the series change; the cache
holds one render's series; ``/metrics`` over real HTTP negotiates and compresses as prometheus_client's
own WSGI app does."""

from __future__ import annotations

import gzip
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from exposition_check import Frozen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import METRIC_TYPES, Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, DOTS, UNDERSCORES, VALUES
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Exemplar, NativeHistogram

from raylens.web.exposition import ExpositionRenderer
from raylens.web.server import make_app, make_http_server
from raylens.web.webconfig import WebConfig

ESCAPINGS = (UNDERSCORES, ALLOWUTF8, DOTS, VALUES)
SUFFIXES = ("", "_total", "_created", "_count", "_sum", "_bucket", "_gsum", "_gcount", "_info")
# Quotes, backslashes and newlines are what the escaping is for; the rest of Unicode rides along.
TRICKY = st.sampled_from(['"', "\\", "\n", "{", "}", ",", "=", " ", "é", "🚀"])
ANY_TEXT = st.text(st.one_of(TRICKY, st.characters(exclude_categories=("Cs",))), max_size=12)

LEGACY_METRIC_NAME = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True)
LEGACY_LABEL_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda n: n[:2] != "__")
# Names prometheus_client quotes or escapes: the renderer must hand these families to it.
UTF8_NAME = st.sampled_from(["raylens.dotted", "ray-lens", "métrique", "0starts", "__reserved", "a b"])
VALUES_DRAWN = st.one_of(
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e300, -1e300, 5e-324, 1e-7, 1234567.0, 1e22]),
    st.integers(-(2**62), 2**62),
)


def once_in(times: int, rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``usual``: what sends a family to prometheus_client's encoder stays rare enough that most
    families take the cached path."""
    return st.integers(1, times).flatmap(lambda n: rare if n == 1 else usual)


def rarely(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return once_in(60, strategy, st.none())


SAMPLE = st.tuples(
    st.sampled_from(SUFFIXES),
    st.dictionaries(once_in(40, UTF8_NAME, LEGACY_LABEL_NAME), ANY_TEXT, max_size=3),
    VALUES_DRAWN,
    rarely(st.floats(0, 2e9)),  # timestamp
    rarely(st.floats(0, 10).map(lambda value: Exemplar({"trace_id": "abc"}, value))),
    rarely(st.just(NativeHistogram(3, 6.5, 0, 0.001, 1))),
)
FAMILY = st.tuples(
    once_in(20, UTF8_NAME, LEGACY_METRIC_NAME),
    ANY_TEXT,  # HELP
    st.sampled_from(METRIC_TYPES),
    st.sampled_from(["", "", "seconds", "bytes"]),
    st.lists(SAMPLE, max_size=8),
)


def build(specs: list[tuple]) -> list[Metric]:
    """Fresh objects each time, as a collector builds them on every scrape."""
    families = []
    for name, documentation, kind, unit, samples in specs:
        metric = Metric(name, documentation, kind, unit)
        for suffix, labels, value, timestamp, exemplar, native_histogram in samples:
            metric.add_sample(metric.name + suffix, dict(labels), value, timestamp, exemplar, native_histogram)
        families.append(metric)
    return families


@st.composite
def changed(draw: st.DrawFn, spec: tuple) -> tuple:
    """The same family a scrape later: some series gone, some new, the order shuffled, new values."""
    name, documentation, kind, unit, samples = spec
    kept = draw(st.permutations(samples))[: draw(st.integers(0, len(samples)))]
    kept = [(suffix, labels, draw(VALUES_DRAWN), *rest) for suffix, labels, _, *rest in kept]
    return name, documentation, kind, unit, kept + draw(st.lists(SAMPLE, max_size=3))


def outcome(encode: Callable[[Frozen], bytes], families: list[Metric]) -> bytes | str:
    try:
        return encode(Frozen(families))
    except Exception as error:  # prometheus_client raises on some inputs: so must the renderer
        return type(error).__name__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), escaping=st.sampled_from(ESCAPINGS), version=st.sampled_from(["1.0.0", "2.0.0"]))
def test_random_families_render_as_prometheus_client_does(data: st.DataObject, escaping: str, version: str) -> None:
    first = data.draw(st.lists(FAMILY, max_size=4), label="first scrape")
    second = [data.draw(changed(spec), label="second scrape") for spec in first]
    second += data.draw(st.lists(FAMILY, max_size=2), label="new families")
    renderer = ExpositionRenderer()
    formats = [
        (lambda r: renderer.text(r, escaping), lambda r: generate_latest(r, escaping)),
        (
            lambda r: renderer.openmetrics(r, escaping, version),
            lambda r: generate_openmetrics(r, escaping, version),
        ),
    ]
    # Cold, warm, after the series changed, and back: each against prometheus_client on the same families.
    for specs, when in [(first, "cold"), (first, "warm"), (second, "changed"), (first, "back")]:
        for ours, theirs in formats:
            families = build(specs)
            assert outcome(ours, families) == outcome(theirs, families), when


def gauges(name: str, label_sets: list[tuple[str, str, str]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, "A synthetic gauge.", labels=["node", "project", "user"])
    for index, labels in enumerate(label_sets):
        family.add_metric(list(labels), index * 0.5)
    return family


def test_series_that_churn_do_not_accumulate() -> None:
    renderer = ExpositionRenderer()
    for scrape in range(30):
        # Every scrape a new set of series, and a family that appears in one scrape only.
        families = [
            gauges("raylens_churn", [(f"node-{scrape}-{i}", "p", "u") for i in range(40)]),
            gauges(f"raylens_once_{scrape}", [("n", "p", f"user-{scrape}")]),
        ]
        body = renderer.text(Frozen(families))
        assert body == generate_latest(Frozen(families))
        assert renderer.cached_series() == 41
    renderer.openmetrics(Frozen(families))
    assert renderer.cached_series() == 82  # one cache per format: Prometheus and a curl do not evict each other
    renderer.text(Frozen([]))
    assert renderer.cached_series() == 41


def test_a_series_is_matched_on_label_names_as_well_as_values() -> None:
    renderer = ExpositionRenderer()
    for labels in [{"a": "x"}, {"b": "x"}, {"a": "b"}, {"b": "a"}, {"a": "x", "b": "y"}, {"b": "y", "a": "x"}]:
        family = Metric("raylens_same_place", "Same name, same position.", "gauge")
        family.add_sample("raylens_same_place", labels, 1.0)
        for ours, theirs in [(renderer.text, generate_latest), (renderer.openmetrics, generate_openmetrics)]:
            assert ours(Frozen([family])) == theirs(Frozen([family])), labels


def test_concurrent_renders_stay_exact() -> None:
    sets = [[gauges("raylens_shared", [(f"n{i}", f"p{round_}", 'u"\\\n') for i in range(200)])] for round_ in range(4)]
    renderer = ExpositionRenderer()
    failures: list[str] = []

    def scrape_repeatedly(offset: int) -> None:
        for round_ in range(20):
            families = sets[(round_ + offset) % len(sets)]
            if renderer.openmetrics(Frozen(families)) != generate_openmetrics(Frozen(families)):
                failures.append(f"thread {offset} round {round_}")

    threads = [threading.Thread(target=scrape_repeatedly, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert renderer.cached_series() == 200


def test_an_unknown_encoder_is_left_alone() -> None:
    def encoder(registry: Any) -> bytes:
        return b"custom"

    assert ExpositionRenderer().encoder_for(encoder) is encoder


# --- /metrics over real HTTP against prometheus_client's own WSGI app ---------------------------------

PROMETHEUS_2_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
ACCEPTS = [
    None,
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "application/openmetrics-text;version=0.0.1",
    "application/openmetrics-text;version=2.0.0;escaping=values",
    PROMETHEUS_2_ACCEPT,
    PROMETHEUS_3_ACCEPT,
]
ENCODINGS = [None, "gzip", "br;q=1.0, GZIP;q=0.8, *;q=0.1", "identity"]
NO_GZIP = {"Accept-Encoding": None}


def fixed_families() -> list[Metric]:
    gauge = gauges("raylens_test_gauge", [("n1", 'quote " slash \\ newline \n', "ü"), ("n2", "p", "u")])
    counter = CounterMetricFamily("raylens_test_requests", "Requests.\nSecond line \\ of help.", labels=["code"])
    counter.add_metric(["200"], 7, created=1_700_000_000.0)
    histogram = HistogramMetricFamily("raylens_test_latency_seconds", "Latency.", labels=["route"])
    histogram.add_metric(["/"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], sum_value=2.5)
    # Text 0.0.4 moves _created, _gcount and _gsum samples to gauges of their own after the family.
    queued = GaugeHistogramMetricFamily("raylens_test_queued", "Queued.", [("1", 2), ("+Inf", 5)], gsum_value=3.5)
    temperature = GaugeMetricFamily("raylens_test_temperature", "Temperature.", value=21.5, unit="celsius")
    dotted = GaugeMetricFamily("raylens.dotted", "A UTF-8 name: prometheus_client renders it.", value=1)
    return [gauge, counter, histogram, queued, temperature, dotted]


class FixedCollector:
    def collect(self) -> Iterator[Metric]:
        yield from fixed_families()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Callable[..., Any]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FixedCollector())
    server = make_http_server("127.0.0.1", 0, make_app(registry, WebConfig(), ["test"]), WebConfig())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", make_wsgi_app(registry)
    finally:
        server.shutdown()
        server.server_close()


def reference(app: Callable[..., Any], method: str = "GET", query: str = "", **headers: str | None) -> tuple:
    """What prometheus_client's ``make_wsgi_app`` answers: status, headers, body (gzip undone)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/metrics", "QUERY_STRING": query}
    environ.update({key: value for key, value in headers.items() if value is not None})
    answered: list[Any] = []
    body = b"".join(app(environ, lambda status, response_headers: answered.extend([status, dict(response_headers)])))
    status, response_headers = answered
    if response_headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return int(status.split()[0]), response_headers.get("Content-Type"), response_headers.get("Content-Encoding"), body


def fetched(response: requests.Response) -> tuple:
    body = response.raw.read(decode_content=False)
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return response.status_code, response.headers.get("Content-Type"), response.headers.get("Content-Encoding"), body


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_negotiation_and_gzip_match_prometheus_client(served: tuple, accept: str | None, encoding: str | None) -> None:
    url, theirs = served
    # requests sends its own Accept and Accept-Encoding unless told otherwise; None leaves a header out.
    headers = {"Accept": accept, "Accept-Encoding": encoding}
    expected = reference(theirs, HTTP_ACCEPT=accept, HTTP_ACCEPT_ENCODING=encoding)
    for _ in range(2):  # cold, then warm
        response = requests.get(url, headers=headers, timeout=10, stream=True)  # type: ignore[arg-type]
        assert fetched(response) == expected
    assert (expected[2] == "gzip") == bool(encoding and "gzip" in encoding.lower())


def test_name_filter_options_and_other_methods_match_prometheus_client(served: tuple) -> None:
    url, theirs = served
    query = "name[]=raylens_test_requests_total&name[]=raylens_test_gauge"
    response = requests.get(f"{url}?{query}", headers=NO_GZIP, timeout=10, stream=True)  # type: ignore[arg-type]
    assert fetched(response) == reference(theirs, query=query)
    assert b"raylens_test_latency" not in reference(theirs, query=query)[3]
    for method in ("OPTIONS", "POST", "HEAD"):
        response = requests.request(method, url, headers=NO_GZIP, timeout=10, stream=True)  # type: ignore[arg-type]
        expected = reference(theirs, method)
        assert (response.status_code, response.headers.get("Allow")) == (expected[0], "OPTIONS,GET")
        if method != "HEAD":
            assert response.raw.read() == expected[3]

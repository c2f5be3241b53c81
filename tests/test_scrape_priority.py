"""Background work in the exporter waits while a scrape is served (raylens.scrape_priority)."""

from __future__ import annotations

import threading
import time

import requests

from raylens.ray.rows import read_rows
from raylens.scrape_priority import SCRAPES, ScrapePriority


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_background_work_resumes_only_after_the_scrape_ends() -> None:
    priority = ScrapePriority(max_wait_seconds=60)
    order: list[str] = []
    waited: list[bool] = []

    def background() -> None:
        waited.append(priority.yield_to_scrapes())
        order.append("background resumed")

    with priority.serving():
        worker = threading.Thread(target=background)
        worker.start()
        wait_until(lambda: priority.waiting == 1)
        order.append("scrape ended")
    worker.join(timeout=30)
    assert order == ["scrape ended", "background resumed"] and waited == [True]
    assert priority.waiting == 0 and priority.scrapes_in_progress == 0


def test_without_a_scrape_nothing_waits_and_a_scrape_never_waits_for_itself() -> None:
    priority = ScrapePriority(max_wait_seconds=60)
    assert priority.yield_to_scrapes() is False
    with priority.serving():
        assert priority.yield_to_scrapes() is False  # same thread: returns at once


def test_back_to_back_scrapes_delay_background_work_but_never_stop_it() -> None:
    priority = ScrapePriority(max_wait_seconds=0.05)
    done = threading.Event()
    waits: list[bool] = []

    def background() -> None:
        for _ in range(2000):  # rows of a listing, each a yield point
            waits.append(priority.yield_to_scrapes())
        done.set()

    with priority.serving():  # a scrape that never ends
        threading.Thread(target=background, daemon=True).start()
        assert done.wait(timeout=60), "background work starved by scrapes"
        assert priority.scrapes_in_progress == 1
    # A wait that ran out buys as long a stretch without waits: not one wait per row.
    assert waits[0] is True and sum(waits) < len(waits) / 10, sum(waits)


def test_a_listing_being_parsed_waits_for_a_scrape_of_the_exporter(tmp_path) -> None:
    """The real pieces: the exporter's HTTP server marks the scrape, the row reader yields to it."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    from raylens.web.server import make_app, make_http_server
    from raylens.web.webconfig import WebConfig

    in_scrape = threading.Event()
    release_scrape = threading.Event()

    class SlowCollector:
        def collect(self):
            in_scrape.set()
            release_scrape.wait(timeout=30)
            order.append("scrape collected")
            yield GaugeMetricFamily("raylens_test_gauge", "A test gauge.", value=1)

    registry = CollectorRegistry()
    registry.register(SlowCollector())
    server = make_http_server("127.0.0.1", 0, make_app(registry, WebConfig(), ["test"]), WebConfig())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    order: list[str] = []
    try:
        scrape = threading.Thread(target=lambda: requests.get(url, timeout=30).raise_for_status())
        scrape.start()
        assert in_scrape.wait(timeout=30)
        rows = [b'{"result": [', b'{"n": 1}, {"n": 2}', b"]}"]
        parser = threading.Thread(
            target=lambda: order.append(f"parsed {len(read_rows(rows, 'result', dict, 10, 1000).rows)}")
        )
        parser.start()
        wait_until(lambda: SCRAPES.waiting == 1)
        release_scrape.set()
        scrape.join(timeout=30)
        parser.join(timeout=30)
    finally:
        release_scrape.set()
        server.shutdown()
    assert order == ["scrape collected", "parsed 2"]


def test_full_collections_run_after_a_scrape_not_automatically() -> None:
    import gc

    from raylens.gc_schedule import NO_AUTOMATIC_FULL_COLLECTIONS, FullCollections

    priority = ScrapePriority(max_wait_seconds=60)
    thresholds = gc.get_threshold()
    full: list[str] = []

    def record(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(threading.current_thread().name)

    collections = FullCollections(priority, interval_seconds=0.01)
    gc.callbacks.append(record)
    collections.start()
    try:
        assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL_COLLECTIONS
        assert gc.get_freeze_count() > 0  # what start-up built is out of every later collection
        with priority.serving():
            full.clear()
            before = collections.collections
            time.sleep(0.1)  # many intervals: still nothing while the scrape runs
            assert full == [] and collections.collections == before
        wait_until(lambda: collections.collections > before)
        assert full and set(full) == {"gc-between-scrapes"}
    finally:
        collections.stop()
        gc.callbacks.remove(record)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0

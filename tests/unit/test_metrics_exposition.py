"""The /metrics exposition: a direct reader reads its writes, Prometheus may get a stand-in.

A real HTTP server (streams/web.py) on loopback with a registry whose collection is slow, the way
a national one is on a loaded machine.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from ketenmonitor.streams.web import CachedPart, MetricsServer
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from ketenmonitor.infra.worker_process import free_port


class SlowCounter:
    """A counter whose collection takes `delay` seconds and reads the value when it starts."""

    def __init__(self, delay: float) -> None:
        self.value = 0
        self.delay = delay
        self.fail = False

    def collect(self):
        value = self.value
        if self.fail:
            raise ValueError("a collector broke")
        time.sleep(self.delay)
        family = CounterMetricFamily("probe_events", "Events seen.")
        family.add_metric([], value)
        yield family


def read(port: int, headers: dict[str, str] | None = None) -> tuple[int, float | None]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, None
    for line in text.splitlines():
        if line.startswith("probe_events_total "):
            return status, float(line.split()[1])
    return status, None


@pytest.fixture
def served():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = CollectorRegistry(auto_describe=False)
    counter = SlowCounter(delay=0.3)
    registry.register(counter)

    class Healthy:
        def health_report(self):
            return {"healthy": True}

    server = MetricsServer(registry, Healthy(), "127.0.0.1", port, reuse_seconds=0.5)
    asyncio.run(server.start())
    try:
        yield port, counter
    finally:
        asyncio.run(server.stop())


def test_a_reader_without_a_scrape_timeout_sees_everything_applied_before_it_asked(served):
    port, counter = served
    for n in range(1, 6):
        counter.value = n
        assert read(port) == (200, n)
    # Also while a collection that started before the change is still running.
    counter.value = 10
    early = threading.Thread(target=read, args=(port,))
    early.start()
    time.sleep(0.1)
    counter.value = 11
    assert read(port) == (200, 11)
    early.join()


def test_prometheus_gets_the_newest_complete_collection_when_a_new_one_is_slow(served):
    port, counter = served
    counter.value = 1
    assert read(port) == (200, 1)
    counter.value = 2
    counter.delay = 3.0
    prometheus = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
    time.sleep(0.6)  # past reuse_seconds: a new collection starts and takes 3 s
    began = time.monotonic()
    assert read(port, prometheus) == (200, 1)  # the stand-in, after waiting 0.5 s
    assert time.monotonic() - began < 2.0
    time.sleep(3.0)
    assert read(port, prometheus) == (200, 2)  # never backwards, and now the new one


def test_a_failed_collection_is_a_clear_500_not_an_old_body(served):
    port, counter = served
    counter.value = 1
    assert read(port) == (200, 1)
    counter.fail = True
    assert read(port)[0] == 500
    counter.fail = False
    counter.value = 3
    assert read(port) == (200, 3)


class CountingCollector:
    """The chain part: counts its collections; `during` runs inside each one."""

    def __init__(self) -> None:
        self.value = 1
        self.collections = 0
        self.during = lambda: None

    def collect(self):
        self.collections += 1
        self.during()
        family = CounterMetricFamily("chain_events", "Chain events.")
        family.add_metric([], self.value)
        yield family


@pytest.fixture
def served_with_cached_part():
    port = free_port()
    chain = CountingCollector()
    version = {"key": 0}
    cached_registry = CollectorRegistry(auto_describe=False)
    cached_registry.register(chain)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SlowCounter(delay=0.0))

    class Healthy:
        def health_report(self):
            return {"healthy": True}

    server = MetricsServer(
        registry, Healthy(), "127.0.0.1", port, reuse_seconds=0.0,
        cached=CachedPart(cached_registry, lambda: version["key"]),
    )
    asyncio.run(server.start())
    try:
        yield port, chain, version
    finally:
        asyncio.run(server.stop())


def body(port: int, accept: str = "") -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_the_cached_part_is_encoded_once_per_key_and_both_parts_are_in_every_body(
    served_with_cached_part,
):
    port, chain, version = served_with_cached_part
    for _ in range(3):
        text = body(port)
        assert "chain_events_total 1.0" in text and "probe_events_total 0.0" in text
    assert chain.collections == 1
    chain.value = 2  # the source changed and then its key
    version["key"] += 1
    assert "chain_events_total 2.0" in body(port)
    assert chain.collections == 2


def test_an_openmetrics_body_of_two_parts_ends_in_one_eof(served_with_cached_part):
    port, _, _ = served_with_cached_part
    text = body(port, "application/openmetrics-text; version=1.0.0")
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    assert "chain_events_total 1.0" in text and "probe_events_total 0.0" in text


def test_an_encoding_whose_key_changed_while_it_ran_is_not_kept(served_with_cached_part):
    # An input that flips during a collection and back (the worker's "exports chain series"):
    # the encoding made under the flipped input must not be served under the original key.
    port, chain, version = served_with_cached_part

    def flip() -> None:
        chain.value, version["key"] = 2, 1

    chain.during = flip
    assert "chain_events_total 2.0" in body(port)
    chain.during = lambda: None
    chain.value, version["key"] = 1, 0  # back to the inputs of key 0
    assert "chain_events_total 1.0" in body(port)
    assert chain.collections == 2


def test_a_reader_that_accepts_gzip_gets_the_same_body_compressed(served_with_cached_part):
    port, _, _ = served_with_cached_part
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(response.read()).decode()
    assert "chain_events_total 1.0" in text and "probe_events_total 0.0" in text


def test_a_reader_that_names_series_gets_only_those_read_after_it_asked(served_with_cached_part):
    # prometheus_client's own `name[]` parameter: a frequent reader of one series (the live-
    # latency benchmark) gets that series from a collection of its own, never a cached encoding.
    port, chain, _version = served_with_cached_part
    assert "chain_events_total 1.0" in body(port)  # the chain part encoded and kept
    url = f"http://127.0.0.1:{port}/metrics?name[]=chain_events_total"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    assert "chain_events_total 1.0" in text and "probe_events" not in text
    chain.value = 2  # changed, its key not (yet): the named read sees it, the cached body not
    with urllib.request.urlopen(url, timeout=30) as response:
        assert "chain_events_total 2.0" in response.read().decode()
    assert "chain_events_total 1.0" in body(port)
    both = url + "&name[]=probe_events_total"
    request = urllib.request.Request(
        both, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    assert "chain_events_total 2.0" in text and "probe_events_total 0.0" in text
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")

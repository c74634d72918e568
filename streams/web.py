"""The worker's HTTP endpoints: /metrics and /healthz, served from threads of their own.

    server = MetricsServer(registry, health_source, "127.0.0.1", 9464)
    await server.start(); ...; await server.stop()

/metrics is prometheus_client's own exposition: the format is negotiated from the Accept header
(Prometheus text or OpenMetrics, `choose_encoder`) and the body is gzip-compressed when the scraper
accepts it (Prometheus always does). The collectors read immutable records and counters
(streams/totals.py), never structures being changed mid-read.

Why threads and not the worker's event loop: a scrape must not wait for the loop. A restore, a
large batch or a loaded machine keeps the loop busy for seconds, and a scrape that times out is a
gap, after which Prometheus marks every series stale: the true-numbers test, run at load 19,
showed three quarters of its 1-second scrapes failing, and windows computed from what was left.
The HTTP server here (the standard library's ThreadingHTTPServer) gets its turns from the GIL
whatever the loop does.

And a scrape does not wait for a slow collection either (a national one costs most of a
CPU-second, more on a loaded machine): a collection younger than `reuse_seconds` is shared (two
Prometheus servers, a dashboard probe); otherwise a new one starts, and the scrape waits for it at
most half the scrape timeout Prometheus announces (header X-Prometheus-Scrape-Timeout-Seconds),
then answers with the newest complete one if that one started at most MAX_STAND_IN_AGE seconds
ago (else it waits for the new one). Bodies only ever move forward in time, so every scraper sees
counters that never go down; what it reads is at most a few seconds older. A reader that does not
announce a scrape timeout (a person with curl, a test, a probe) always gets a collection that
started after it asked: it reads everything the worker applied before (a test that waits until
the worker has committed the input, then reads /metrics, must see all of it).

The chain's series are most of a collection's cost (a national one: 50k series, three quarters of
it prometheus_client's encoding) and change only when the totals view takes a record: they are a
`CachedPart`, encoded once per value of its key (the view's version, whether the worker exports,
the age reference to the second) and reused by every collection until the key changes. A frequent
reader (the live-latency benchmark, two Prometheus servers) then costs the worker little more than
the worker's own few series.

`/metrics?name[]=a&name[]=b` (prometheus_client's own parameter) answers with only the families
and samples named, collected for that reader alone: a frequent reader of one series costs the
worker a collect, not an encoding of the chain.

/healthz answers 200 while the worker is healthy and 503 otherwise, with the reasons as JSON; the
same fact is the gauge `up`-like `ketenmonitor_worker_healthy` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

MAX_STAND_IN_AGE = 5.0  # seconds: an older collection is not served in place of a new one


class HealthSource(Protocol):
    def health_report(self) -> dict[str, Any]:
        """{"healthy": bool, ...}: what /healthz shows."""
        ...


_OPENMETRICS_EOF = b"# EOF\n"


class Body:
    """A collected exposition; compressed once, when a reader first asks for gzip (Prometheus
    does; curl and the benchmarks' readers do not)."""

    __slots__ = ("_zipped", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._zipped: bytes | None = None

    def zipped(self) -> bytes:
        if self._zipped is None:  # two readers at once may both compress: same bytes
            self._zipped = gzip.compress(self.raw, compresslevel=6)
        return self._zipped


@dataclass
class CachedPart:
    """Collectors whose exposition is a function of `key()`: encoded again only when the key
    changes. A source changes its key after it changed, never before; an encoding is kept only
    when the key read before it equals the key read after it."""

    registry: CollectorRegistry
    key: Callable[[], Hashable]


class Exposition:
    """The newest collected bodies per content type, and at most one collection under way each.

    A body is the `cached` part's exposition (reused while its key holds) followed by the
    `registry`'s (collected every time)."""

    def __init__(
        self, registry: CollectorRegistry, reuse_seconds: float, cached: CachedPart | None = None
    ) -> None:
        self.registry = registry
        self.cached = cached
        # content type -> (key, the cached part's encoding without an OpenMetrics EOF line)
        self._cached_body: dict[str, tuple[Hashable, bytes]] = {}
        self.reuse_seconds = reuse_seconds
        self._lock = threading.Lock()
        # content type -> (collection started at, body)
        self._latest: dict[str, tuple[float, Body]] = {}
        # content type -> (started at, set when done) of the collection under way
        self._collecting: dict[str, tuple[float, threading.Event]] = {}

    def body(self, accept: str, wait: float | None) -> tuple[str, Body]:
        """(content type, body).

        `wait` None (a reader that is not Prometheus: a person, a test, a probe): a collection
        that started after this call, so a reader sees everything applied before it asked.
        `wait` in seconds (Prometheus, which announced its timeout): a shared recent collection,
        a new one if it is ready within `wait`, else the newest complete one while it is recent.
        """
        asked = time.monotonic()
        encoder, content_type = choose_encoder(accept)
        while True:
            with self._lock:
                latest = self._latest.get(content_type)
                if latest is not None and (
                    latest[0] >= asked if wait is None
                    else time.monotonic() - latest[0] < self.reuse_seconds
                ):
                    return content_type, latest[1]
                running = self._collecting.get(content_type)
                if running is None:
                    running = self._collecting[content_type] = (time.monotonic(), threading.Event())
                    threading.Thread(
                        target=self._collect, args=(encoder, content_type, *running),
                        name="metrics-collect", daemon=True,
                    ).start()
            started, done = running
            if wait is None:
                done.wait()
                self._raise_if_failed(content_type, started)
                continue  # started before the call: the next one is the reader's
            # The newest complete collection stands in only while it is recent: a scraper that
            # comes rarely (a 30 s interval) waits for the new one.
            stand_in = latest is not None and time.monotonic() - latest[0] <= MAX_STAND_IN_AGE
            if done.wait(wait if stand_in else None):
                self._raise_if_failed(content_type, started)
            with self._lock:
                latest = self._latest[content_type]
            return content_type, latest[1]

    def restricted(self, accept: str, names: list[str]) -> tuple[str, bytes]:
        """(content type, body) of only the metric families and samples named (the `name[]`
        parameters of prometheus_client's own handler), collected now for this reader: neither
        shared nor kept. A frequent reader of one series (the live-latency benchmark) costs the
        worker the collect, not an encoding of the whole chain."""
        encoder, content_type = choose_encoder(accept)
        wanted = frozenset(names)
        body = b""
        if self.cached is not None:
            body = _without_eof(encoder(_Named(self.cached.registry, wanted)))
        return content_type, body + encoder(_Named(self.registry, wanted))

    def _raise_if_failed(self, content_type: str, started: float) -> None:
        with self._lock:
            latest = self._latest.get(content_type)
        if latest is None or latest[0] < started:
            raise RuntimeError("the collection failed (see the worker's log)")

    def _collect(
        self, encoder: Any, content_type: str, started: float, done: threading.Event
    ) -> None:
        try:
            body = Body(self._cached_encoding(encoder, content_type) + encoder(self.registry))
            with self._lock:
                self._latest[content_type] = (started, body)
        except Exception:
            log.exception("collecting /metrics failed")
        finally:
            with self._lock:
                del self._collecting[content_type]
            done.set()


    def _cached_encoding(self, encoder: Any, content_type: str) -> bytes:
        if self.cached is None:
            return b""
        key = self.cached.key()
        with self._lock:
            held = self._cached_body.get(content_type)
        if held is not None and held[0] == key:
            return held[1]
        body = _without_eof(encoder(self.cached.registry))
        if self.cached.key() == key:  # kept only if its inputs held during the collection
            with self._lock:
                self._cached_body[content_type] = (key, body)
        return body


def _without_eof(body: bytes) -> bytes:
    """The cached part's encoding without OpenMetrics' EOF line: one EOF, at the end of the
    whole body."""
    return body[: -len(_OPENMETRICS_EOF)] if body.endswith(_OPENMETRICS_EOF) else body


class _Named:
    """A registry's collection with only the samples named (prometheus_client's own
    `restricted_registry` leaves out collectors that do not describe themselves, as the
    worker's do not)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            samples = [sample for sample in family.samples if sample.name in self.names]
            if samples:
                named = Metric(family.name, family.documentation, family.type, family.unit)
                named.samples = samples
                yield named


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthSource,
        host: str,
        port: int,
        reuse_seconds: float = 0.5,
        cached: CachedPart | None = None,
    ) -> None:
        self.exposition = Exposition(registry, reuse_seconds, cached)
        self.health = health
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        server_class = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        server = server_class((self.host, self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http",
            daemon=True,
        )
        self._thread.start()

    async def stop(self) -> None:
        if self._server is None:
            return
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        self._server = None

    def health_report(self) -> dict[str, Any]:
        """The health source's report, read from this thread while the loop may change what it
        reads: a dict changed mid-read is read again."""
        for _ in range(3):
            try:
                return self.health.health_report()
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
        return self.health.health_report()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                report = server.health_report()
                body = json.dumps(report).encode()
                self._send(200 if report.get("healthy") else 503, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _metrics(self) -> None:
            names = parse_qs(urlsplit(self.path).query).get("name[]")
            if names:
                content_type, raw = server.exposition.restricted(
                    self.headers.get("Accept", ""), names
                )
                self._send(200, content_type, raw)
                return
            announced = self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
            try:
                wait = float(announced) / 2 if announced else None
            except ValueError:
                wait = None
            try:
                content_type, body = server.exposition.body(
                    self.headers.get("Accept", ""), wait
                )
            except RuntimeError as exc:
                self._send(500, "text/plain", f"{exc}\n".encode())
                return
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, content_type, body.zipped(), {"Content-Encoding": "gzip"})
            else:
                self._send(200, content_type, body.raw)

        def _send(
            self, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no access log (scrapes every second)

    return Handler

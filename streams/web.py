"""The worker's HTTP endpoints: /metrics and /healthz.

    server = MetricsServer(registry, health_source, "127.0.0.1", 9464)
    await server.start(); ...; await server.stop()

/metrics is prometheus_client's own exposition: the format is negotiated from the Accept header
(Prometheus text or OpenMetrics, `choose_encoder`) and the body is gzip-compressed when the scraper
accepts it (Prometheus always does). The registry is collected in a thread so that a large scrape
(national dimensions: see docs/metrics.md) does not hold up the event loop; the collectors read
immutable records and counters (streams/totals.py), never structures being changed mid-read.

/healthz answers 200 while the worker is healthy and 503 otherwise, with the reasons as JSON; the
same fact is the gauge `up`-like `ketenmonitor_worker_healthy` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


class HealthSource(Protocol):
    def health_report(self) -> dict[str, Any]:
        """{"healthy": bool, ...}: what /healthz shows."""
        ...


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthSource,
        host: str,
        port: int,
        reuse_seconds: float = 0.5,
    ) -> None:
        self.registry = registry
        # Scrapes within `reuse_seconds` of each other (two Prometheus servers, a dashboard
        # probe) share one collection: a national scrape costs most of a CPU-second.
        self.reuse_seconds = reuse_seconds
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._collecting: dict[str, asyncio.Future[bytes]] = {}
        self.health = health
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        cached = self._cache.get(content_type)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.reuse_seconds:
            body = cached[1]
        elif content_type in self._collecting:  # a collection is under way: share it
            body = await asyncio.shield(self._collecting[content_type])
        else:
            future = asyncio.get_running_loop().create_future()
            self._collecting[content_type] = future
            try:
                body = await asyncio.to_thread(encoder, self.registry)
                future.set_result(body)
                self._cache[content_type] = (now, body)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: only the waiting scrapes raise it
                raise
            finally:
                del self._collecting[content_type]
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()  # gzip or deflate, as Accept-Encoding asks; else plain
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        report = self.health.health_report()
        return web.json_response(report, status=200 if report.get("healthy") else 503)

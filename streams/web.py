"""The worker's HTTP endpoints: /metrics (Prometheus text format) and /healthz.

    server = MetricsServer(worker, "127.0.0.1", 9464)
    await server.start(); ...; await server.stop()

/metrics is computed at scrape time from the tables of the partitions the worker owns
(streams/metrics.py): it runs on the worker's event loop, between batches, so a scrape always sees
whole batches.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.metrics import ChainCollector

if TYPE_CHECKING:
    from streams.worker import Worker


class MetricsServer:
    def __init__(self, worker: Worker, host: str, port: int) -> None:
        self.worker = worker
        self.host, self.port = host, port
        settings = worker.settings
        self.registry = CollectorRegistry()
        self.registry.register(
            ChainCollector(
                worker.chain,
                worker.owned_state,
                lambda: settings.age_reference_timestamp(time.time()),
            )
        )
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
        return web.Response(
            body=generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    async def healthz(self, request: web.Request) -> web.Response:
        worker = self.worker
        return web.json_response(
            {"ok": True, "ready": worker.ready.is_set(), "owned_partitions": len(worker.owned)}
        )

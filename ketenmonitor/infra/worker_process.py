"""Run `ketenmonitor worker` as a real child process and read its /metrics.

    with WorkerProcess(env={"KETENMONITOR_KAFKA_BOOTSTRAP": "127.0.0.1:19092", ...}) as worker:
        worker.wait_ready()
        samples = worker.scrape()          # {(name, frozenset(labels.items())): value}

Used by the demo, the integration tests and the benchmarks: the same command a user runs.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from prometheus_client.parser import text_string_to_metric_families

from ketenmonitor.infra.script_server import StartStopContext

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# Ports handed to a child server come from below the kernel's ephemeral range: a port from that
# range, free when checked, can be taken by any outgoing connection before the child binds it (a
# demo's Kafka died of that in CI). The fixed test ports (19092.., 19300..) stay below this floor.
_LISTEN_PORT_FLOOR = 22000
_random = random.Random()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (never one below it)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(consecutive: int = 1) -> int:
    """A port on 127.0.0.1 that a child server can listen on, and the `consecutive - 1` after it.

    Each is checked by binding it (a connect test misses a port held by an outgoing connection).
    """
    ceiling = _ephemeral_low() - consecutive
    for _ in range(500):
        if ceiling > _LISTEN_PORT_FLOOR:
            port = _random.randint(_LISTEN_PORT_FLOOR, ceiling)
        else:  # an unusual ephemeral range: let the kernel choose and check the ones after it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        if all(_bindable(port + i) for i in range(consecutive)):
            return port
    raise RuntimeError(f"no {consecutive} free consecutive port(s) found on 127.0.0.1")


class WorkerProcess(StartStopContext):
    def __init__(
        self,
        env: Mapping[str, str],
        metrics_port: int | None = None,
        log_path: Path | None = None,
        loglevel: str = "info",
    ) -> None:
        self.metrics_port = metrics_port or free_port()
        self.env = {**os.environ, **env, "KETENMONITOR_METRICS_PORT": str(self.metrics_port)}
        self.log_path = log_path
        self.loglevel = loglevel
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Self:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._log = out if self.log_path else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ketenmonitor.cli", "worker", "--loglevel", self.loglevel],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until /metrics answers (the worker's web server is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self._tail()}")
            try:
                self.scrape_text()
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout}s: {self._tail()}")

    def scrape_text(self, names: tuple[str, ...] = ()) -> str:
        """/metrics; only the samples `names` (the `name[]` parameter) when given."""
        query = "&".join(f"name[]={name}" for name in names)
        url = f"{self.metrics_url}?{query}" if query else self.metrics_url
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def scrape(self) -> Samples:
        return parse_samples(self.scrape_text())

    def kill(self) -> None:
        """kill -9: no clean shutdown, no final commit."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log:
            self._log.close()
            self._log = None

    def _tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-3000:]
        return "(no log)"


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def sum_samples(all_samples: list[Samples]) -> Samples:
    total: Samples = {}
    for samples in all_samples:
        for key, value in samples.items():
            total[key] = total.get(key, 0.0) + value
    return total

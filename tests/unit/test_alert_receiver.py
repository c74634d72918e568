"""deploy/compose/alert_receiver.py, the compose stack's webhook receiver, as a real process.

An Alertmanager-shaped notification is posted to it; it answers, logs one JSON line, and forwards
the body to ALERT_FORWARD_URL (a server in this test); a forward that fails is answered with 502,
so that Alertmanager retries.

Run: .venv/bin/pytest tests/unit/test_alert_receiver.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ketenmonitor.infra.worker_process import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "alert_receiver.py"
NOTIFICATION = {
    "version": "4",
    "status": "firing",
    "receiver": "partner-om",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "KetenmonitorNormBreach", "severity": "critical",
                   "organisation": "om"},
        "annotations": {"summary": "Jeugdnorm OM buiten norm"},
    }],
}


class Relay:
    """A stand-in for a chat or mail relay: records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                relay.received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_receiver(forward_url: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "ALERT_RECEIVER_PORT": str(port),
             "ALERT_FORWARD_URL": forward_url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                assert r.status == 200
                return process, port
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the receiver did not answer /healthz"
            time.sleep(0.1)


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    yield relay
    relay.server.shutdown()


def post(port: int, path: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body,
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_notification_is_logged_and_forwarded(relay: Relay) -> None:
    process, port = start_receiver(f"http://127.0.0.1:{relay.port}/hook/{{receiver}}")
    try:
        body = json.dumps(NOTIFICATION).encode()
        assert post(port, "/alerts/partner-om", body) == 200
        assert post(port, "/alerts/partner-om", b"not json") == 400
        assert post(port, "/elsewhere", body) == 404
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert relay.received == [("/hook/partner-om", body)]
    (line,) = out.splitlines()
    logged = json.loads(line)
    assert logged["receiver"] == "partner-om" and logged["status"] == "firing"
    assert logged["alerts"][0]["alertname"] == "KetenmonitorNormBreach"
    assert logged["alerts"][0]["organisation"] == "om"


def test_a_failed_forward_is_answered_with_an_error_so_alertmanager_retries() -> None:
    closed = free_port()  # nothing listens there
    process, port = start_receiver(f"http://127.0.0.1:{closed}/hook")
    try:
        assert post(port, "/alerts/sg-urgent", json.dumps(NOTIFICATION).encode()) == 502
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert "forward_failed" in out

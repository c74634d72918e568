"""The webhook receiver of the docker-compose stack: where Alertmanager's notifications arrive.

    python alert_receiver.py                   # listens on 0.0.0.0:9099 (ALERT_RECEIVER_PORT)
    POST /alerts/<receiver>   Alertmanager's webhook JSON; logged, and forwarded if configured
    GET  /healthz             200 while it runs (the compose healthcheck)

Each notification is logged as one JSON line on stdout (`docker-compose logs alert-receiver`):
receiver, status and per alert its name, severity, organisation and summary. With
ALERT_FORWARD_URL set (e.g. a chat or mail relay; `{receiver}` is replaced by the receiver name),
the original body is forwarded there as well; a forward that fails is logged and answered with
502 so that Alertmanager retries. Standard library only: it runs in the ketenmonitor image.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20  # Alertmanager groups are small; refuse anything absurd


def summary(receiver: str, body: dict) -> dict:
    return {
        "receiver": receiver,
        "status": body.get("status"),
        "alerts": [
            {
                "alertname": a.get("labels", {}).get("alertname"),
                "severity": a.get("labels", {}).get("severity"),
                "organisation": a.get("labels", {}).get("organisation"),
                "status": a.get("status"),
                "summary": a.get("annotations", {}).get("summary"),
            }
            for a in body.get("alerts", [])
        ],
    }


class Handler(BaseHTTPRequestHandler):
    forward_url: str | None = os.environ.get("ALERT_FORWARD_URL") or None

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404)

    def do_POST(self) -> None:
        if not self.path.startswith("/alerts/"):
            self._answer(404)
            return
        receiver = self.path.removeprefix("/alerts/")
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._answer(400)
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(400)
            return
        print(json.dumps(summary(receiver, body), ensure_ascii=False), flush=True)
        if self.forward_url:
            url = self.forward_url.replace("{receiver}", receiver)
            request = urllib.request.Request(
                url, data=raw, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10):
                    pass
            except (urllib.error.URLError, OSError) as exc:
                print(json.dumps({"forward_failed": url, "error": str(exc)}), flush=True)
                self._answer(502)
                return
        self._answer(200)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # one JSON line per notification is the log


def main() -> None:
    port = int(os.environ.get("ALERT_RECEIVER_PORT", "9099"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"alert receiver on :{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

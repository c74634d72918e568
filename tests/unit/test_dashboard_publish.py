"""`ketenmonitor dashboards publish` against an HTTP server playing the few Grafana endpoints used.

No Grafana can run on these machines, so the test serves GET /api/health, GET /api/folders/<uid>,
POST /api/folders and POST /api/dashboards/db itself (shapes as in Grafana's HTTP API docs) and
checks every request the publisher makes, the Authorization header included.

Run: .venv/bin/pytest tests/unit/test_dashboard_publish.py
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ketenmonitor.dashboards.build import JSON_DIR
from ketenmonitor.dashboards.publish import (
    COMMIT_MESSAGE,
    GrafanaAuthError,
    GrafanaTarget,
    GrafanaUnreachableError,
    load_boards,
    publish,
)

from ketenmonitor.cli import main
from ketenmonitor.infra.worker_process import free_port

TOKEN = "glsa_test_token_0123456789"
FOLDER_UID = "ketenmonitor"


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeGrafana:
    """What the server received and holds: folders by uid, dashboards by uid."""

    token: str = TOKEN
    requests: list[Request] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, auth, body))
        if (method, path) == ("GET", "/api/health"):
            return 200, {"commit": "test", "database": "ok", "version": "11.5.2"}
        if auth != f"Bearer {self.token}":
            return 401, {"message": "invalid API key"}
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            return 200, {"uid": uid, "title": self.folders[uid]}
        if (method, path) == ("POST", "/api/folders"):
            if body["uid"] in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = body["title"]
            return 200, {"uid": body["uid"], "title": body["title"]}
        if (method, path) == ("POST", "/api/dashboards/db"):
            board = body["dashboard"]
            if board["uid"] in self.dashboards and not body.get("overwrite"):
                return 412, {"message": "version-mismatch", "status": "version-mismatch"}
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            self.dashboards[board["uid"]] = body
            self.versions[board["uid"]] = self.versions.get(board["uid"], 0) + 1
            return 200, {
                "id": len(self.dashboards),
                "uid": board["uid"],
                "url": f"/d/{board['uid']}/x",
                "status": "success",
                "version": self.versions[board["uid"]],
            }
        return 404, {"message": "not found"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = state.handle(
                self.command, self.path, self.headers.get("Authorization"), body
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def boards() -> list[dict[str, Any]]:
    return load_boards(JSON_DIR)


def test_publish_creates_the_folder_then_writes_every_dashboard(grafana: FakeGrafana) -> None:
    results = publish(boards(), GrafanaTarget(grafana.url, TOKEN))

    assert {r.uid for r in results} == {b["uid"] for b in boards()}
    steps = [(r.method, r.path) for r in grafana.requests]
    assert steps[:3] == [
        ("GET", "/api/health"),
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/folders"),
    ]
    assert steps[3:] == [("POST", "/api/dashboards/db")] * len(boards())
    assert all(r.authorization == f"Bearer {TOKEN}" for r in grafana.requests)
    assert grafana.requests[2].body == {"uid": FOLDER_UID, "title": "Ketenmonitor"}
    for request in grafana.requests[3:]:
        assert request.body["overwrite"] is True
        assert request.body["folderUid"] == FOLDER_UID
        assert request.body["message"] == COMMIT_MESSAGE
        assert request.body["dashboard"]["id"] is None
    by_uid = {b["uid"]: b for b in boards()}
    for uid, stored in grafana.dashboards.items():
        sent = {k: v for k, v in stored["dashboard"].items() if k != "id"}
        assert sent == by_uid[uid]  # the generated JSON, unchanged but for the id


def test_published_dashboards_have_their_import_inputs_bound_to_the_provisioned_uids() -> None:
    for board in boards():
        text = json.dumps(board)
        assert "__inputs" not in board and "${DS_" not in text, board["uid"]
        sources = {v["name"]: v["current"]["value"] for v in board["templating"]["list"]
                   if v["type"] == "datasource"}
        assert set(sources.values()) <= {"ketenmonitor-prometheus", "ketenmonitor-store"}
        assert sources, board["uid"]


def test_publishing_twice_overwrites_by_uid_and_reuses_the_folder(grafana: FakeGrafana) -> None:
    target = GrafanaTarget(grafana.url, TOKEN)
    publish(boards(), target)
    first_run = len(grafana.requests)
    results = publish(boards(), target)

    second = [(r.method, r.path) for r in grafana.requests[first_run:]]
    assert ("POST", "/api/folders") not in second
    assert len(grafana.dashboards) == len(boards())
    assert len(grafana.folders) == 1
    assert {r.version for r in results} == {2}


def test_a_refused_token_is_reported_as_such(grafana: FakeGrafana) -> None:
    with pytest.raises(GrafanaAuthError, match=r"refused the token \(401"):
        publish(boards(), GrafanaTarget(grafana.url, "wrong-token"))
    assert not grafana.dashboards
    assert grafana.requests[-1].authorization == "Bearer wrong-token"


def test_an_unreachable_grafana_is_reported_as_such() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(GrafanaUnreachableError, match=re.escape(f"{url} is unreachable")):
        publish(boards(), GrafanaTarget(url, TOKEN, timeout=2.0))


def test_the_command_reads_url_and_token_from_the_environment(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KETENMONITOR_GRAFANA_URL", grafana.url)
    monkeypatch.setenv("KETENMONITOR_GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("KETENMONITOR_GRAFANA_FOLDER", "Strafrechtketen")

    assert main(["dashboards", "publish"]) == 0

    assert grafana.folders == {FOLDER_UID: "Strafrechtketen"}
    assert len(grafana.dashboards) == len(boards())
    assert TOKEN not in capsys.readouterr().out


def test_the_command_fails_with_a_clear_message(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KETENMONITOR_GRAFANA_TOKEN", "wrong-token")
    assert main(["dashboards", "publish", "--url", grafana.url]) == 1
    assert "refused the token" in capsys.readouterr().err

    monkeypatch.delenv("KETENMONITOR_GRAFANA_TOKEN")
    monkeypatch.delenv("KETENMONITOR_GRAFANA_URL", raising=False)
    assert main(["dashboards", "publish"]) == 1
    assert "KETENMONITOR_GRAFANA_URL" in capsys.readouterr().err

"""Upload the dashboards to a Grafana through its HTTP API (grafana-client).

    export KETENMONITOR_GRAFANA_URL=https://grafana.example.org
    export KETENMONITOR_GRAFANA_TOKEN=glsa_...        # a service-account token (Editor)
    ketenmonitor dashboards publish                   # built from the configured chain
    ketenmonitor dashboards publish --json-dir dashboards/json

    results = publish(boards, GrafanaTarget(url, token))    # from Python

The files carry `__inputs` (${DS_PROMETHEUS}, ${DS_STORE}) for Grafana's import form; this API
does not fill them in, so the publisher binds them to the provisioned data-source uids first.
Idempotent: every dashboard has a fixed uid and is written with overwrite=True into one folder
(created on first use, found by its uid afterwards), so publishing twice leaves one copy of each.
Grafana that cannot be reached, or that refuses the token, stops the run with a message that says
which of the two it is. The token is read from the environment only, never from the command line,
where it would show up in the process list and the shell history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError
from ketenmonitor.dashboards.datasources import bind_inputs
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FOLDER = "Ketenmonitor"
DEFAULT_FOLDER_UID = "ketenmonitor"
COMMIT_MESSAGE = "ketenmonitor dashboards publish"


class GrafanaSettings(BaseSettings):
    """Where to publish: KETENMONITOR_GRAFANA_URL, _TOKEN, _FOLDER, _FOLDER_UID, _TIMEOUT."""

    model_config = SettingsConfigDict(env_prefix="KETENMONITOR_GRAFANA_", frozen=True)

    url: str | None = None
    token: SecretStr | None = None
    folder: str = DEFAULT_FOLDER
    folder_uid: str = DEFAULT_FOLDER_UID
    timeout: float = 10.0


class PublishError(RuntimeError):
    """Publishing failed; the message says what to check."""


class GrafanaUnreachableError(PublishError):
    """No answer from Grafana at the configured URL (wrong URL, down, network, timeout)."""


class GrafanaAuthError(PublishError):
    """Grafana answered but refused the token (401), or the token may not do this (403)."""


@dataclass(frozen=True)
class GrafanaTarget:
    url: str
    token: str
    folder: str = DEFAULT_FOLDER
    folder_uid: str = DEFAULT_FOLDER_UID
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: GrafanaSettings, url: str | None = None) -> GrafanaTarget:
        url = url or settings.url
        if not url:
            raise PublishError("no Grafana URL: set KETENMONITOR_GRAFANA_URL (or pass --url)")
        if settings.token is None:
            raise PublishError(
                "no Grafana token: set KETENMONITOR_GRAFANA_TOKEN to a service-account token"
            )
        return cls(url, settings.token.get_secret_value(), settings.folder,
                   settings.folder_uid, settings.timeout)


@dataclass(frozen=True)
class Published:
    uid: str
    title: str
    version: int | None
    url: str | None


def publish(dashboards: Iterable[dict[str, Any]], target: GrafanaTarget) -> list[Published]:
    """Check that Grafana answers, make sure the folder exists, then write every dashboard."""
    api = GrafanaApi.from_url(target.url, credential=target.token, timeout=target.timeout)
    _call(target, "GET /api/health", lambda: api.client.GET("/health"))
    _ensure_folder(api, target)
    results = []
    for board in dashboards:
        payload = {
            # id None: Grafana matches on uid, so this creates or overwrites the same dashboard.
            "dashboard": {**board, "id": None},
            "folderUid": target.folder_uid,
            "overwrite": True,
            "message": COMMIT_MESSAGE,
        }
        answer = _call(
            target,
            f"POST /api/dashboards/db ({board.get('uid')})",
            lambda payload=payload: api.dashboard.update_dashboard(payload),
        )
        title = board.get("title", "")
        results.append(Published(board["uid"], title, answer.get("version"), answer.get("url")))
    return results


def _ensure_folder(api: GrafanaApi, target: GrafanaTarget) -> None:
    try:
        api.folder.get_folder(target.folder_uid)
        return
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            _raise_for(target, f"GET /api/folders/{target.folder_uid}", exc)
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        _raise_for(target, f"GET /api/folders/{target.folder_uid}", exc)
    _call(
        target,
        "POST /api/folders",
        lambda: api.folder.create_folder(target.folder, uid=target.folder_uid),
    )


def _call(target: GrafanaTarget, what: str, request: Any) -> Any:
    try:
        return request()
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        _raise_for(target, what, exc)


def _raise_for(target: GrafanaTarget, what: str, exc: Exception) -> None:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        raise GrafanaAuthError(
            f"Grafana at {target.url} refused the token ({status} on {what}): check "
            "KETENMONITOR_GRAFANA_TOKEN; it needs a service account with the Editor role"
        ) from None
    if isinstance(exc, GrafanaTimeoutError | niquests.exceptions.RequestException) or not status:
        raise GrafanaUnreachableError(
            f"Grafana at {target.url} is unreachable ({what}): {exc}; check "
            "KETENMONITOR_GRAFANA_URL and that Grafana runs"
        ) from None
    raise PublishError(f"Grafana at {target.url} answered {status} on {what}: {exc}") from None


# -- command line --------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dashboards", help="Grafana dashboards: build and publish")
    commands = parser.add_subparsers(dest="dashboards_command", required=True)
    p = commands.add_parser(
        "publish",
        help="upload the dashboards to Grafana (KETENMONITOR_GRAFANA_URL and _TOKEN)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--url", default=None, help="Grafana URL (default: KETENMONITOR_GRAFANA_URL)")
    p.add_argument(
        "--json-dir", type=Path, default=None,
        help="publish these JSON files instead of building from the configured chain",
    )
    p.set_defaults(func=cmd_publish)
    p = commands.add_parser("build", help="write the dashboard JSON files")
    # Relative to the current directory, never the installed package (site-packages).
    p.add_argument("--output", type=Path, default=Path("dashboards/json"),
                   help="folder for the JSON files, created if missing")
    p.set_defaults(func=cmd_build)


def load_boards(json_dir: Path | None) -> list[dict[str, Any]]:
    if json_dir is not None:
        files = sorted(json_dir.glob("*.json"))
        if not files:
            raise PublishError(f"no dashboard JSON files in {json_dir}")
        return [bind_inputs(json.loads(f.read_text(encoding="utf-8"))) for f in files]
    from ketenmonitor.dashboards.build import build_all

    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.settings import Settings

    chain = load_chain(Settings().chain_file)
    return [bind_inputs(board.to_json()) for board in build_all(chain).values()]


def cmd_publish(args: argparse.Namespace) -> int:
    try:
        target = GrafanaTarget.from_settings(GrafanaSettings(), url=args.url)
        results = publish(load_boards(args.json_dir), target)
    except PublishError as exc:
        print(f"ketenmonitor dashboards publish: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"published {r.uid} ({r.title}) version {r.version} at {r.url}")
    print(f"{len(results)} dashboards in folder {target.folder!r} of {target.url}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ketenmonitor.dashboards.build import write_all

    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.settings import Settings

    for path in write_all(load_chain(Settings().chain_file), args.output):
        print(f"wrote {path}")
    return 0

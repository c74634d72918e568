"""A dashboard as grafana-foundation-sdk builds it, plus what makes it importable anywhere.

    board = dashboard(OVERVIEW, "Ketenoverzicht", "...", rows, links=(...))
    board.to_json()    # Grafana's dashboard JSON, with __inputs and __requires

The SDK builds the dashboard model (schemaVersion, panels, templating); `__inputs` (which data
sources the import form asks for) and `__requires` (plugins and Grafana version) belong to the
exported file rather than to the model, so they are added here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from ketenmonitor.dashboards.datasources import PROMETHEUS, Source
from ketenmonitor.dashboards.panels import Link, layout

GRAFANA_VERSION = "11.0.0"  # the oldest Grafana the SDK version in pyproject targets


@dataclass(frozen=True)
class Board:
    builder: d.Dashboard
    sources: tuple[Source, ...]

    def model(self) -> dm.Dashboard:
        return self.builder.build()

    def to_json(self) -> dict[str, Any]:
        model: dict[str, Any] = json.loads(json.dumps(self.model(), cls=JSONEncoder))
        panel_types = sorted({p["type"] for p in model.get("panels", [])})
        requires = [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            *({"type": "datasource", "id": s.plugin, "name": s.plugin_name, "version": ""}
              for s in self.sources),
            *({"type": "panel", "id": t, "name": t, "version": ""} for t in panel_types),
        ]
        return {
            "__inputs": [s.input_json() for s in self.sources],
            "__requires": requires,
            **model,
        }


def dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Sequence[cogbuilder.Builder[dm.Panel]]],
    *,
    source: Source = PROMETHEUS,
    variables: Sequence[cogbuilder.Builder[dm.VariableModel]] = (),
    links: Sequence[Link] = (),
    time_from: str = "now-30d",
    refresh: str = "1m",
) -> Board:
    """A dashboard of `rows`, reading from `source` through its datasource variable."""
    builder = (
        d.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["ketenmonitor"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .timezone("browser")
        .refresh(refresh)
        .version(1)
        .annotations([])
        .variables([source.variable_builder(), *variables])
        .links([link.builder() for link in links])
    )
    layout(builder, rows)
    return Board(builder, (source,))

"""A small typed model of Grafana dashboards, rendered to dashboard JSON (schemaVersion 39).

    panel = Panel("stat", "Werkvoorraad keten", "Zaken die nu in een fase wachten ...",
                  unit="short", queries=(PromQuery("sum(ketenmonitor_backlog_cases)"),))
    board = Dashboard(uid="ketenoverzicht", title="Ketenoverzicht", rows=((panel, other),))
    json.dumps(board.to_json())

Only what Ketenmonitor's dashboards use is modelled, so that every panel is forced to carry a
description and a unit: a figure without its definition is what the SG view must never show.
Panel ids and grid positions are assigned when the dashboard renders, from the order of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 39
GRID_WIDTH = 24
ALL = "$__all"  # the value Grafana gives the "All" choice of a variable

PanelKind = Literal["stat", "timeseries", "bargauge", "table", "heatmap", "gauge"]
Json = dict[str, Any]


class DashboardModelError(ValueError):
    """A panel or dashboard is incomplete (no description, no unit, a row wider than the grid)."""


@dataclass(frozen=True, slots=True)
class Datasource:
    type: str
    uid: str

    def to_json(self) -> Json:
        return {"type": self.type, "uid": self.uid}


@dataclass(frozen=True, slots=True)
class PromQuery:
    """A PromQL target. `instant` for stat-like panels that show the value now."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: Literal["time_series", "heatmap", "table"] = "time_series"

    def to_json(self, ref_id: str, datasource: Datasource) -> Json:
        return {
            "datasource": datasource.to_json(),
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """A raw SQL target for the PostgreSQL data source (the case-fact store)."""

    sql: str
    format: Literal["time_series", "table"] = "time_series"

    def to_json(self, ref_id: str, datasource: Datasource) -> Json:
        return {
            "datasource": datasource.to_json(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": ref_id,
        }


Query = PromQuery | SqlQuery


@dataclass(frozen=True, slots=True)
class Step:
    """A threshold step: from `value` upwards the colour applies (None: the base colour)."""

    color: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """Field settings for one series, matched by its display name (the legend)."""

    name: str
    unit: str | None = None
    thresholds: tuple[Step, ...] | None = None
    display_name: str | None = None

    def to_json(self) -> Json:
        properties: list[Json] = []
        if self.unit is not None:
            properties.append({"id": "unit", "value": self.unit})
        if self.thresholds is not None:
            properties.append({"id": "thresholds", "value": _thresholds(self.thresholds)})
        if self.display_name is not None:
            properties.append({"id": "displayName", "value": self.display_name})
        return {"matcher": {"id": "byName", "options": self.name}, "properties": properties}


@dataclass(frozen=True, slots=True)
class Link:
    title: str
    url: str
    tooltip: str = ""

    def to_json(self) -> Json:
        return {"title": self.title, "url": self.url, "targetBlank": False}


@dataclass(frozen=True, slots=True)
class Panel:
    kind: PanelKind
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 6
    height: int = 6
    thresholds: tuple[Step, ...] = (Step("green"),)
    color_mode: Literal["thresholds", "palette-classic", "fixed"] = "palette-classic"
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    overrides: tuple[Override, ...] = ()
    links: tuple[Link, ...] = ()  # panel links (corner menu)
    data_links: tuple[Link, ...] = ()  # links on each value; may use ${__field.labels.x}
    options: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)  # fieldConfig.defaults.custom (draw style, ...)
    datasource: Datasource | None = None  # None: the dashboard's default

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise DashboardModelError(f"panel {self.title!r} has no description")
        if not self.unit:
            raise DashboardModelError(f"panel {self.title!r} has no unit")
        if not self.queries:
            raise DashboardModelError(f"panel {self.title!r} has no query")
        if not 1 <= self.width <= GRID_WIDTH:
            raise DashboardModelError(f"panel {self.title!r} is {self.width} wide")

    def to_json(self, panel_id: int, x: int, y: int, default: Datasource) -> Json:
        datasource = self.datasource or default
        defaults: Json = {
            "color": {"mode": self.color_mode},
            "links": [link.to_json() for link in self.data_links],
            "mappings": [],
            "thresholds": _thresholds(self.thresholds),
            "unit": self.unit,
        }
        for key in ("min", "max", "decimals"):
            value = getattr(self, key)
            if value is not None:
                defaults[key] = value
        if self.custom:
            defaults["custom"] = self.custom
        return {
            "datasource": datasource.to_json(),
            "description": self.description,
            "fieldConfig": {
                "defaults": defaults,
                "overrides": [o.to_json() for o in self.overrides],
            },
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "links": [link.to_json() for link in self.links],
            "options": self.options,
            "targets": [
                q.to_json(_ref_id(i), datasource) for i, q in enumerate(self.queries)
            ],
            "title": self.title,
            "type": self.kind,
        }


@dataclass(frozen=True, slots=True)
class Variable:
    """A template variable: `query` (label values from the data source) or `custom` (fixed list).

    For `query`, `definition` is Grafana's `label_values(metric{...}, label)`; for `custom`,
    `options` are (value, text) pairs.
    """

    name: str
    label: str
    description: str
    kind: Literal["query", "custom"] = "query"
    definition: str = ""
    options: tuple[tuple[str, str], ...] = ()
    include_all: bool = False
    all_value: str = ".*"  # what "All" stands for: a regex for PromQL, "%" for SQL LIKE

    def to_json(self, datasource: Datasource) -> Json:
        out: Json = {
            "description": self.description,
            "hide": 0,
            "includeAll": self.include_all,
            "label": self.label,
            "multi": False,
            "name": self.name,
            "skipUrlSync": False,
            "type": self.kind,
        }
        if self.include_all:
            out["allValue"] = self.all_value
        if self.kind == "query":
            out.update(
                {
                    "current": {},
                    "datasource": datasource.to_json(),
                    "definition": self.definition,
                    "options": [],
                    "query": {"qryType": 1, "query": self.definition, "refId": "Var"},
                    "refresh": 2,  # on time-range change: label values follow the data
                    "regex": "",
                    "sort": 1,
                }
            )
        else:
            choices = ((ALL, "All"), *self.options) if self.include_all else self.options
            value, text = choices[0]
            out.update(
                {
                    "current": {"selected": True, "text": text, "value": value},
                    "options": [
                        {"selected": i == 0, "text": t, "value": v}
                        for i, (v, t) in enumerate(choices)
                    ],
                    # Grafana splits the list on unescaped commas, text from value on " : ".
                    "query": ",".join(
                        f"{t.replace(',', chr(92) + ',')} : {v}" for v, t in self.options
                    ),
                }
            )
        return out


Row = tuple[Panel, ...]


def pack(panels: list[Panel]) -> tuple[Row, ...]:
    """Rows of panels in order, starting a new row where the next panel would not fit."""
    rows: list[list[Panel]] = []
    for panel in panels:
        if not rows or sum(p.width for p in rows[-1]) + panel.width > GRID_WIDTH:
            rows.append([])
        rows[-1].append(panel)
    return tuple(tuple(row) for row in rows)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    datasource: Datasource
    tags: tuple[str, ...] = ("ketenmonitor",)
    variables: tuple[Variable, ...] = ()
    links: tuple[Link, ...] = ()
    time_from: str = "now-30d"
    refresh: str = "1m"

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row]

    def to_json(self) -> Json:
        panels: list[Json] = []
        y = 0
        for row in self.rows:
            width = sum(p.width for p in row)
            if width > GRID_WIDTH:
                raise DashboardModelError(
                    f"dashboard {self.uid!r}: row of {[p.title for p in row]} is {width} wide"
                )
            x = 0
            for panel in row:
                panels.append(panel.to_json(len(panels) + 1, x, y, self.datasource))
                x += panel.width
            y += max(p.height for p in row)
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "links": [
                {
                    "asDropdown": False,
                    "icon": "dashboard",
                    "includeVars": False,
                    "keepTime": True,
                    "tags": [],
                    "targetBlank": False,
                    "title": link.title,
                    "tooltip": link.tooltip,
                    "type": "link",
                    "url": link.url,
                }
                for link in self.links
            ],
            "panels": panels,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "tags": list(self.tags),
            "templating": {"list": [v.to_json(self.datasource) for v in self.variables]},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def _thresholds(steps: tuple[Step, ...]) -> Json:
    return {"mode": "absolute", "steps": [{"color": s.color, "value": s.value} for s in steps]}


def _ref_id(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"Q{index}"

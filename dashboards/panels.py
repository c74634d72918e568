"""Panels in the house style, built with grafana-foundation-sdk (Grafana's typed builders).

    stat("Werkvoorraad", "Zaken die nu in de gekozen fase wachten.", "short", "sum(...)")
    bars("Werkvoorraad per arrondissement", "...", "short",
         instant("max by (district) (...)", "{{district}}"), width=8, height=9)
    timeseries("Dubbele aanleveringen", "...", "cps", Prom("max(...)", "Dubbel"), width=6)
    board = layout(Dashboard("Titel"), rows)       # ids and grid positions, row by row

Every builder here demands a description and a unit and at least one query, and refuses a panel
without them (DashboardModelError): a figure without its definition is what the SG view must never
show. A builder fixes what its kind of panel looks like on every dashboard and leaves what differs
(title, description, unit, queries, size, thresholds, overrides) to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from grafana_foundation_sdk.builders import bargauge, heatmap, table
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat as stat_builder
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm
from ketenmonitor.dashboards.datasources import PROMETHEUS, Source
from ketenmonitor.dashboards.sql import SqlQuery

GRID_WIDTH = 24
ALL = "$__all"  # the value Grafana gives the "All" choice of a variable
PER_DAY = "suffix: zaken/dag"

Panel = TypeVar(
    "Panel", stat_builder.Panel, bargauge.Panel, ts.Panel, table.Panel, heatmap.Panel, d.Panel
)


class DashboardModelError(ValueError):
    """A panel or dashboard is incomplete (no description, no unit, a row wider than the grid)."""


@dataclass(frozen=True, slots=True)
class Prom:
    """A PromQL target. `instant` for panels that show the value now (at the range's end)."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: Literal["time_series", "heatmap", "table"] = "time_series"

    def target(self, ref_id: str, source: Source) -> prom.Dataquery:
        query = (
            prom.Dataquery()
            .expr(self.expr)
            .ref_id(ref_id)
            .datasource(source.ref)
            .editor_mode(pm.QueryEditorMode.CODE)
            .format(pm.PromQueryFormat(self.format))
            .legend_format(self.legend or "__auto")
        )
        return query.instant() if self.instant else query.range()


@dataclass(frozen=True, slots=True)
class Sql:
    """A raw SQL target for the PostgreSQL store."""

    sql: str
    format: Literal["time_series", "table"] = "time_series"

    def target(self, ref_id: str, source: Source) -> SqlQuery:
        return SqlQuery(self.sql, ref_id, self.format, source.ref)


Query = Prom | Sql


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

    def properties(self) -> list[dm.DynamicConfigValue]:
        out = []
        if self.unit is not None:
            out.append(dm.DynamicConfigValue(id_val="unit", value=self.unit))
        if self.thresholds is not None:
            steps = _thresholds(self.thresholds)
            out.append(dm.DynamicConfigValue(id_val="thresholds", value=steps))
        if self.display_name is not None:
            out.append(dm.DynamicConfigValue(id_val="displayName", value=self.display_name))
        return out


@dataclass(frozen=True, slots=True)
class Link:
    title: str
    url: str

    def builder(self) -> d.DashboardLink:
        return (
            d.DashboardLink(self.title)
            .type(dm.DashboardLinkType.LINK)
            .url(self.url)
            .icon("dashboard")
            .tooltip("")
            .keep_time(True)
            .include_vars(False)
            .as_dropdown(False)
            .target_blank(False)
            .tags([])
        )


def instant(expr: str, legend: str = "") -> Prom:
    """A PromQL target evaluated once, at the end of the range: the value now."""
    return Prom(expr, legend, instant=True)


def panel(
    builder: Panel,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 6,
    height: int = 6,
    source: Source = PROMETHEUS,
    thresholds: tuple[Step, ...] = (Step("green"),),
    color_mode: Literal["thresholds", "palette-classic", "fixed"] = "palette-classic",
    min: float | None = None,
    max: float | None = None,
    decimals: int | None = None,
    overrides: Sequence[Override] = (),
    data_links: Sequence[Link] = (),  # links on each value; may use ${__field.labels.x}
) -> Panel:
    """The settings every panel has, checked: a description, a unit, a query, a width that fits."""
    if not description.strip():
        raise DashboardModelError(f"panel {title!r} has no description")
    if not unit:
        raise DashboardModelError(f"panel {title!r} has no unit")
    if not queries:
        raise DashboardModelError(f"panel {title!r} has no query")
    if not 1 <= width <= GRID_WIDTH:
        raise DashboardModelError(f"panel {title!r} is {width} wide")
    builder.title(title).description(description).unit(unit).span(width).height(height)
    builder.datasource(source.ref)
    builder.targets([q.target(_ref_id(i), source) for i, q in enumerate(queries)])
    builder.thresholds(_thresholds_builder(thresholds))
    builder.color_scheme(d.FieldColor().mode(dm.FieldColorModeId(color_mode)))
    builder.data_links([link.builder() for link in data_links])
    if min is not None:
        builder.min(min)
    if max is not None:
        builder.max(max)
    if decimals is not None:
        builder.decimals(decimals)
    for override in overrides:
        builder.override_by_name(override.name, override.properties())
    return builder


def stat(
    title: str,
    description: str,
    unit: str,
    *queries: Query | str,
    color: Literal["value", "background"] = "value",
    text: Literal["value", "value_and_name"] = "value",
    width: int = 4,
    height: int = 4,
    thresholds: tuple[Step, ...] = (Step("blue"),),
    color_mode: Literal["thresholds", "palette-classic", "fixed"] = "thresholds",
    **fields: Any,
) -> stat_builder.Panel:
    """A tile with big numbers: each query's value now, coloured by `thresholds`, no sparkline.
    A plain string is an instant query named after the title."""
    targets = [instant(q, title) if isinstance(q, str) else q for q in queries]
    builder = (
        stat_builder.Panel()
        .color_mode(common.BigValueColorMode(color))
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode(text))
        .reduce_options(_last_value())
    )
    return panel(
        builder, title, description, unit, targets, width=width, height=height,
        thresholds=thresholds, color_mode=color_mode, **fields,
    )


def bars(
    title: str, description: str, unit: str, *queries: Query, width: int, height: int,
    **fields: Any,
) -> bargauge.Panel:
    """Horizontal bars, one per series, each showing its latest value."""
    builder = (
        bargauge.Panel()
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .reduce_options(_last_value())
    )
    return panel(builder, title, description, unit, queries, width=width, height=height, **fields)


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int,
    height: int = 8,
    style: Literal["lines", "bars", "monthly", "steps"] = "lines",
    stacked: bool = False,
    fill: int | None = None,
    **fields: Any,
) -> ts.Panel:
    """Series over time on an axis from zero, with the legend below."""
    builder = (
        ts.Panel()
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)
        )
        .show_points(common.VisibilityMode.NEVER)
    )
    if style == "bars":
        builder.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80).line_width(1)
    else:
        builder.draw_style(common.GraphDrawStyle.LINE).line_width(2).fill_opacity(10)
    if style == "monthly":
        builder.show_points(common.VisibilityMode.ALWAYS).point_size(6).fill_opacity(0)
    if style == "steps":
        builder.line_interpolation(common.LineInterpolation.STEP_AFTER)
    if stacked:
        builder.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if fill is not None:
        builder.fill_opacity(fill)
    fields.setdefault("min", 0)
    return panel(builder, title, description, unit, queries, width=width, height=height, **fields)


def table_panel(
    title: str, description: str, unit: str, *queries: Query, width: int, height: int,
    **fields: Any,
) -> table.Panel:
    builder = table.Panel().show_header(True).cell_height(common.TableCellHeight.SM)
    return panel(builder, title, description, unit, queries, width=width, height=height, **fields)


def heatmap_panel(
    title: str, description: str, query: Prom, *, y_unit: str, width: int, height: int,
) -> heatmap.Panel:
    """Counts per histogram bucket (rows) over time, the buckets as Prometheus holds them."""
    builder = (
        heatmap.Panel()
        .calculate(False)
        .cell_gap(1)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .steps(64)
            .exponent(0.5)
            .fill("dark-orange")
            .reverse(False)
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
        )
        .show_legend()
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .mode(common.TooltipDisplayMode.SINGLE)  # tooltip (the old `tooltip.show` is gone)
        .show_y_histogram()
        .y_axis(
            heatmap.YAxisConfig().unit(y_unit).axis_placement(common.AxisPlacement.LEFT)
        )
    )
    return panel(builder, title, description, "short", (query,), width=width, height=height)


def layout(board: d.Dashboard, rows: Sequence[Sequence[cogbuilder.Builder[dm.Panel]]]) -> None:
    """Add the panels row by row: ids in order, each row below the tallest panel of the last."""
    y, panel_id = 0, 0
    for row in rows:
        built = [p.build() for p in row]
        sizes = [(p.grid_pos or dm.GridPos()) for p in built]
        width = sum(s.w for s in sizes)
        if width > GRID_WIDTH:
            titles = [p.title for p in built]
            raise DashboardModelError(f"row of {titles} is {width} wide")
        x = 0
        for item, size in zip(built, sizes, strict=True):
            panel_id += 1
            item.id_val = panel_id
            item.grid_pos = dm.GridPos(h=size.h, w=size.w, x=x, y=y)
            board.with_panel(_Built(item))
            x += size.w
        y += max(s.h for s in sizes)


def pack(panels: Sequence[cogbuilder.Builder[dm.Panel]]) -> list[list[Any]]:
    """Rows of panels in order, starting a new row where the next panel would not fit."""
    rows: list[list[Any]] = []
    used = GRID_WIDTH
    for item in panels:
        w = (item.build().grid_pos or dm.GridPos()).w
        if used + w > GRID_WIDTH:
            rows.append([])
            used = 0
        rows[-1].append(item)
        used += w
    return rows


class _Built(cogbuilder.Builder[dm.Panel]):
    """A panel already built and placed: hands it to Dashboard.with_panel unchanged."""

    def __init__(self, built: dm.Panel) -> None:
        self._built = built

    def build(self) -> dm.Panel:
        return self._built


def _last_value() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _thresholds(steps: tuple[Step, ...]) -> dm.ThresholdsConfig:
    return dm.ThresholdsConfig(
        mode=dm.ThresholdsMode.ABSOLUTE,
        steps=[dm.Threshold(color=s.color, value=s.value) for s in steps],
    )


def _thresholds_builder(steps: tuple[Step, ...]) -> d.ThresholdsConfig:
    return (
        d.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(color=s.color, value=s.value) for s in steps])
    )


def _ref_id(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"Q{index}"

"""Panel builders: the kinds of panel every Ketenmonitor dashboard draws, with their house style.

    stat("Werkvoorraad", "Zaken die nu in de gekozen fase wachten.", "short", "sum(...)")
    bars("Werkvoorraad per arrondissement", "...", "short",
         instant("sum by (district) (...)", "{{district}}"), width=8, height=9)
    timeseries("Dubbele aanleveringen", "...", "cps", PromQuery("sum(rate(...))", "Dubbel"),
               width=6)

A builder fixes what its kind of panel looks like on every dashboard and leaves what differs
(title, description, unit, queries, size) to the caller; any other Panel field passes through.
A panel that looks unlike the others is built with Panel itself, so the exception stays visible.
"""

from __future__ import annotations

from typing import Any

from dashboards.model import Json, Panel, PromQuery, Query, Step
from dashboards.options import LINES, bar_options, stat_options, timeseries_options


def instant(expr: str, legend: str = "") -> PromQuery:
    """A PromQL target evaluated once, at the end of the range: the value now."""
    return PromQuery(expr, legend, instant=True)


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    thresholds: tuple[Step, ...] = (Step("blue"),),
) -> Panel:
    """A small tile with one number, the value of `expr` now, coloured by `thresholds`."""
    return Panel(
        "stat",
        title,
        description,
        unit,
        (instant(expr, title),),
        width=4,
        height=4,
        thresholds=thresholds,
        color_mode="thresholds",
        options=stat_options(),
    )


def bars(
    title: str, description: str, unit: str, *queries: Query, width: int, height: int,
    **fields: Any,
) -> Panel:
    """Horizontal bars, one per series, each showing its latest value."""
    return Panel(
        "bargauge", title, description, unit, queries, width=width, height=height,
        options=bar_options(), **fields,
    )


def timeseries(
    title: str, description: str, unit: str, *queries: Query, width: int, height: int = 8,
    custom: Json = LINES, **fields: Any,
) -> Panel:
    """Series over time on an axis from zero, drawn as `custom` says, with the legend below."""
    return Panel(
        "timeseries", title, description, unit, queries, width=width, height=height, min=0,
        custom=custom, options=timeseries_options(), **fields,
    )

"""Panel display options shared by the dashboards (Grafana's `options` object per panel type)."""

from __future__ import annotations

from typing import Any

LAST_VALUE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
LINES = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 2, "showPoints": "never"}
PER_DAY = "suffix: zaken/dag"


def bar_options() -> dict[str, Any]:
    """Horizontal bars, one per series, showing the latest value."""
    return {
        "displayMode": "basic",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "reduceOptions": dict(LAST_VALUE),
    }


def stat_options(color_mode: str = "value") -> dict[str, Any]:
    """One big number: the latest value, coloured by the thresholds, no sparkline."""
    return {
        "colorMode": color_mode,
        "graphMode": "none",
        "textMode": "value",
        "reduceOptions": dict(LAST_VALUE),
    }


def timeseries_options() -> dict[str, Any]:
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "none"},
    }

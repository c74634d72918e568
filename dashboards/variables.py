"""Template variables, built with grafana-foundation-sdk: a fixed list of choices, or the values a
label takes in Prometheus.

    choice("stage", "Fase", "De fase ...", [(s.id, s.label) for s in chain.spec.stages])
    label_choice("district", "Arrondissement", "Het arrondissement van de zaak.",
                 metrics.BACKLOG, include_all=True)
"""

from __future__ import annotations

from collections.abc import Iterable

from grafana_foundation_sdk.builders.dashboard import CustomVariable, QueryVariable
from grafana_foundation_sdk.models.dashboard import (
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from ketenmonitor.dashboards.datasources import PROMETHEUS
from ketenmonitor.dashboards.panels import ALL


def choice(
    name: str,
    label: str,
    description: str,
    options: Iterable[tuple[str, str]],
    *,
    include_all: bool = False,
    all_value: str = ".*",
) -> CustomVariable:
    """A fixed list of (value, text) choices, typically ids and Dutch labels from the chain.
    `all_value` is what "All" stands for: a regex for PromQL, "%" for SQL LIKE."""
    options = tuple(options)
    choices = ((ALL, "All"), *options) if include_all else options
    value, text = choices[0]
    variable = (
        CustomVariable(name)
        .label(label)
        .description(description)
        .hide(VariableHide.DONT_HIDE)
        .include_all(include_all)
        .allow_custom_value(False)
        # Grafana splits the list on unescaped commas, text from value on " : ".
        .values(",".join(f"{t.replace(',', chr(92) + ',')} : {v}" for v, t in options))
        .current(VariableOption(selected=True, text=text, value=value))
        .options(
            [VariableOption(selected=i == 0, text=t, value=v) for i, (v, t) in enumerate(choices)]
        )
    )
    if include_all:
        variable.all_value(all_value)
    return variable


def label_choice(
    name: str, label: str, description: str, series: str, *, include_all: bool = False
) -> QueryVariable:
    """The values that label `name` takes on `series` (a metric, or a selector) right now."""
    definition = f"label_values({series}, {name})"
    variable = (
        QueryVariable(name)
        .label(label)
        .description(description)
        .hide(VariableHide.DONT_HIDE)
        .datasource(PROMETHEUS.ref)
        .query({"qryType": 1, "query": definition, "refId": "PrometheusVariableQueryEditor"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)  # label values follow the data
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(include_all)
        .allow_custom_value(False)
    )
    if include_all:
        variable.all_value(".*")
    return variable

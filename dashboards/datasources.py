"""The data sources of the dashboards: a datasource variable per source, bound on import.

    PROMETHEUS        -> {"type": "prometheus", "uid": "${datasource}"}: what every panel uses
    INPUTS            -> the `__inputs` of the JSON: Grafana's import asks which data source
    bind_inputs(board) -> the dashboard with the provisioned uids filled in (publish)

A panel never names a data source's uid: it names a dashboard variable (`datasource`, `store`) of
type datasource, whose default is the import input (${DS_PROMETHEUS}). Importing the JSON into any
Grafana asks for a Prometheus (and a PostgreSQL) data source and binds the variable to it; the
variable also lets a reader switch between Prometheus servers. `ketenmonitor dashboards publish`
binds the inputs to the provisioned uids (deploy/grafana/provisioning/datasources/, a test checks
that both agree); file provisioning, which does not substitute inputs, falls back to the only
data source of each type that it provisions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableHide, VariableOption


@dataclass(frozen=True, slots=True)
class Source:
    """One data source as the dashboards see it."""

    variable: str  # dashboard variable the panels refer to
    input: str  # the `__inputs` name, DS_...
    plugin: str  # Grafana plugin id (the variable's query and the input's pluginId)
    plugin_name: str
    label: str  # what the variable and the import form show, in Dutch
    provisioned_uid: str  # the uid in deploy/grafana/provisioning/datasources/

    @property
    def ref(self) -> DataSourceRef:
        return DataSourceRef(type_val=self.plugin, uid=f"${{{self.variable}}}")

    def variable_builder(self) -> DatasourceVariable:
        placeholder = f"${{{self.input}}}"
        return (
            DatasourceVariable(self.variable)
            .label(self.label)
            .description(f"De {self.plugin_name}-bron waaruit de panelen lezen.")
            .type(self.plugin)
            .current(VariableOption(selected=True, text=placeholder, value=placeholder))
            .hide(VariableHide.DONT_HIDE)
        )

    def input_json(self) -> dict[str, str]:
        return {
            "name": self.input,
            "label": self.label,
            "description": f"{self.plugin_name}-bron van Ketenmonitor",
            "type": "datasource",
            "pluginId": self.plugin,
            "pluginName": self.plugin_name,
        }


PROMETHEUS = Source(
    "datasource", "DS_PROMETHEUS", "prometheus", "Prometheus", "Gegevensbron",
    "ketenmonitor-prometheus",
)
# The case-fact store on PostgreSQL; Grafana >= 10 names the plugin this way.
STORE = Source(
    "store", "DS_STORE", "grafana-postgresql-datasource", "PostgreSQL", "Opslag",
    "ketenmonitor-store",
)
ALL = (PROMETHEUS, STORE)


def bind_inputs(board: dict[str, Any], uids: dict[str, str] | None = None) -> dict[str, Any]:
    """The dashboard with every ${DS_...} input replaced by a data source uid (default: the
    provisioned ones), as Grafana's import does; `__inputs` removed."""
    uids = uids or {s.input: s.provisioned_uid for s in ALL}
    text = json.dumps({k: v for k, v in board.items() if k not in ("__inputs", "__requires")})
    for name, uid in uids.items():
        text = text.replace(f"${{{name}}}", uid)
    bound: dict[str, Any] = json.loads(text)
    return bound

"""A raw SQL target for Grafana's PostgreSQL data source, as a grafana-foundation-sdk query.

    SqlQuery("SELECT ... WHERE $__timeFilter(s.completed_at) ...", ref_id="A")

The SDK (for Grafana 11) ships typed queries for Prometheus and others but none for the built-in
PostgreSQL data source, so this one small Dataquery fills the gap with the fields Grafana's SQL
editor saves in code mode.
"""

from __future__ import annotations

from typing import Any, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef


class SqlDataquery(cogvariants.Dataquery):
    def __init__(
        self, sql: str, ref_id: str, fmt: str, datasource: DataSourceRef | None
    ) -> None:
        self.sql = sql
        self.ref_id = ref_id
        self.format = fmt
        self.datasource = datasource

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }
        if self.datasource is not None:
            out["datasource"] = self.datasource.to_json()
        return out


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self,
        sql: str,
        ref_id: str = "A",
        fmt: Literal["time_series", "table"] = "time_series",
        datasource: DataSourceRef | None = None,
    ) -> None:
        self._internal = SqlDataquery(sql, ref_id, fmt, datasource)

    def build(self) -> SqlDataquery:
        return self._internal

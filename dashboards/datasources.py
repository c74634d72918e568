"""The data sources every dashboard refers to, by fixed uid.

    PROMETHEUS.uid  -> "ketenmonitor-prometheus"

The same uids are provisioned in deploy/grafana/provisioning/datasources/ketenmonitor.yaml (a test
checks that they agree), so a dashboard works unchanged in any Grafana provisioned from there.
"""

from __future__ import annotations

from dashboards.model import Datasource

PROMETHEUS = Datasource("prometheus", "ketenmonitor-prometheus")
# The case-fact store (issue 7) on PostgreSQL; Grafana >= 10 names the plugin this way.
STORE = Datasource("grafana-postgresql-datasource", "ketenmonitor-store")

ALL = (PROMETHEUS, STORE)

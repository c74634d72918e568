"""Dashboard 4, Historie: monthly lead times and volumes in event time, from the case-fact store.

    board = build_history(load_chain())

Prometheus knows what the workers saw while they ran (processing time); the store (issue 7,
ketenmonitor/store/models.py) knows when things happened. These panels query the store's tables
(cases, case_stages, case_segments) on PostgreSQL through Grafana's SQL macros: $__timeFilter(col)
limits to the dashboard's time range, which here is a range of event times.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from ketenmonitor.dashboards.board import Board, dashboard
from ketenmonitor.dashboards.datasources import STORE
from ketenmonitor.dashboards.panels import Link, Override, Sql, Step, timeseries
from ketenmonitor.dashboards.uids import DRILLDOWN, HISTORY, OVERVIEW
from ketenmonitor.dashboards.variables import choice

from ketenmonitor.domain.chain import Chain, NormSpec
from ketenmonitor.store.models import Case, CaseSegment, CaseStage

CASES = Case.__tablename__
STAGES = CaseStage.__tablename__
SEGMENTS = CaseSegment.__tablename__


def variables(chain: Chain) -> tuple[cogbuilder.Builder[Any], ...]:
    return (
        choice("segment", "Doorlooptijd",
               "Het traject waarvan de doorlooptijd getoond wordt.",
               [(s.id, s.label) for s in chain.spec.segments]),
        choice("stage", "Fase",
               "De fase waarvan instroom, uitstroom en werkvoorraad getoond worden.",
               [(s.id, s.label) for s in chain.spec.stages]),
        choice("case_type", "Zaaktype",
               "Soort zaak; 'All' is alle zaaktypen.",
               chain.spec.case_types.items(), include_all=True, all_value="%"),
    )


def build_history(chain: Chain) -> Board:
    segment_of_type = (
        f"FROM {SEGMENTS} s JOIN {CASES} c ON c.pseudonym = s.pseudonym\n"
        "WHERE $__timeFilter(s.completed_at) AND s.segment = '$segment'"
        " AND c.case_type LIKE '$case_type'"
    )
    lead_times = timeseries(
        "Doorlooptijd per maand (p50, p80)",
        "Per maand van afronding (gebeurtenistijd): de doorlooptijd waarbinnen de helft (p50) en "
        "80% (p80) van de afgeronde trajecten van de gekozen soort klaar was.",
        "s",
        Sql(
            "SELECT date_trunc('month', s.completed_at) AS time,\n"
            "  percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time_seconds) AS \"p50\",\n"
            "  percentile_cont(0.8) WITHIN GROUP (ORDER BY s.lead_time_seconds) AS \"p80\"\n"
            f"{segment_of_type}\nGROUP BY 1 ORDER BY 1"
        ),
        width=12,
        source=STORE,
        style="monthly",
    )
    completed = timeseries(
        "Afgeronde trajecten per maand",
        "Aantal trajecten van de gekozen soort dat in de maand werd afgerond (gebeurtenistijd).",
        "short",
        Sql(
            "SELECT date_trunc('month', s.completed_at) AS time, count(*) AS \"Afgerond\"\n"
            f"{segment_of_type}\nGROUP BY 1 ORDER BY 1"
        ),
        width=12,
        source=STORE,
        style="bars",
    )
    norms = timeseries(
        "Aandeel binnen norm per maand",
        "Per norm en per maand van afronding: het deel van de afgeronde trajecten dat binnen de "
        "normtermijn bleef. De normen en hun termijnen komen uit de ketendefinitie.",
        "percentunit",
        *(Sql(_norm_sql(norm)) for norm in chain.spec.norms),
        width=24,
        height=9,
        max=1,
        overrides=tuple(
            Override(norm.label, thresholds=(Step("red"), Step("green", norm.target)))
            for norm in chain.spec.norms
        ),
        source=STORE,
        style="monthly",
    )
    stage_flows = timeseries(
        "Instroom en uitstroom per maand",
        "Zaken die in de maand de gekozen fase binnenkwamen en verlieten (gebeurtenistijd).",
        "short",
        Sql(_stage_count_sql("entered_at", "Instroom")),
        Sql(_stage_count_sql("left_at", "Uitstroom")),
        width=12,
        source=STORE,
        style="bars",
    )
    month_end_backlog = timeseries(
        "Werkvoorraad aan het eind van de maand",
        "Zaken die aan het eind van elke maand in de gekozen fase wachtten: binnengekomen voor "
        "het einde van de maand en toen nog niet vertrokken (gebeurtenistijd).",
        "short",
        Sql(
            "SELECT m AS time, count(st.pseudonym) AS \"Werkvoorraad\"\n"
            "FROM generate_series(date_trunc('month', $__timeFrom()::timestamptz),\n"
            "                     $__timeTo()::timestamptz, interval '1 month') AS m\n"
            f"LEFT JOIN {STAGES} st ON st.stage = '$stage'\n"
            "  AND st.entered_at < m + interval '1 month'\n"
            "  AND (st.left_at IS NULL OR st.left_at >= m + interval '1 month')\n"
            f"  AND EXISTS (SELECT 1 FROM {CASES} c WHERE c.pseudonym = st.pseudonym"
            " AND c.case_type LIKE '$case_type')\n"
            "GROUP BY m ORDER BY m"
        ),
        width=12,
        source=STORE,
        style="monthly",
    )
    closed = timeseries(
        "Afgesloten zaken per maand, naar uitkomst",
        "Zaken die in de maand de keten verlieten, naar uitkomst (gebeurtenistijd).",
        "short",
        Sql(
            "SELECT date_trunc('month', closed_at) AS time, outcome AS metric,"
            " count(*) AS value\n"
            f"FROM {CASES}\n"
            "WHERE $__timeFilter(closed_at) AND case_type LIKE '$case_type'\n"
            "GROUP BY 1, 2 ORDER BY 1"
        ),
        width=24,
        source=STORE,
        style="bars",
        stacked=True,
    )
    return dashboard(
        HISTORY,
        "Historie",
        "Doorlooptijden, aandeel binnen norm en volumes per maand, in "
        "gebeurtenistijd, uit de opslag van zaakfeiten.",
        ((lead_times, completed), (norms,), (stage_flows, month_end_backlog), (closed,)),
        source=STORE,
        variables=variables(chain),
        time_from="now-2y",
        refresh="",
        links=(
            Link("Ketenoverzicht", f"/d/{OVERVIEW}"),
            Link("Details per fase", f"/d/{DRILLDOWN}"),
        ),
    )


def _norm_sql(norm: NormSpec) -> str:
    case_types = (
        " AND c.case_type IN (" + ", ".join(f"'{ct}'" for ct in norm.case_types) + ")"
        if norm.case_types
        else ""
    )
    label = norm.label.replace('"', "'")
    return (
        "SELECT date_trunc('month', s.completed_at) AS time,\n"
        f"  avg(CASE WHEN s.lead_time_seconds <= {norm.within_seconds} THEN 1.0 ELSE 0.0 END)"
        f' AS "{label}"\n'
        f"FROM {SEGMENTS} s JOIN {CASES} c ON c.pseudonym = s.pseudonym\n"
        f"WHERE $__timeFilter(s.completed_at) AND s.segment = '{norm.segment}'{case_types}\n"
        "GROUP BY 1 ORDER BY 1"
    )


def _stage_count_sql(column: str, name: str) -> str:
    return (
        f"SELECT date_trunc('month', st.{column}) AS time, count(*) AS \"{name}\"\n"
        f"FROM {STAGES} st JOIN {CASES} c ON c.pseudonym = st.pseudonym\n"
        f"WHERE $__timeFilter(st.{column}) AND st.stage = '$stage'"
        " AND c.case_type LIKE '$case_type'\n"
        "GROUP BY 1 ORDER BY 1"
    )

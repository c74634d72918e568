"""Dashboard 2, details per fase: one stage, narrowed by organisation, case type and district.

    board = build_drilldown(load_chain())

Where the overview says that a partner's backlog grows, this one shows in which stage, for which
case types and districts, how old the waiting cases are (age bands from the chain definition), how
lead times are distributed (heatmap over the histogram buckets) and how throughput developed; and
what the owning partner has to act on: dormant cases ('slapende zaken', no event past the stage's
limit, counted apart from the backlog) and rework (milestones reached again, stages visited again).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from ketenmonitor.dashboards import queries as q
from ketenmonitor.dashboards.board import Board, dashboard
from ketenmonitor.dashboards.panels import (
    PER_DAY,
    Link,
    Override,
    Prom,
    bars,
    heatmap_panel,
    instant,
    stat,
    timeseries,
)
from ketenmonitor.dashboards.uids import DRILLDOWN, HISTORY, OVERVIEW, PIPELINE
from ketenmonitor.dashboards.variables import choice, label_choice

from ketenmonitor import metric_names as metrics
from ketenmonitor.alerting import rules
from ketenmonitor.domain.chain import Chain

STAGE = q.regex("stage", "$stage")
CASE_TYPE = q.regex("case_type", "$case_type")
DISTRICT = q.regex("district", "$district")
SEGMENT = q.eq("segment", "$segment")


def stage_segment(chain: Chain, stage_id: str) -> str | None:
    """The segment that measures a stage from its entry to its exit milestone, if one exists."""
    stage = next(s for s in chain.spec.stages if s.id == stage_id)
    for segment in chain.spec.segments:
        if segment.start in stage.enter and segment.end in stage.exit:
            return segment.id
    return None


def variables(chain: Chain) -> tuple[cogbuilder.Builder[Any], ...]:
    # The first stage's own segment comes first, so the default selection belongs together.
    first = stage_segment(chain, chain.stage_ids[0]) if chain.stage_ids else None
    segments = sorted(chain.spec.segments, key=lambda s: s.id != first)
    return (
        label_choice("organisation", "Organisatie",
                     "De ketenpartner die eigenaar is van de fase.",
                     metrics.BACKLOG),
        label_choice("stage", "Fase",
                     "Een fase van de keten waarin zaken wachten (werkvoorraad).",
                     q.selector(metrics.BACKLOG, q.regex("organisation", "$organisation"))),
        label_choice("case_type", "Zaaktype",
                     "Soort zaak, zoals gedefinieerd in de ketendefinitie.",
                     metrics.BACKLOG, include_all=True),
        label_choice("district", "Arrondissement",
                     "Het arrondissement van de zaak.",
                     metrics.BACKLOG, include_all=True),
        choice("segment", "Doorlooptijd",
               "Het traject waarvan de doorlooptijd getoond wordt (van mijlpaal tot mijlpaal).",
               [(s.id, s.label) for s in segments]),
    )


def build_drilldown(chain: Chain) -> Board:
    stage_filter = (STAGE, CASE_TYPE, DISTRICT)
    lead = (SEGMENT, CASE_TYPE, DISTRICT)
    inflow = (metrics.STAGE_INFLOW, metrics.STAGE_INFLOW_WITHDRAWN)
    outflow = (metrics.STAGE_OUTFLOW, metrics.STAGE_OUTFLOW_WITHDRAWN)
    lead_buckets = (f"{metrics.LEAD_TIME}_bucket", f"{metrics.LEAD_TIME_WITHDRAWN}_bucket")
    period = "in de gekozen periode (tijdkiezer)"
    summary = (
        stat("Werkvoorraad", "Actieve zaken die nu in de gekozen fase wachten (zonder de "
             "slapende zaken).", "short",
             q.gauge(metrics.BACKLOG, *stage_filter)),
        stat(
            "Oudste actieve zaak",
            "Hoe lang de oudste actieve zaak al in de gekozen fase wacht, zonder de slapende "
            "zaken (alle zaaktypen en arrondissementen: deze meting kent geen uitsplitsing).",
            "s",
            f"max({q.selector(rules.OLDEST_AGE_MAX, STAGE)})",
        ),
        stat("Instroom", f"Zaken per dag die de fase binnenkwamen, gemiddeld {period}, "
             "na correcties.", PER_DAY,
             q.net_rate_per_day(*inflow, *stage_filter, window=q.RANGE)),
        stat("Uitstroom", f"Zaken per dag die de fase verlieten, gemiddeld {period}, "
             "na correcties.", PER_DAY,
             q.net_rate_per_day(*outflow, *stage_filter, window=q.RANGE)),
        stat(
            "Doorlooptijd p50",
            f"De helft van de trajecten (gekozen doorlooptijd) die {period} werden afgerond, "
            "was binnen deze tijd klaar.",
            "s",
            q.histogram_quantile(0.5, *lead_buckets, q.RANGE, *lead),
        ),
        stat(
            "Doorlooptijd p80",
            f"80% van de trajecten (gekozen doorlooptijd) die {period} werden afgerond, was "
            "binnen deze tijd klaar.",
            "s",
            q.histogram_quantile(0.8, *lead_buckets, q.RANGE, *lead),
        ),
    )
    bands = (
        instant(
            f"{q.gauge(metrics.BACKLOG_BY_AGE, *stage_filter, q.eq('age_band', band))}"
            " or vector(0)",
            band.replace("d", " dagen"),
        )
        for band, _ in chain.backlog_age_bands
    )
    age = bars(
        "Werkvoorraad naar leeftijd",
        "Actieve zaken in de fase (zonder de slapende zaken) naar hoe lang ze er al zijn "
        "(leeftijdsklassen uit de ketendefinitie).",
        "short",
        *bands,
        width=8,
        height=8,
    )
    throughput = timeseries(
        "Doorstroom: instroom en uitstroom",
        "Zaken per dag die de fase binnenkomen en verlaten, over de tijd (na correcties).",
        PER_DAY,
        Prom(q.net_rate_per_day(*inflow, *stage_filter), "Instroom"),
        Prom(q.net_rate_per_day(*outflow, *stage_filter), "Uitstroom"),
        width=16,
        height=8,
    )
    heatmap = heatmap_panel(
        "Verdeling doorlooptijd",
        "Hoeveel trajecten (gekozen doorlooptijd) in elk tijdvak afgerond werden, naar hun "
        "doorlooptijd: elke rij is een histogramklasse, de normtermijnen zijn klassegrenzen.",
        Prom(q.bucket_increase(*lead_buckets, q.RATE_INTERVAL, *lead), "{{le}}",
             format="heatmap"),
        y_unit="s",
        width=16,
        height=9,
    )
    by_district = bars(
        "Werkvoorraad per arrondissement",
        "Wachtende zaken in de fase per arrondissement.",
        "short",
        instant(q.gauge(metrics.BACKLOG, *stage_filter, by="district"), "{{district}}"),
        width=8,
        height=9,
        overrides=tuple(Override(d, display_name=label)
                        for d, label in chain.spec.districts.items()),
    )
    def per_case_type_trend(title: str, description: str, metric: str):
        """A stacked time series of a stage gauge, one line per case type."""
        return timeseries(
            title,
            description,
            "short",
            Prom(q.gauge(metric, *stage_filter, by="case_type"), "{{case_type}}"),
            width=12,
            height=8,
            stacked=True,
            fill=20,
            overrides=tuple(Override(c, display_name=label)
                            for c, label in chain.spec.case_types.items()),
        )

    backlog_trend = per_case_type_trend(
        "Werkvoorraad over de tijd, per zaaktype",
        "Wachtende zaken in de fase, per zaaktype, over de tijd.",
        metrics.BACKLOG,
    )
    closed = bars(
        "Afgesloten zaken naar uitkomst",
        "Zaken die de keten verlieten (bijvoorbeeld sepot, vrijspraak, inning afgerond) "
        f"{period}, naar uitkomst, voor het gekozen zaaktype en arrondissement; over de hele "
        "keten, na correcties.",
        "short",
        instant(
            q.per_worker_max(
                "increase", metrics.CASES_CLOSED, metrics.CASES_CLOSED_WITHDRAWN, q.RANGE,
                CASE_TYPE, DISTRICT, by="outcome",
            ),
            "{{outcome}}",
        ),
        width=12,
        height=8,
    )
    dormant = per_case_type_trend(
        "Slapende zaken",
        "Open zaken in de fase zonder enige gebeurtenis langer dan de termijn van de fase "
        "(dormant_after_days in de ketendefinitie), per zaaktype. Ze tellen niet mee in de "
        "werkvoorraad tot er weer een gebeurtenis komt; werkvoorraad + slapende zaken = alle "
        "open zaken. De lijst per partner: `ketenmonitor stuck --organisation ... --dormant`.",
        metrics.DORMANT,
    )
    organisation = q.regex("organisation", "$organisation")
    rework = bars(
        "Herhaald werk",
        f"Mijlpalen van de organisatie die een zaak opnieuw bereikte (een aangehouden zitting "
        f"opnieuw, een tweede aanmaning) en zaken die opnieuw in de fase kwamen, {period}, "
        "na correcties; alle zaaktypen en arrondissementen.",
        "short",
        instant(
            q.per_worker_max(
                "increase", metrics.MILESTONE_REPEATS, metrics.MILESTONE_REPEATS_WITHDRAWN,
                q.RANGE, organisation, by="milestone",
            ),
            "{{milestone}}",
        ),
        instant(
            q.per_worker_max(
                "increase", metrics.STAGE_REENTRIES, metrics.STAGE_REENTRIES_WITHDRAWN,
                q.RANGE, STAGE, by="stage",
            ),
            "opnieuw in fase {{stage}}",
        ),
        width=12,
        height=8,
    )
    return dashboard(
        DRILLDOWN,
        "Details per fase",
        "Werkvoorraad, leeftijd, doorlooptijd en doorstroom van een fase, per "
        "organisatie, zaaktype en arrondissement.",
        (summary, (age, throughput), (heatmap, by_district), (backlog_trend, closed),
         (dormant, rework)),
        variables=variables(chain),
        links=(
            Link("Ketenoverzicht", f"/d/{OVERVIEW}"),
            Link("Gezondheid monitor", f"/d/{PIPELINE}"),
            Link("Historie", f"/d/{HISTORY}"),
        ),
    )

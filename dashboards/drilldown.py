"""Dashboard 2, details per fase: one stage, narrowed by organisation, case type and district.

    board = build_drilldown(load_chain())

Where the overview says that a partner's backlog grows, this one shows in which stage, for which
case types and districts, how old the waiting cases are (age bands from the chain definition), how
lead times are distributed (heatmap over the histogram buckets) and how throughput developed.
"""

from __future__ import annotations

from dashboards import queries as q
from dashboards.datasources import PROMETHEUS
from dashboards.model import Dashboard, Link, Override, Panel, PromQuery, Variable
from dashboards.options import LINES, PER_DAY
from dashboards.panels import bars, instant, stat
from dashboards.uids import DRILLDOWN, HISTORY, OVERVIEW, PIPELINE
from dashboards.variables import choice, label_choice
from ketenmonitor import metric_names as metrics
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


def variables(chain: Chain) -> tuple[Variable, ...]:
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


def build_drilldown(chain: Chain) -> Dashboard:
    stage_filter = (STAGE, CASE_TYPE, DISTRICT)
    backlog = q.selector(metrics.BACKLOG, *stage_filter)
    lead = (SEGMENT, CASE_TYPE, DISTRICT)
    summary = (
        stat("Werkvoorraad", "Zaken die nu in de gekozen fase wachten.", "short",
              f"sum({backlog})"),
        stat(
            "Oudste open zaak",
            "Hoe lang de oudste zaak al in de gekozen fase wacht (alle zaaktypen en "
            "arrondissementen: deze meting kent geen uitsplitsing).",
            "s",
            f"max({q.selector(metrics.BACKLOG_OLDEST_AGE, STAGE)})",
        ),
        stat("Instroom", "Zaken per dag die de fase binnenkomen, nu.", PER_DAY,
              q.per_day_rate(q.INFLOW_TOTAL, *stage_filter)),
        stat("Uitstroom", "Zaken per dag die de fase verlaten, nu.", PER_DAY,
              q.per_day_rate(q.OUTFLOW_TOTAL, *stage_filter)),
        stat(
            "Doorlooptijd p50",
            "De helft van de afgeronde trajecten (gekozen doorlooptijd) was binnen deze tijd "
            "klaar.",
            "s",
            f"histogram_quantile(0.5, sum by (le) ({q.selector(q.LEAD_BUCKET, *lead)}))",
        ),
        stat(
            "Doorlooptijd p80",
            "80% van de afgeronde trajecten (gekozen doorlooptijd) was binnen deze tijd klaar.",
            "s",
            f"histogram_quantile(0.8, sum by (le) ({q.selector(q.LEAD_BUCKET, *lead)}))",
        ),
    )
    bands = (
        instant(
            f"sum({q.selector(metrics.BACKLOG_BY_AGE, *stage_filter, q.eq('age_band', band))})"
            " or vector(0)",
            band.replace("d", " dagen"),
        )
        for band, _ in chain.backlog_age_bands
    )
    age = bars(
        "Werkvoorraad naar leeftijd",
        "Wachtende zaken in de fase naar hoe lang ze er al zijn (leeftijdsklassen uit de "
        "ketendefinitie).",
        "short",
        *bands,
        width=8,
        height=8,
    )
    throughput = Panel(
        "timeseries",
        "Doorstroom: instroom en uitstroom",
        "Zaken per dag die de fase binnenkomen en verlaten, over de tijd.",
        PER_DAY,
        (
            PromQuery(q.per_day_rate(q.INFLOW_TOTAL, *stage_filter), "Instroom"),
            PromQuery(q.per_day_rate(q.OUTFLOW_TOTAL, *stage_filter), "Uitstroom"),
        ),
        width=16,
        height=8,
        min=0,
        custom=LINES,
    )
    heatmap = Panel(
        "heatmap",
        "Verdeling doorlooptijd",
        "Hoeveel trajecten (gekozen doorlooptijd) in elk tijdvak afgerond werden, naar hun "
        "doorlooptijd: elke rij is een histogramklasse, de normtermijnen zijn klassegrenzen.",
        "short",
        (
            PromQuery(
                f"sum by (le) (increase({q.selector(q.LEAD_BUCKET, *lead)}[$__rate_interval]))",
                "{{le}}",
                format="heatmap",
            ),
        ),
        width=16,
        height=9,
        options={
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                      "fill": "dark-orange", "reverse": False, "scale": "exponential"},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"show": True, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "unit": "s"},
        },
    )
    by_district = bars(
        "Werkvoorraad per arrondissement",
        "Wachtende zaken in de fase per arrondissement.",
        "short",
        instant(f"sum by (district) ({backlog})", "{{district}}"),
        width=8,
        height=9,
        overrides=tuple(Override(d, display_name=label)
                        for d, label in chain.spec.districts.items()),
    )
    backlog_trend = Panel(
        "timeseries",
        "Werkvoorraad over de tijd, per zaaktype",
        "Wachtende zaken in de fase, per zaaktype, over de tijd.",
        "short",
        (PromQuery(f"sum by (case_type) ({backlog})", "{{case_type}}"),),
        width=12,
        height=8,
        min=0,
        overrides=tuple(Override(c, display_name=label)
                        for c, label in chain.spec.case_types.items()),
        custom={"drawStyle": "line", "fillOpacity": 20, "stacking": {"mode": "normal"},
                "showPoints": "never"},
    )
    closed = bars(
        "Afgesloten zaken naar uitkomst",
        "Zaken die de keten verlieten (bijvoorbeeld sepot, vrijspraak, inning afgerond), naar "
        "uitkomst, voor het gekozen zaaktype en arrondissement; over de hele keten.",
        "short",
        instant(f"sum by (outcome) ({q.selector(q.CLOSED_TOTAL, CASE_TYPE, DISTRICT)})",
                "{{outcome}}"),
        width=12,
        height=8,
    )
    return Dashboard(
        uid=DRILLDOWN,
        title="Details per fase",
        description="Werkvoorraad, leeftijd, doorlooptijd en doorstroom van een fase, per "
        "organisatie, zaaktype en arrondissement.",
        rows=(summary, (age, throughput), (heatmap, by_district), (backlog_trend, closed)),
        datasource=PROMETHEUS,
        variables=variables(chain),
        links=(
            Link("Ketenoverzicht", f"/d/{OVERVIEW}"),
            Link("Gezondheid monitor", f"/d/{PIPELINE}"),
            Link("Historie", f"/d/{HISTORY}"),
        ),
    )

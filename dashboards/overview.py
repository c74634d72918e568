"""Dashboard 1, Ketenoverzicht: the Secretary-General's one-screen view of the chain.

    board = build_overview(load_chain())

Per partner and chain-wide: the backlog now and its change over four weeks, inflow against outflow,
lead times (p50, p80) and the share within every configured norm with traffic-light colours taken
from the norm's own targets, the freshness of each partner's feed and the alerts that fire. Every
panel says in its description what it counts, in Dutch, for a reader who is not a specialist.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat
from ketenmonitor.dashboards import queries as q
from ketenmonitor.dashboards.board import Board, dashboard
from ketenmonitor.dashboards.panels import (
    PER_DAY,
    Link,
    Override,
    Prom,
    Step,
    bars,
    instant,
    pack,
    table_panel,
    timeseries,
)
from ketenmonitor.dashboards.panels import stat as stat_panel
from ketenmonitor.dashboards.uids import DRILLDOWN, HISTORY, OVERVIEW, PIPELINE

from ketenmonitor.alerting import rules
from ketenmonitor.alerting.durations import parse_duration
from ketenmonitor.alerting.policy import AlertPolicy, load_policy
from ketenmonitor.domain.chain import Chain, NormSpec, PartnerSpec

CHANGE_WINDOW = "4w"

RED, ORANGE, GREEN = "red", "orange", "green"


def norm_thresholds(norm: NormSpec) -> tuple[Step, ...]:
    """Traffic light of a norm: red below it, orange from interim target, green from target."""
    steps = [Step(RED)]
    if norm.interim_target is not None:
        steps.append(Step(ORANGE, norm.interim_target))
    steps.append(Step(GREEN, norm.target))
    return tuple(steps)


def freshness_thresholds(policy: AlertPolicy, partner: str) -> tuple[Step, ...]:
    """Red where the stale-feed alert fires (alerting policy), orange from halfway there."""
    stale = parse_duration(policy.stale_after(partner))
    return (Step(GREEN), Step(ORANGE, stale / 2), Step(RED, stale))


def build_overview(chain: Chain, policy: AlertPolicy | None = None) -> Board:
    policy = policy or load_policy()
    partner_names = tuple(
        Override(p.id, display_name=p.label) for p in chain.spec.partners
    )
    drill = Link(
        "Details per fase",
        f"/d/{DRILLDOWN}?${{__url_time_range}}&var-organisation=${{__field.labels.organisation}}",
    )
    backlog = rules.BACKLOG_SUM  # per stage, already the max across workers
    header = (
        stat_panel(
            "Werkvoorraad keten",
            "Aantal zaken dat nu in een fase van de keten wacht (werkvoorraad), opgeteld over "
            "alle fasen en organisaties. Een zaak telt mee in elke fase waarin zij nu open staat.",
            "short",
            instant(f"sum({backlog})", "Werkvoorraad"),
            width=4,
            height=5,
            thresholds=(Step("green"),),
            color_mode="palette-classic",
        ),
        stat_panel(
            "Werkvoorraad: verandering 4 weken",
            "Hoeveel zaken de werkvoorraad van de hele keten in de laatste vier weken is gegroeid "
            "(positief, rood) of gekrompen (negatief, groen); meet Prometheus nog geen vier "
            "weken, dan de verandering sinds het begin van de metingen.",
            "short",
            instant(q.backlog_change(window=CHANGE_WINDOW), "Verandering"),
            width=4,
            height=5,
            thresholds=(Step(GREEN), Step(RED, 1)),
        ),
        bars(
            "Werkvoorraad per organisatie",
            "Zaken die nu wachten in de fasen van elke organisatie. Klik op een balk voor de "
            "details per fase.",
            "short",
            instant(f"sum by (organisation) ({backlog})", "{{organisation}}"),
            width=6,
            height=5,
            overrides=partner_names,
            data_links=(drill,),
        ),
        bars(
            "Werkvoorraad per organisatie: verandering 4 weken",
            "Groei (rood) of krimp (groen) van de werkvoorraad van elke organisatie in de laatste "
            "vier weken, in zaken.",
            "short",
            instant(q.backlog_change("organisation", CHANGE_WINDOW), "{{organisation}}"),
            width=6,
            height=5,
            thresholds=(Step(GREEN), Step(RED, 1)),
            color_mode="thresholds",
            overrides=partner_names,
            data_links=(drill,),
        ),
        stat_panel(
            "Actieve waarschuwingen",
            "Aantal waarschuwingen (alerts) dat nu afgaat: normoverschrijding, groeiende "
            "werkvoorraad, een partner die stil valt of een storing in de monitor.",
            "short",
            instant(f'count({q.selector(q.ALERTS, q.eq("alertstate", "firing"))}) or vector(0)',
                    "Waarschuwingen"),
            width=4,
            height=5,
            thresholds=(Step(GREEN), Step(RED, 1)),
        ),
    )
    flows = tuple(_flow_panel(chain, partner.id, partner.label) for partner in _stage_owners(chain))
    norms = [_norm_panel(chain, norm) for norm in chain.spec.norms]
    if chain.spec.stages:
        norms.append(_chain_flow_panel(chain))
    norm_rows = pack(norms)  # as many norms as the chain defines, wrapped over rows
    footer = (
        _lead_time_panel(chain),
        bars(
            "Versheid gegevens per partner",
            "Tijd sinds het nieuwste bericht dat van een partner binnenkwam (Kafka-tijdstip). "
            "Rood zodra de waarschuwing 'partner stil' afgaat (per partner ingesteld, "
            "standaard na "
            f"{policy.stale_feed.after}), oranje vanaf de helft daarvan: dan lopen de cijfers "
            "van die partner achter.",
            "s",
            instant(f"max by (organisation) ({rules.FEED_AGE})", "{{organisation}}"),
            width=6,
            height=8,
            color_mode="thresholds",
            overrides=tuple(
                Override(p.id, display_name=p.label, thresholds=freshness_thresholds(policy, p.id))
                for p in chain.spec.partners
            ),
        ),
    )
    alerts_table = table_panel(
        "Waarschuwingen per organisatie",
        "De waarschuwingen die nu afgaan, per soort, eigenaar (organisatie) en ernst.",
        "short",
        Prom(
            "count by (alertname, organisation, severity) "
            f'({q.selector(q.ALERTS, q.eq("alertstate", "firing"))})',
            instant=True,
            format="table",
        ),
        width=6,
        height=8,
    )
    return dashboard(
        OVERVIEW,
        "Ketenoverzicht",
        "De strafrechtketen in een oogopslag: werkvoorraad, instroom en uitstroom, "
        "doorlooptijden tegen de normen, versheid van de gegevens en waarschuwingen.",
        (header, flows, *norm_rows, (*footer, alerts_table)),
        links=(
            Link("Details per fase", f"/d/{DRILLDOWN}"),
            Link("Gezondheid monitor", f"/d/{PIPELINE}"),
            Link("Historie", f"/d/{HISTORY}"),
        ),
    )


def _stage_owners(chain: Chain) -> list[PartnerSpec]:  # partners that own at least one stage
    owners = set(chain.stage_organisation.values())
    return [p for p in chain.spec.partners if p.id in owners]


def _flow_panel(chain: Chain, organisation: str, label: str) -> Any:
    org = q.eq("organisation", organisation)
    return timeseries(
        f"{label}: instroom en uitstroom",
        f"Zaken per dag die een fase van {label} binnenkomen (instroom) en verlaten (uitstroom), "
        "telkens gemiddeld over de voorafgaande dag (na correcties). Ligt de uitstroom langere "
        "tijd onder de instroom, dan groeit de werkvoorraad.",
        PER_DAY,
        Prom(q.recorded_rate_per_day(rules.INFLOW_RATE1D, org), "Instroom"),
        Prom(q.recorded_rate_per_day(rules.OUTFLOW_RATE1D, org), "Uitstroom"),
        width=24 // max(1, len(_stage_owners(chain))),
        height=7,
    )


def _chain_flow_panel(chain: Chain) -> stat.Panel:
    """Chain-wide: cases entering the first stage against cases leaving the chain (closed)."""
    first = chain.spec.stages[0]
    return stat_panel(
        "Keten: instroom en afgesloten",
        f"Zaken per dag die de keten binnenkomen (instroom in de eerste fase, {first.label}) en "
        "zaken per dag die de keten verlaten (afgesloten, bijvoorbeeld sepot, vrijspraak of "
        "inning afgerond), gemiddeld over de laatste dag. Blijft het tweede getal achter, dan "
        "groeit de keten als geheel.",
        PER_DAY,
        instant(
            q.recorded_rate_per_day(rules.INFLOW_RATE1D, q.eq("stage", first.id)), "Instroom"
        ),
        instant(q.recorded_rate_per_day(rules.CLOSED_RATE1D), "Afgesloten"),
        text="value_and_name",
        width=8,
        height=4,
        decimals=0,
        thresholds=(Step("green"),),
        color_mode="palette-classic",
    )


def _norm_panel(chain: Chain, norm: NormSpec) -> stat.Panel:
    segment = next(s.label for s in chain.spec.segments if s.id == norm.segment)
    types = ""
    if norm.case_types:
        types = " (" + ", ".join(chain.spec.case_types[c] for c in norm.case_types) + ")"
    interim = ""
    if norm.interim_target is not None:
        interim = f" Tussendoel {norm.interim_target:.0%} (oranje)."
    return stat_panel(
        norm.label,
        f"Van de trajecten '{segment}'{types} die in de gekozen periode (tijdkiezer) werden "
        f"afgerond: het deel dat binnen {norm.within_days} dagen klaar was, na correcties. "
        f"Norm: {norm.target:.0%} (groen)." + interim + " Rood: onder de norm.",
        "percentunit",
        instant(q.share_within_norm(norm), "Binnen norm"),
        color="background",
        thresholds=norm_thresholds(norm),
        min=0,
        max=1,
        decimals=0,
    )


def _lead_time_panel(chain: Chain) -> bargauge.Panel:
    queries: list[Prom] = []
    overrides: list[Override] = []
    for norm in chain.spec.norms:
        for quantile, name in ((0.5, "p50"), (0.8, "p80")):
            legend = f"{norm.label} ({name})"
            queries.append(instant(q.lead_time_quantile(quantile, norm), legend))
            overrides.append(
                Override(legend, thresholds=(Step(GREEN), Step(RED, norm.within_seconds)))
            )
    return bars(
        "Doorlooptijd tegen de norm (p50 en p80)",
        "Per norm de doorlooptijd waarbinnen de helft (p50) en 80% (p80) van de trajecten die "
        "in de gekozen periode (tijdkiezer) werden afgerond klaar was, na correcties. Rood: "
        "langer dan de normtermijn.",
        "s",
        *queries,
        width=12,
        height=8,
        thresholds=(Step(GREEN),),
        color_mode="thresholds",
        overrides=tuple(overrides),
    )


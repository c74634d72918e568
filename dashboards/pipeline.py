"""Dashboard 3, Gezondheid monitor: is the monitor itself working, and are its figures current?

    board = build_pipeline(load_chain())

Event rates per partner, rejected events by reason, duplicate deliveries, the freshness of each
feed, and the workers: scrape health, owned case-state partitions, cases held in state, consumer
lag (through the recorded per-topic sum) and the time since each worker's last offset commit.
"""

from __future__ import annotations

from ketenmonitor.dashboards import queries as q
from ketenmonitor.dashboards.board import Board, dashboard
from ketenmonitor.dashboards.panels import (
    Link,
    Override,
    Prom,
    Step,
    bars,
    instant,
    stat,
    timeseries,
)
from ketenmonitor.dashboards.uids import DRILLDOWN, OVERVIEW, PIPELINE

from ketenmonitor import metric_names as metrics
from ketenmonitor.alerting.rules import FEED_AGE, LAG_SUM, LAST_COMMIT, W_ACCEPTED, W_REJECTED
from ketenmonitor.domain.chain import Chain
from ketenmonitor.metric_names import WORKER_JOB

RATE = f"[{q.RATE_INTERVAL}]"


def build_pipeline(chain: Chain) -> Board:
    workers_up = q.selector(q.UP, q.eq("job", WORKER_JOB))
    # Events per second now: per worker (recorded per-worker sums), then the max across workers.
    accepted = f"sum by ({q.WORKER}) (rate({W_ACCEPTED}{RATE}))"
    duplicates = q.total(metrics.EVENTS_DUPLICATE)
    partner_names = tuple(Override(p.id, display_name=p.label) for p in chain.spec.partners)
    summary = (
        stat(
            "Workers bereikbaar",
            "Aantal stream-workers waarvan Prometheus de meetwaarden kon ophalen. Rood: geen "
            "enkele.",
            "short",
            f"sum({workers_up})",
            thresholds=(Step("red"), Step("green", 1)),
        ),
        stat(
            "Events per seconde",
            "Geaccepteerde events per seconde, alle partners samen (verwerkingstijd).",
            "cps",
            f"max({accepted})",
        ),
        stat(
            "Aandeel afgekeurd",
            "Deel van de binnenkomende events dat het contract schond en naar de "
            "dead-letter-topic ging, in de gekozen periode (tijdkiezer).",
            "percentunit",
            "max(\n"
            f"  sum by ({q.WORKER}) (increase({W_REJECTED}[{q.RANGE}]))\n"
            f"  / (sum by ({q.WORKER}) (increase({W_ACCEPTED}[{q.RANGE}]))"
            f" + sum by ({q.WORKER}) (increase({W_REJECTED}[{q.RANGE}])))\n)",
        ),
        stat(
            "Dubbele aanleveringen",
            "Aantal keren dat een event-id in de gekozen periode (tijdkiezer) opnieuw binnenkwam "
            "en genegeerd werd.",
            "short",
            f"max({q.worker_sum(f'increase({duplicates}[{q.RANGE}])')})",
        ),
        stat(
            "Zaken in toestand",
            "Zaken die de keten nu in haar toestand bijhoudt (elke worker meldt de hele keten).",
            "short",
            q.gauge(metrics.CASES_TRACKED),
        ),
        stat(
            "Partities in bezit",
            "Partities van de zaaktoestand die de workers samen nu bezitten; hoort gelijk te zijn "
            "aan het geconfigureerde aantal partities.",
            "short",
            f"sum({metrics.OWNED_PARTITIONS})",
        ),
    )
    rates = (
        timeseries(
            "Binnenkomende events per partner",
            "Geaccepteerde events per seconde, per partner (inclusief dubbele aanleveringen).",
            "cps",
            Prom(f"max by (organisation) (rate({W_ACCEPTED}{RATE}))", "{{organisation}}"),
            width=6,
            overrides=partner_names,
        ),
        timeseries(
            "Afgekeurde events per reden",
            "Events per seconde die het contract schonden, per reden (bijvoorbeeld ongeldige "
            "JSON of een onbekende mijlpaal) en partner.",
            "cps",
            Prom(
                f"max by (organisation, reason) (rate({q.total(metrics.EVENTS_REJECTED)}{RATE}))",
                "{{organisation}}: {{reason}}",
            ),
            width=6,
        ),
        timeseries(
            "Laatheid van events (p50, p90)",
            "Hoe lang na de mijlpaal (gebeurtenistijd) het event bij Kafka binnenkwam, per "
            "partner: mediaan en 90e percentiel over de geaccepteerde events van het venster.",
            "s",
            *(
                Prom(
                    f"histogram_quantile({quantile}, max by (le, organisation) "
                    f"(rate({metrics.EVENT_LATENESS}_bucket{RATE})))",
                    f"{{{{organisation}}}} p{int(quantile * 100)}",
                )
                for quantile in (0.5, 0.9)
            ),
            width=6,
        ),
        timeseries(
            "Dubbele aanleveringen",
            "Events per seconde met een event-id dat al verwerkt was; die tellen niet dubbel mee.",
            "cps",
            Prom(f"max({q.worker_sum(f'rate({duplicates}{RATE})')})", "Dubbel"),
            width=6,
        ),
    )
    workers = (
        timeseries(
            "Versheid per partner",
            "Tijd sinds het nieuwste bericht van elke partner (Kafka-tijdstip), over de tijd.",
            "s",
            Prom(f"max by (organisation) ({FEED_AGE})", "{{organisation}}"),
            width=8,
            overrides=partner_names,
        ),
        bars(
            "Partities per worker",
            "Partities van de zaaktoestand die elke worker nu bezit. Een worker zonder partities "
            "doet niets; na een herstart verdelen de workers de partities opnieuw.",
            "short",
            instant(f"sum by (instance) ({metrics.OWNED_PARTITIONS})", "{{instance}}"),
            width=8,
            height=8,
        ),
        timeseries(
            "Bereikbaarheid workers",
            "1 als Prometheus de worker kon uitlezen, 0 als niet.",
            "short",
            Prom(f"sum by (instance) ({workers_up})", "{{instance}}"),
            width=8,
            max=1,
            style="steps",
        ),
    )
    progress = (
        timeseries(
            "Achterstand verwerking (consumer lag)",
            "Berichten per topic die binnengekomen zijn maar nog niet verwerkt en vastgelegd "
            "(commit), opgeteld over de workers (elke worker meldt zijn eigen partities). "
            "Blijft dit oplopen, dan houden de workers het aanbod niet bij.",
            "short",
            Prom(f"sum by (topic) ({LAG_SUM})", "{{topic}}"),
            width=12,
        ),
        timeseries(
            "Tijd sinds laatste commit",
            "Hoe lang geleden elke worker voor het laatst zijn voortgang (offsets) vastlegde. "
            "Loopt dit op terwijl er berichten wachten, dan staat de worker stil.",
            "s",
            Prom(f"time() - max by (instance) ({LAST_COMMIT})", "{{instance}}"),
            width=12,
        ),
    )
    return dashboard(
        PIPELINE,
        "Gezondheid monitor",
        "Werkt de monitor zelf, en zijn de cijfers actueel? Eventstromen, afkeur, "
        "dubbele aanleveringen, versheid en workers.",
        (summary, rates, workers, progress),
        time_from="now-6h",
        refresh="30s",
        links=(
            Link("Ketenoverzicht", f"/d/{OVERVIEW}"),
            Link("Details per fase", f"/d/{DRILLDOWN}"),
        ),
    )

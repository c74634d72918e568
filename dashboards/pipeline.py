"""Dashboard 3, Gezondheid monitor: is the monitor itself working, and are its figures current?

    board = build_pipeline(load_chain())

Event rates per partner, rejected events by reason, duplicate deliveries, the freshness of each
feed, and the workers: scrape health, owned case-state partitions, cases held in state, consumer
lag (through the recorded per-topic sum) and the time since each worker's last offset commit.
"""

from __future__ import annotations

from dashboards import queries as q
from dashboards.datasources import PROMETHEUS
from dashboards.model import Dashboard, Link, Override, PromQuery, Step
from dashboards.options import LINES
from dashboards.panels import bars, instant, stat, timeseries
from dashboards.uids import DRILLDOWN, OVERVIEW, PIPELINE
from ketenmonitor import metric_names as metrics
from ketenmonitor.alerting.rules import LAG_SUM, LAST_COMMIT
from ketenmonitor.domain.chain import Chain
from ketenmonitor.metric_names import WORKER_JOB

RATE = "[$__rate_interval]"


def build_pipeline(chain: Chain) -> Dashboard:
    workers_up = q.selector(q.UP, q.eq("job", WORKER_JOB))
    accepted = f"sum(rate({q.ACCEPTED_TOTAL}{RATE}))"
    rejected = f"sum(rate({q.REJECTED_TOTAL}{RATE}))"
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
            accepted,
        ),
        stat(
            "Aandeel afgekeurd",
            "Deel van de binnenkomende events dat het contract schond en naar de "
            "dead-letter-topic ging.",
            "percentunit",
            f"{rejected} / ({accepted} + {rejected})",
        ),
        stat(
            "Dubbele aanleveringen",
            "Aantal keren dat een event-id opnieuw binnenkwam en genegeerd werd (totaal).",
            "short",
            f"sum({q.DUPLICATE_TOTAL})",
        ),
        stat(
            "Zaken in toestand",
            "Zaken die de workers in hun toestand bijhouden, opgeteld over alle workers.",
            "short",
            f"sum({metrics.CASES_TRACKED})",
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
            PromQuery(f"sum by (organisation) (rate({q.ACCEPTED_TOTAL}{RATE}))",
                      "{{organisation}}"),
            width=6,
            overrides=partner_names,
        ),
        timeseries(
            "Afgekeurde events per reden",
            "Events per seconde die het contract schonden, per reden (bijvoorbeeld ongeldige "
            "JSON of een onbekende mijlpaal) en partner.",
            "cps",
            PromQuery(f"sum by (organisation, reason) (rate({q.REJECTED_TOTAL}{RATE}))",
                      "{{organisation}}: {{reason}}"),
            width=6,
        ),
        timeseries(
            "Laatheid van events (p50, p90)",
            "Hoe lang na de mijlpaal (gebeurtenistijd) het event bij Kafka binnenkwam, per "
            "partner: mediaan en 90e percentiel over de geaccepteerde events van het venster.",
            "s",
            *(
                PromQuery(
                    f"histogram_quantile({quantile}, sum by (le, organisation) "
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
            PromQuery(f"sum(rate({q.DUPLICATE_TOTAL}{RATE}))", "Dubbel"),
            width=6,
        ),
    )
    workers = (
        timeseries(
            "Versheid per partner",
            "Tijd sinds het nieuwste bericht van elke partner (Kafka-tijdstip), over de tijd.",
            "s",
            PromQuery(f"time() - max by (organisation) ({metrics.PARTNER_LAST_EVENT})",
                      "{{organisation}}"),
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
            PromQuery(f"sum by (instance) ({workers_up})", "{{instance}}"),
            width=8,
            max=1,
            custom={**LINES, "lineInterpolation": "stepAfter"},
        ),
    )
    progress = (
        timeseries(
            "Achterstand verwerking (consumer lag)",
            "Berichten per topic die binnengekomen zijn maar nog niet verwerkt en vastgelegd "
            "(commit). Blijft dit oplopen, dan houden de workers het aanbod niet bij.",
            "short",
            PromQuery(f"sum by (topic) ({LAG_SUM})", "{{topic}}"),
            width=12,
        ),
        timeseries(
            "Tijd sinds laatste commit",
            "Hoe lang geleden elke worker voor het laatst zijn voortgang (offsets) vastlegde. "
            "Loopt dit op terwijl er berichten wachten, dan staat de worker stil.",
            "s",
            PromQuery(f"time() - max by (instance) ({LAST_COMMIT})", "{{instance}}"),
            width=12,
        ),
    )
    return Dashboard(
        uid=PIPELINE,
        title="Gezondheid monitor",
        description="Werkt de monitor zelf, en zijn de cijfers actueel? Eventstromen, afkeur, "
        "dubbele aanleveringen, versheid en workers.",
        rows=(summary, rates, workers, progress),
        datasource=PROMETHEUS,
        time_from="now-6h",
        refresh="30s",
        links=(
            Link("Ketenoverzicht", f"/d/{OVERVIEW}"),
            Link("Details per fase", f"/d/{DRILLDOWN}"),
        ),
    )

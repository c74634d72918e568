"""PromQL for the dashboards, built from the metric-name constants of ketenmonitor/metric_names.py.

    selector(metrics.BACKLOG, eq("stage", "court_trial"))
        -> 'ketenmonitor_backlog_cases{stage="court_trial"}'
    share_within_norm(norm)
        -> bucket{le="<limit>"} / count, over the norm's segment and case types

No metric name is typed here: names come from streams.metrics (the worker's exporter), from the
recording rules (ketenmonitor.alerting.rules) or are Prometheus's own series (ALERTS, up), so a
renamed metric breaks the build, not a dashboard.
"""

from __future__ import annotations

from ketenmonitor import metric_names as metrics
from ketenmonitor.alerting.rules import BACKLOG_SUM
from ketenmonitor.domain.chain import NormSpec

# Series that Prometheus itself writes: firing alerts and the scrape health of every target.
ALERTS = "ALERTS"
UP = "up"
PROMETHEUS_SERIES = frozenset({ALERTS, UP})

INFLOW_TOTAL = f"{metrics.STAGE_INFLOW}_total"
OUTFLOW_TOTAL = f"{metrics.STAGE_OUTFLOW}_total"
ACCEPTED_TOTAL = f"{metrics.EVENTS_ACCEPTED}_total"
REJECTED_TOTAL = f"{metrics.EVENTS_REJECTED}_total"
DUPLICATE_TOTAL = f"{metrics.EVENTS_DUPLICATE}_total"
CLOSED_TOTAL = f"{metrics.CASES_CLOSED}_total"
LEAD_BUCKET = f"{metrics.LEAD_TIME}_bucket"
LEAD_COUNT = f"{metrics.LEAD_TIME}_count"

SECONDS_PER_DAY = 86_400


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def regex(label: str, value: str) -> str:
    return f'{label}=~"{value}"'


def selector(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def le_label(seconds: float) -> str:
    """A bucket bound as Prometheus 2 and 3 store it (metric_names.le: "3.024e+06")."""
    return metrics.le(seconds)


def norm_matchers(norm: NormSpec) -> tuple[str, ...]:
    """The lead-time series a norm applies to: its segment, and its case types if it names any."""
    matchers = [eq("segment", norm.segment)]
    if norm.case_types:
        matchers.append(regex("case_type", "|".join(norm.case_types)))
    return tuple(matchers)


def share_within_norm(norm: NormSpec) -> str:
    """Exact share of completed segments within the norm: the norm limit is a bucket bound."""
    matchers = norm_matchers(norm)
    within = selector(LEAD_BUCKET, *matchers, eq("le", le_label(norm.within_seconds)))
    return f"sum({within}) / sum({selector(LEAD_COUNT, *matchers)})"


def lead_time_quantile(quantile: float, norm: NormSpec) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"({selector(LEAD_BUCKET, *norm_matchers(norm))}))"
    )


def per_day_rate(metric: str, *matchers: str, by: str = "") -> str:
    """Cases per day, from a counter (rate per second times a day)."""
    grouping = f" by ({by})" if by else ""
    rate = f"rate({selector(metric, *matchers)}[$__rate_interval])"
    return f"sum{grouping} ({rate}) * {SECONDS_PER_DAY}"


def backlog_change(by: str = "", window: str = "4w") -> str:
    """Growth of the backlog over `window` (or since recording began, if that is shorter).

    delta() of the recorded per-stage sum: a handful of series, so a four-week window stays
    cheap, and it has a value as soon as the rule was evaluated twice (where `offset 4w` stays
    empty until Prometheus holds four weeks of history).
    """
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (delta({BACKLOG_SUM}[{window}]))"

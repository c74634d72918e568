"""PromQL for the dashboards, on the metrics model of ketenmonitor/metric_names.py.

    per_worker_max("increase", metrics.STAGE_INFLOW, metrics.STAGE_INFLOW_WITHDRAWN, "$__range",
                   eq("stage", "court_trial"))
        -> max (sum by (instance, job) (increase(..._total{stage="court_trial"}[$__range]))
                - sum by (instance, job) (increase(..._withdrawn_..._total{...}[$__range])))
    share_within_norm(norm) -> the recorded rules' within-norm ratio over the time picker's range

Every worker exports the WHOLE chain's totals, and every counter series only goes up as
Prometheus sees it. So a figure over a window is rate()/increase() per series, summed within one
worker (by instance, job), minus what corrections withdrew (its own monotonic counter), and only
then the max across workers: never a sum across workers, never a rate of such a sum. Gauges are
summed within a worker and max'ed across workers the same way. Windows that the rules record
(stage:...:rate1d, stage:...:sum) are read from the recorded series.

No metric name is typed here: names come from ketenmonitor.metric_names, from the recording
rules (ketenmonitor.alerting.rules) or are Prometheus's own series (ALERTS, up), so a renamed
metric breaks the build, not a dashboard.
"""

from __future__ import annotations

from ketenmonitor import metric_names as metrics
from ketenmonitor.alerting import rules
from ketenmonitor.domain.chain import SECONDS_PER_DAY, NormSpec

# Series that Prometheus itself writes: firing alerts and the scrape health of every target.
ALERTS = "ALERTS"
UP = "up"
PROMETHEUS_SERIES = frozenset({ALERTS, UP})

WORKER = ", ".join(metrics.WORKER_LABELS)  # "instance, job": one worker's copy of the totals
RANGE = "$__range"  # the time picker's range (Grafana)
RATE_INTERVAL = "$__rate_interval"  # a few scrape intervals: "now", on a time series panel


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def regex(label: str, value: str) -> str:
    return f'{label}=~"{value}"'


def selector(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def total(counter: str) -> str:
    """The exported name of a counter (metric_names holds it without `_total`)."""
    return f"{counter}_total"


def _by(labels: str) -> str:
    return f" by ({labels})" if labels else ""


def worker_sum(expr: str, by: str = "") -> str:
    """Sum within one worker, keeping `by`: never across workers."""
    keep = f"{WORKER}, {by}" if by else WORKER
    return f"sum by ({keep}) ({expr})"


def per_worker_max(
    function: str, added: str, withdrawn: str, window: str, *matchers: str, by: str = ""
) -> str:
    """Net rate()/increase() of a counter pair over `window`: per series, summed per worker,
    the withdrawn part subtracted, then the max across workers (by `by`)."""
    plus = worker_sum(f"{function}({selector(total(added), *matchers)}[{window}])", by)
    minus = worker_sum(f"{function}({selector(total(withdrawn), *matchers)}[{window}])", by)
    return f"max{_by(by)} ({plus} - {minus})"


def per_day(expr: str) -> str:
    """A rate per second as cases per day."""
    return f"{expr} * {SECONDS_PER_DAY}"


def net_rate_per_day(
    added: str, withdrawn: str, *matchers: str, window: str = RATE_INTERVAL, by: str = ""
) -> str:
    return per_day(per_worker_max("rate", added, withdrawn, window, *matchers, by=by))


def gauge(metric: str, *matchers: str, by: str = "") -> str:
    """A chain gauge: summed within each worker, then the max across workers."""
    return f"max{_by(by)} ({worker_sum(selector(metric, *matchers), by)})"


def recorded_rate_per_day(recorded: str, *matchers: str, by: str = "") -> str:
    """Cases per day from a recorded chain-wide rate (already max'ed across workers)."""
    return per_day(f"sum{_by(by)} ({selector(recorded, *matchers)})")


def norm_matchers(norm: NormSpec) -> tuple[str, ...]:
    """The lead-time series a norm applies to: its segment, and its case types if it names any."""
    matchers = [eq("segment", norm.segment)]
    if norm.case_types:
        matchers.append(regex("case_type", "|".join(norm.case_types)))
    return tuple(matchers)


def share_within_norm(norm: NormSpec, window: str = RANGE) -> str:
    """Exact share of completed segments within the norm over `window` (the norm limit is a
    bucket bound), from the recorded per-worker sums: the same expression as the rules'
    norm:...:ratio<window> records, so a dashboard and an alert never disagree."""
    return rules.within_norm_ratio(norm, window, "segment")


def lead_time_quantile(quantile: float, norm: NormSpec, window: str = RANGE) -> str:
    """p50/p80 of the norm's segments completed within `window`, from the recorded per-worker
    bucket sums (every bucket up to +Inf), net of withdrawn completions."""
    return histogram_quantile(
        quantile, rules.W_LEAD_BUCKET, rules.W_LEAD_BUCKET_WITHDRAWN, window, *norm_matchers(norm)
    )


def histogram_quantile(
    quantile: float, added: str, withdrawn: str, window: str, *matchers: str
) -> str:
    """A quantile of a histogram pair (cumulative buckets, withdrawn buckets) over `window`."""
    return f"histogram_quantile({quantile}, {bucket_increase(added, withdrawn, window, *matchers)})"


def bucket_increase(added: str, withdrawn: str, window: str, *matchers: str) -> str:
    """Net completions per bucket (`le`) over `window`, per worker, max across workers."""
    plus = worker_sum(f"increase({selector(added, *matchers)}[{window}])", "le")
    minus = worker_sum(f"increase({selector(withdrawn, *matchers)}[{window}])", "le")
    return f"max by (le) ({plus} - {minus})"


def backlog_change(by: str = "", window: str = "4w") -> str:
    """Growth of the backlog over `window` (or since recording began, if that is shorter).

    delta() of the recorded per-stage backlog (already max'ed across workers): a handful of
    series, so a four-week window stays cheap, and it has a value as soon as the rule was
    evaluated twice (where `offset 4w` stays empty until Prometheus holds four weeks of history).
    """
    return f"sum{_by(by)} (delta({rules.BACKLOG_SUM}[{window}]))"

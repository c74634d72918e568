"""Every metric and recorded-series name of Ketenmonitor, and how bucket bounds are written.

    from ketenmonitor import metric_names as names
    f"{names.STAGE_INFLOW}_total"            # the exported counter
    names.le(3024000.0)                      # "3.024e+06": the `le` label Prometheus stores

Plain strings only: the worker's exporter (streams/metrics.py), the rule generator
(ketenmonitor/alerting/rules.py) and the dashboards all read them from here, and none of them
needs a Prometheus client library to know a name.

Counters are exported as cumulative totals of everything ever added (`..._total`) next to a
cumulative count of what corrections and retractions withdrew (`..._withdrawn_..._total`): both
only go up, and the net figure over a window is increase(added) - increase(withdrawn).
"""

from __future__ import annotations

import math

PREFIX = "ketenmonitor"

# -- exported by every worker: the chain's totals over all partitions -------------------------
EVENTS_ACCEPTED = f"{PREFIX}_events_accepted"  # counters: exported with the suffix _total
EVENTS_REJECTED = f"{PREFIX}_events_rejected"
EVENTS_DUPLICATE = f"{PREFIX}_events_duplicate"
CORRECTIONS = f"{PREFIX}_corrections"
EVENTS_RETIRED_CASE = f"{PREFIX}_events_retired_case"  # events for a case already retired
PARTNER_LAST_EVENT = f"{PREFIX}_partner_last_event_timestamp_seconds"
EVENT_LATENESS = f"{PREFIX}_event_lateness_seconds"  # histogram
STAGE_INFLOW = f"{PREFIX}_stage_inflow_cases"
STAGE_INFLOW_WITHDRAWN = f"{PREFIX}_stage_inflow_withdrawn_cases"
STAGE_OUTFLOW = f"{PREFIX}_stage_outflow_cases"
STAGE_OUTFLOW_WITHDRAWN = f"{PREFIX}_stage_outflow_withdrawn_cases"
CASES_CLOSED = f"{PREFIX}_cases_closed"
CASES_CLOSED_WITHDRAWN = f"{PREFIX}_cases_closed_withdrawn"
LEAD_TIME = f"{PREFIX}_segment_lead_time_seconds"  # histogram
LEAD_TIME_WITHDRAWN = f"{PREFIX}_segment_lead_time_withdrawn_seconds"  # histogram
BACKLOG = f"{PREFIX}_backlog_cases"  # active cases only: dormant ones are counted apart
DORMANT = f"{PREFIX}_dormant_cases"  # open cases without an event past the stage's limit
BACKLOG_BY_AGE = f"{PREFIX}_backlog_age_band_cases"
BACKLOG_OLDEST_AGE = f"{PREFIX}_backlog_oldest_age_seconds"
MILESTONE_REPEATS = f"{PREFIX}_milestone_repeats"  # rework: a milestone reached again
MILESTONE_REPEATS_WITHDRAWN = f"{PREFIX}_milestone_repeats_withdrawn"
STAGE_REENTRIES = f"{PREFIX}_stage_reentries_cases"  # rework: a stage visited again
STAGE_REENTRIES_WITHDRAWN = f"{PREFIX}_stage_reentries_withdrawn_cases"
CASES_TRACKED = f"{PREFIX}_cases_tracked"
NORM_LIMIT = f"{PREFIX}_norm_limit_seconds"
NORM_TARGET = f"{PREFIX}_norm_target_ratio"
TOTALS_PARTITIONS = f"{PREFIX}_totals_partitions"  # partitions the worker's totals view holds

# -- exported per worker: the process itself ---------------------------------------------------
OWNED_PARTITIONS = f"{PREFIX}_worker_owned_partitions"
WORKER_HEALTHY = f"{PREFIX}_worker_healthy"
CONSUMER_LAG = f"{PREFIX}_consumer_lag_messages"
LAST_COMMIT = f"{PREFIX}_last_commit_timestamp_seconds"
AGENT_BUSY = f"{PREFIX}_agent_busy_seconds"
BUILD_INFO = f"{PREFIX}_build"  # Info: exported as ketenmonitor_build_info

COUNTERS = (
    EVENTS_ACCEPTED, EVENTS_REJECTED, EVENTS_DUPLICATE, CORRECTIONS, EVENTS_RETIRED_CASE,
    STAGE_INFLOW,
    STAGE_INFLOW_WITHDRAWN, STAGE_OUTFLOW, STAGE_OUTFLOW_WITHDRAWN, CASES_CLOSED,
    CASES_CLOSED_WITHDRAWN, MILESTONE_REPEATS, MILESTONE_REPEATS_WITHDRAWN, STAGE_REENTRIES,
    STAGE_REENTRIES_WITHDRAWN,
)
HISTOGRAMS = (EVENT_LATENESS, LEAD_TIME, LEAD_TIME_WITHDRAWN)
GAUGES = (
    PARTNER_LAST_EVENT, BACKLOG, DORMANT, BACKLOG_BY_AGE, BACKLOG_OLDEST_AGE, CASES_TRACKED,
    NORM_LIMIT, NORM_TARGET, TOTALS_PARTITIONS, OWNED_PARTITIONS, WORKER_HEALTHY, CONSUMER_LAG,
    LAST_COMMIT, AGENT_BUSY,
)
ALL_METRIC_NAMES = frozenset(
    [f"{c}_total" for c in COUNTERS]
    + [f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "count", "sum")]
    + list(GAUGES)
    + [f"{BUILD_INFO}_info"]
)

# The scrape job of the stream workers (deploy/prometheus, alert rules, dashboards).
WORKER_JOB = "ketenmonitor_worker"
# Labels that tell one worker's copy of the chain totals from another's: every worker exports the
# whole chain, so rules and panels take a rate per worker first and then the max across workers.
WORKER_LABELS = ("instance", "job")


def le(bound: float) -> str:
    """A bucket bound as Prometheus stores it: Go's shortest float format ('g', -1) with ".0"
    added to a whole number ("86400.0", "3.024e+06"), which Prometheus 3 normalises `le` to on
    ingestion (OpenMetrics float format) and prometheus_client's floatToGoString writes.
    Prometheus 2 stores the label as exposed, so exposition, rules and dashboards all write it
    this way and both versions hold the same string."""
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    if math.isnan(bound):
        return "NaN"
    text = repr(float(bound))
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.lstrip("-").replace(".", "").lstrip("0") or "0"
    exp = int(exponent) if exponent else _decimal_exponent(mantissa)
    if exp < -4 or exp >= 21:  # repr already uses an exponent in exactly this range
        digits_text = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{digits_text}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if exp >= 6:  # Go switches to an exponent from 1e6 on for the shortest form
        sign = "-" if bound < 0 else ""
        digits = digits.rstrip("0") or "0"
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e+{exp:02d}"
    return mantissa


def _decimal_exponent(mantissa: str) -> int:
    """The power of ten of the first significant digit of a plain decimal (no exponent)."""
    whole, _, fraction = mantissa.lstrip("-").partition(".")
    if whole.strip("0"):
        return len(whole.lstrip("0")) - 1
    stripped = fraction.lstrip("0")
    return -(len(fraction) - len(stripped) + 1) if stripped else 0

"""Every Prometheus metric of a Ketenmonitor worker, computed from state on each scrape.

    registry = CollectorRegistry()
    registry.register(ChainCollector(chain, view))   # view: what this worker owns right now
    generate_latest(registry)

Nothing here is a live counter that dies with the process: each value is read from the durable state
of the partitions this worker owns at the moment of the scrape (case totals rebuilt from the
changelogged case table; ingest counts from the changelogged ingest table). A worker that loses a
partition stops exporting it, its new owner starts, so the sum over workers is the truth. Sum the
counters across workers in PromQL, take max() of the timestamp gauges.

Names are constants here so that dashboards and alert rules refer to the same strings.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ketenmonitor.domain.chain import Chain
from ketenmonitor.domain.totals import ChainTotals, LeadTimeHistogram
from streams.ingest import LATENESS_BUCKETS_SECONDS, IngestStats

PREFIX = "ketenmonitor"
EVENTS_ACCEPTED = f"{PREFIX}_events_accepted"  # exported as ..._total
EVENTS_REJECTED = f"{PREFIX}_events_rejected"
EVENTS_DUPLICATE = f"{PREFIX}_events_duplicate"
PARTNER_LAST_EVENT = f"{PREFIX}_partner_last_event_timestamp_seconds"
STAGE_INFLOW = f"{PREFIX}_stage_inflow_cases"
STAGE_OUTFLOW = f"{PREFIX}_stage_outflow_cases"
BACKLOG = f"{PREFIX}_backlog_cases"
BACKLOG_BY_AGE = f"{PREFIX}_backlog_age_band_cases"
BACKLOG_OLDEST_AGE = f"{PREFIX}_backlog_oldest_age_seconds"
LEAD_TIME = f"{PREFIX}_segment_lead_time_seconds"
CASES_CLOSED = f"{PREFIX}_cases_closed"
CASES_TRACKED = f"{PREFIX}_cases_tracked"
NORM_LIMIT = f"{PREFIX}_norm_limit_seconds"
NORM_TARGET = f"{PREFIX}_norm_target_ratio"
OWNED_PARTITIONS = f"{PREFIX}_worker_owned_partitions"
CORRECTIONS = f"{PREFIX}_corrections"
CONSUMER_LAG = f"{PREFIX}_consumer_lag_messages"
LAST_COMMIT = f"{PREFIX}_last_commit_timestamp_seconds"
AGENT_BUSY = f"{PREFIX}_agent_busy_seconds"
EVENT_LATENESS = f"{PREFIX}_event_lateness_seconds"

ALL_METRIC_NAMES = {
    f"{EVENTS_ACCEPTED}_total",
    f"{EVENTS_REJECTED}_total",
    f"{EVENTS_DUPLICATE}_total",
    PARTNER_LAST_EVENT,
    f"{STAGE_INFLOW}_total",
    f"{STAGE_OUTFLOW}_total",
    BACKLOG,
    BACKLOG_BY_AGE,
    BACKLOG_OLDEST_AGE,
    f"{LEAD_TIME}_bucket",
    f"{LEAD_TIME}_count",
    f"{LEAD_TIME}_sum",
    f"{CASES_CLOSED}_total",
    CASES_TRACKED,
    NORM_LIMIT,
    NORM_TARGET,
    OWNED_PARTITIONS,
    f"{CORRECTIONS}_total",
    CONSUMER_LAG,
    LAST_COMMIT,
    AGENT_BUSY,
    f"{EVENT_LATENESS}_bucket",
    f"{EVENT_LATENESS}_count",
    f"{EVENT_LATENESS}_sum",
}


@dataclass
class OwnedState:
    """What one worker owns at the moment of a scrape."""

    case_totals: list[ChainTotals] = field(default_factory=list)
    ingest: list[tuple[str, IngestStats]] = field(default_factory=list)  # (organisation, stats)
    partitions: int = 0
    lag_by_topic: dict[str, int] = field(default_factory=dict)
    last_commit_timestamp: float | None = None
    busy_seconds: dict[str, float] = field(default_factory=dict)


class ChainCollector(Collector):
    def __init__(
        self,
        chain: Chain,
        owned: Callable[[], OwnedState],
        reference_time: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.owned = owned
        self.reference_time = reference_time

    def collect(self) -> Iterator[Metric]:
        owned = self.owned()
        yield from self._ingest_metrics(owned.ingest)
        yield from self._case_metrics(owned.case_totals)
        yield from self._norm_metrics()
        owned_partitions = GaugeMetricFamily(
            OWNED_PARTITIONS, "Case-state partitions this worker owns now."
        )
        owned_partitions.add_metric([], owned.partitions)
        yield owned_partitions
        yield from self._health_metrics(owned)

    # -- worker health (live, per process: these describe the process, not the chain) --------
    def _health_metrics(self, owned: OwnedState) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            CONSUMER_LAG,
            "Messages in this worker's partitions not yet committed (log end - committed offset).",
            labels=["topic"],
        )
        for topic, n in sorted(owned.lag_by_topic.items()):
            lag.add_metric([topic], n)
        yield lag
        commit = GaugeMetricFamily(
            LAST_COMMIT,
            "When this worker last committed consumer offsets (absent before its first commit).",
        )
        if owned.last_commit_timestamp is not None:
            commit.add_metric([], owned.last_commit_timestamp)
        yield commit
        busy = GaugeMetricFamily(
            AGENT_BUSY,
            "How long a worker stage (ingest, cases, commit: waiting for the batch's records to "
            "be acknowledged and its offsets committed) has been on its current batch (0 when "
            "idle). A value above the processing timeout means a stalled worker.",
            labels=["agent"],
        )
        for agent, seconds in sorted(owned.busy_seconds.items()):
            busy.add_metric([agent], seconds)
        yield busy

    # -- ingest -------------------------------------------------------------------------------
    def _ingest_metrics(self, ingest: Iterable[tuple[str, IngestStats]]) -> Iterator[Metric]:
        accepted: Counter[str] = Counter({p: 0 for p in self.chain.partner_ids})
        rejected: Counter[tuple[str, str]] = Counter()
        last_seen: dict[str, float] = {}
        lateness: dict[str, list[int]] = {p: [0] * (len(LATENESS_BUCKETS_SECONDS) + 1) for p in self.chain.partner_ids}
        lateness_sum: Counter[str] = Counter()
        for organisation, stats in ingest:
            for i, n in enumerate(stats.lateness):
                lateness[organisation][i] += n
            lateness_sum[organisation] += stats.lateness_sum
            accepted[organisation] += stats.accepted
            for reason, n in stats.rejected.items():
                rejected[(organisation, reason)] += n
            if stats.last_message_timestamp:
                last_seen[organisation] = max(
                    stats.last_message_timestamp, last_seen.get(organisation, 0.0)
                )
        family = CounterMetricFamily(
            EVENTS_ACCEPTED,
            "Events that passed the contract, per partner (duplicates included).",
            labels=["organisation"],
        )
        for organisation, n in sorted(accepted.items()):
            family.add_metric([organisation], n)
        yield family
        family = CounterMetricFamily(
            EVENTS_REJECTED,
            "Events that broke the contract and went to the dead-letter topic, by reason.",
            labels=["organisation", "reason"],
        )
        for (organisation, reason), n in sorted(rejected.items()):
            family.add_metric([organisation, reason], n)
        yield family
        gauge = GaugeMetricFamily(
            PARTNER_LAST_EVENT,
            "Kafka timestamp of the newest event received from a partner (feed freshness). "
            "Take max() across workers.",
            labels=["organisation"],
        )
        for organisation, ts in sorted(last_seen.items()):
            gauge.add_metric([organisation], ts)
        yield gauge
        histogram = HistogramMetricFamily(
            EVENT_LATENESS,
            "How long after the milestone (event time) its event reached Kafka, per partner "
            "(accepted events).",
            labels=["organisation"],
        )
        for organisation, counts in sorted(lateness.items()):
            buckets = _buckets(LATENESS_BUCKETS_SECONDS, counts)
            histogram.add_metric([organisation], buckets, lateness_sum[organisation])
        yield histogram

    # -- cases --------------------------------------------------------------------------------
    def _case_metrics(self, all_totals: list[ChainTotals]) -> Iterator[Metric]:
        chain = self.chain
        org = chain.stage_organisation
        inflow: Counter[tuple[str, str, str]] = Counter()
        outflow: Counter[tuple[str, str, str]] = Counter()
        by_age: Counter[tuple[str, str, str, str]] = Counter()
        closed: Counter[tuple[str, str, str]] = Counter()
        lead: dict[tuple[str, str, str], list[int]] = {}
        lead_sum: Counter[tuple[str, str, str]] = Counter()
        oldest: dict[str, int] = {}
        cases = duplicates = corrections = 0
        reference = self.reference_time()
        for totals in all_totals:
            inflow.update(totals.inflow)
            outflow.update(totals.outflow)
            by_age.update(totals.backlog_by_age(reference))
            closed.update(totals.closed)
            cases += totals.cases
            duplicates += totals.duplicates
            corrections += totals.corrections
            for key, hist in totals.lead_times.items():
                _add_histogram(lead, lead_sum, key, hist)
            for stage, hour in totals.oldest_open_entry().items():
                oldest[stage] = min(hour, oldest.get(stage, hour))

        family = CounterMetricFamily(
            EVENTS_DUPLICATE, "Deliveries of an event id that had already been applied."
        )
        family.add_metric([], duplicates)
        yield family
        family = CounterMetricFamily(
            CORRECTIONS,
            "Milestones held in corrected form (a re-sent milestone with a higher revision, or a "
            "retraction). A correction can lower a case counter below its earlier value: "
            "Prometheus reads that as a counter reset (see README, 'Corrections').",
        )
        family.add_metric([], corrections)
        yield family
        gauge = GaugeMetricFamily(CASES_TRACKED, "Cases held in this worker's case state.")
        gauge.add_metric([], cases)
        yield gauge

        stage_labels = ["stage", "organisation", "case_type", "district"]
        for name, doc, values in (
            (STAGE_INFLOW, "Cases that entered a stage (inflow, 'instroom').", inflow),
            (STAGE_OUTFLOW, "Cases that left a stage (outflow, 'uitstroom').", outflow),
        ):
            family = CounterMetricFamily(name, doc, labels=stage_labels)
            for (stage, ct, d), n in sorted(values.items()):
                family.add_metric([stage, org[stage], ct, d], n)
            yield family
        gauge = GaugeMetricFamily(
            BACKLOG, "Cases in a stage now (backlog, 'werkvoorraad').", labels=stage_labels
        )
        for (stage, ct, d), n in sorted(inflow.items()):
            gauge.add_metric([stage, org[stage], ct, d], n - outflow.get((stage, ct, d), 0))
        yield gauge
        gauge = GaugeMetricFamily(
            BACKLOG_BY_AGE,
            "Cases in a stage now, by how long they have been in it (age band).",
            labels=[*stage_labels, "age_band"],
        )
        for (stage, ct, d, band), n in sorted(by_age.items()):
            if n:
                gauge.add_metric([stage, org[stage], ct, d, band], n)
        yield gauge
        gauge = GaugeMetricFamily(
            BACKLOG_OLDEST_AGE,
            "Age of the oldest open case in a stage (from the hour it entered). Take max().",
            labels=["stage", "organisation"],
        )
        for stage, hour in sorted(oldest.items()):
            gauge.add_metric([stage, org[stage]], max(0.0, reference - hour))
        yield gauge

        bounds = chain.lead_time_buckets_seconds
        hist_family = HistogramMetricFamily(
            LEAD_TIME,
            "Lead time ('doorlooptijd') of completed segments in event time. Every norm limit is a "
            "bucket boundary, so the share within a norm is exact.",
            labels=["segment", "case_type", "district"],
        )
        for key, counts in sorted(lead.items()):
            hist_family.add_metric(list(key), _buckets(bounds, counts), lead_sum[key])
        yield hist_family

        family = CounterMetricFamily(
            CASES_CLOSED, "Cases that left the chain, by outcome.",
            labels=["outcome", "case_type", "district"],
        )
        for (outcome, ct, d), n in sorted(closed.items()):
            family.add_metric([outcome, ct, d], n)
        yield family

    # -- configuration ------------------------------------------------------------------------
    def _norm_metrics(self) -> Iterator[Metric]:
        labels = ["norm", "segment", "case_type"]
        limit = GaugeMetricFamily(
            NORM_LIMIT, "Lead-time limit of a norm, from the chain definition.", labels=labels
        )
        target = GaugeMetricFamily(
            NORM_TARGET,
            "Share of cases that a norm wants within its limit, from the chain definition.",
            labels=labels,
        )
        for norm in self.chain.spec.norms:
            for case_type in norm.case_types or self.chain.case_types:
                limit.add_metric([norm.id, norm.segment, case_type], norm.within_seconds)
                target.add_metric([norm.id, norm.segment, case_type], norm.target)
        yield limit
        yield target


def _add_histogram(
    lead: dict[tuple[str, str, str], list[int]],
    lead_sum: Counter[tuple[str, str, str]],
    key: tuple[str, str, str],
    hist: LeadTimeHistogram,
) -> None:
    counts = lead.get(key)
    if counts is None:
        lead[key] = list(hist.counts)
    else:
        for i, c in enumerate(hist.counts):
            counts[i] += c
    lead_sum[key] += hist.total_seconds


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, int]]:
    """Per-bucket counts (the last one +Inf) as Prometheus' cumulative (le, count) pairs."""
    les = [repr(b) for b in bounds] + ["+Inf"]
    return list(zip(les, accumulate(counts), strict=True))

"""The Prometheus view of a worker: the chain's totals over every partition, and its own health.

    registry = CollectorRegistry()
    registry.register(ChainCollector(chain, view, organisation_of_topic, ready, reference_time))
    registry.register(WorkerCollector(health))     # health: () -> WorkerHealth
    generate_latest(registry)

The chain collector reads the TotalsView (streams/totals.py): the newest published totals of EVERY
partition, whichever worker owns it. Every worker therefore exports the same chain series and each
of them only goes up as Prometheus sees it, through rebalances, restarts, a failed scrape and
corrections (withdrawn facts are their own counters). Rules and panels take a rate per worker and
then the max across workers; a worker whose view has not yet caught up with the topic exports no
chain series at all rather than a lower value. Every stage and closure series the chain definition
allows is exported from the start (at zero), so that increase() sees a series' first events, and so
is the lead-time histogram of every (segment, case type) a norm measures, in every district (with
only its norms' buckets until its first completion). Any
other lead-time histogram appears, with its withdrawn counterpart at zero, with the first
completion of its (segment, case type, district), which keeps a scrape small until the chain
reaches every combination (docs/metrics.md, scrape budget).

Names come from ketenmonitor/metric_names.py; bucket bounds are written as Prometheus 3 stores
them (metric_names.le).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, product
from typing import TypeVar

from ketenmonitor.schemas.events import REJECTION_REASONS
from ketenmonitor.streams.ingest import LATENESS_BUCKETS_SECONDS, IngestStats
from ketenmonitor.streams.totals import CaseTotalsRecord, TotalsSource
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ketenmonitor import metric_names as n
from ketenmonitor.domain.chain import Chain

Key3 = tuple[str, str, str]
K = TypeVar("K")


@dataclass
class WorkerHealth:
    """What one worker process reports about itself (not about the chain)."""

    partitions: int = 0
    lag_by_topic: dict[str, int] = field(default_factory=dict)
    last_commit_timestamp: float | None = None
    busy_seconds: dict[str, float] = field(default_factory=dict)
    healthy: bool = True


class ChainCollector(Collector):
    def __init__(
        self,
        chain: Chain,
        view: TotalsSource,
        organisation_of_topic: dict[str, str],
        ready: Callable[[], bool] = lambda: True,
        reference_time: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.view = view
        self.organisation_of_topic = organisation_of_topic
        self.ready = ready
        self.reference_time = reference_time
        ct, d = chain.case_types, chain.districts
        self._stage_keys = sorted(product(chain.stage_ids, ct, d))
        self._closure_keys = sorted(product(chain.outcomes_of_closures(), ct, d))
        limits = chain.fact_plan.dormant_after
        self._dormant_keys = [k for k in self._stage_keys if k[0] in limits]
        self._rework_keys = [("milestone", m) for m in sorted(chain.fact_plan.rank)] + [
            ("stage", s) for s in chain.stage_ids
        ]
        self._lead_les = [n.le(b) for b in chain.lead_time_buckets_seconds] + ["+Inf"]
        # What a norm measures exists from the start, at zero, in every district: the share within
        # norm and its burn-rate alerts are increase() ratios of the norm's bucket and the count,
        # which would miss the completions that made a series appear (a fresh stack fed two years
        # of history within one scrape read 0/0 for every norm). Until its first completion such a
        # histogram carries only the buckets its norms read (and +Inf): all 19 would triple the
        # cost of every scrape (docs/metrics.md).
        norm_les: dict[Key3, set[int]] = {}
        for norm in chain.spec.norms:
            for case_type in norm.case_types or ct:
                for district in d:
                    key = (norm.segment, case_type, district)
                    norm_les.setdefault(key, set()).add(norm.within_seconds)
        self._norm_lead_zero = {
            key: [(n.le(b), 0) for b in sorted(bounds)] + [("+Inf", 0)]
            for key, bounds in norm_les.items()
        }
        self._lateness_les = [n.le(b) for b in LATENESS_BUCKETS_SECONDS] + ["+Inf"]

    def collect(self) -> Iterator[Metric]:
        yield from self._norm_metrics()
        gauge = GaugeMetricFamily(
            n.TOTALS_PARTITIONS,
            "Case partitions whose published totals this worker's view holds; the chain series "
            "are exported only once the view has read the totals topic to its end.",
        )
        gauge.add_metric([], self.view.partitions)
        yield gauge
        if not self.ready():
            return
        ingest = [
            (self.organisation_of_topic[topic], stats)
            for topic, stats in self.view.ingest_records()
            if topic in self.organisation_of_topic
        ]
        yield from self._ingest_metrics(ingest)
        yield from self._case_metrics(self.view.case_records())

    # -- ingest -------------------------------------------------------------------------------
    def _ingest_metrics(self, ingest: Iterable[tuple[str, IngestStats]]) -> Iterator[Metric]:
        partners = self.chain.partner_ids
        accepted: Counter[str] = Counter(dict.fromkeys(partners, 0))
        rejected: Counter[tuple[str, str]] = Counter(
            dict.fromkeys(product(partners, REJECTION_REASONS), 0)
        )
        last_seen: dict[str, float] = {}
        width = len(LATENESS_BUCKETS_SECONDS) + 1
        lateness = {p: [0] * width for p in partners}
        lateness_sum: Counter[str] = Counter()
        for organisation, stats in ingest:
            _add_into(lateness[organisation], stats.lateness)
            lateness_sum[organisation] += stats.lateness_sum
            accepted[organisation] += stats.accepted
            for reason, count in stats.rejected.items():
                rejected[(organisation, reason)] += count
            if stats.last_message_timestamp:
                last_seen[organisation] = max(
                    stats.last_message_timestamp, last_seen.get(organisation, 0.0)
                )
        yield _counter(
            n.EVENTS_ACCEPTED,
            "Events that passed the contract, per partner (duplicates included).",
            ["organisation"],
            (((k,), v) for k, v in sorted(accepted.items())),
        )
        yield _counter(
            n.EVENTS_REJECTED,
            "Events that broke the contract and went to the dead-letter topic, by reason.",
            ["organisation", "reason"],
            sorted(rejected.items()),
        )
        gauge = GaugeMetricFamily(
            n.PARTNER_LAST_EVENT,
            "Kafka timestamp of the newest event received from a partner (feed freshness).",
            labels=["organisation"],
        )
        for organisation, ts in sorted(last_seen.items()):
            gauge.add_metric([organisation], ts)
        yield gauge
        histogram = HistogramMetricFamily(
            n.EVENT_LATENESS,
            "How long after the milestone (event time) its event reached Kafka, per partner "
            "(accepted events).",
            labels=["organisation"],
        )
        for organisation, counts in sorted(lateness.items()):
            histogram.add_metric(
                [organisation], _buckets(self._lateness_les, counts), lateness_sum[organisation]
            )
        yield histogram

    # -- cases --------------------------------------------------------------------------------
    def _case_metrics(self, records: Sequence[CaseTotalsRecord]) -> Iterator[Metric]:
        chain = self.chain
        org = chain.stage_organisation
        width = len(self._lead_les)
        inflow = {k: [0, 0] for k in self._stage_keys}
        outflow = {k: [0, 0] for k in self._stage_keys}
        closed = {k: [0, 0] for k in self._closure_keys}
        lead: dict[Key3, tuple[list[int], list[float], list[int], list[float]]] = {}
        by_age: Counter[tuple[str, str, str, str]] = Counter()
        dormant: Counter[Key3] = Counter(dict.fromkeys(self._dormant_keys, 0))
        rework = {k: [0, 0] for k in self._rework_keys}
        oldest: dict[str, int] = {}
        cases = duplicates = corrections = retired_case_events = 0
        for record in records:
            _add_pairs(inflow, record.inflow)
            _add_pairs(outflow, record.outflow)
            _add_pairs(closed, record.closed)
            for key, (net, net_sum, gone, gone_sum) in record.lead.items():
                into = lead.get(key)
                if into is None:
                    into = lead[key] = ([0] * width, [0.0], [0] * width, [0.0])
                _add_into(into[0], net)
                into[1][0] += net_sum
                _add_into(into[2], gone)
                into[3][0] += gone_sum
            by_age.update(record.backlog_by_age)
            dormant.update(record.dormant)
            _add_pairs(rework, record.rework)
            for stage, hour in record.oldest_entry.items():
                oldest[stage] = min(hour, oldest.get(stage, hour))
            cases += record.cases
            duplicates += record.duplicates
            corrections += record.corrections
            retired_case_events += record.retired_case_events

        yield _counter(
            n.EVENTS_DUPLICATE,
            "Deliveries of an event id that had already been applied.",
            [],
            [((), duplicates)],
        )
        yield _counter(
            n.CORRECTIONS,
            "Milestones held in corrected form (a re-sent milestone with a higher revision, or a "
            "retraction).",
            [],
            [((), corrections)],
        )
        yield _counter(
            n.EVENTS_RETIRED_CASE,
            "Events that arrived for a case already retired (closed past the retention): not "
            "applied, kept on the dead-letter topic with reason case_retired.",
            [],
            [((), retired_case_events)],
        )
        gauge = GaugeMetricFamily(n.CASES_TRACKED, "Cases held in the chain's case state.")
        gauge.add_metric([], cases)
        yield gauge

        stage_labels = ["stage", "organisation", "case_type", "district"]

        def staged(values: dict[Key3, list[int]], index: int) -> Iterator[tuple[tuple, int]]:
            for (stage, ct, d), pair in sorted(values.items()):
                yield (stage, org[stage], ct, d), pair[0] + pair[1] if index == 0 else pair[1]

        for name, withdrawn_name, values, what in (
            (
                n.STAGE_INFLOW,
                n.STAGE_INFLOW_WITHDRAWN,
                inflow,
                "entered a stage (inflow, 'instroom')",
            ),
            (
                n.STAGE_OUTFLOW,
                n.STAGE_OUTFLOW_WITHDRAWN,
                outflow,
                "left a stage (outflow, 'uitstroom')",
            ),
        ):
            yield _counter(
                name, f"Cases that {what}, ever counted.", stage_labels, staged(values, 0)
            )
            yield _counter(
                withdrawn_name,
                f"Cases counted as having {what.split(' (')[0]} that a correction or retraction "
                f"took back; net = {name}_total - this.",
                stage_labels,
                staged(values, 1),
            )
        gauge = GaugeMetricFamily(
            n.BACKLOG,
            "Active cases in a stage now (backlog, 'werkvoorraad'): open cases that are not "
            f"dormant; open = this + {n.DORMANT}.",
            labels=stage_labels,
        )
        for (stage, ct, d), (net_in, _) in sorted(inflow.items()):
            key = (stage, ct, d)
            gauge.add_metric(
                [stage, org[stage], ct, d], net_in - outflow[key][0] - dormant.get(key, 0)
            )
        yield gauge
        gauge = GaugeMetricFamily(
            n.DORMANT,
            "Open cases in a stage without any event for longer than the stage's "
            "dormant_after_days ('slapende zaken'), counted apart from the backlog until their "
            "next event; the owning organisation's to act on.",
            labels=stage_labels,
        )
        for (stage, ct, d), count in sorted(dormant.items()):
            gauge.add_metric([stage, org[stage], ct, d], count)
        yield gauge
        gauge = GaugeMetricFamily(
            n.BACKLOG_BY_AGE,
            f"Active cases in a stage now (those of {n.BACKLOG}: dormant cases left out), by "
            "how long they have been in it (age band, from the hour they entered).",
            labels=[*stage_labels, "age_band"],
        )
        for (stage, ct, d, band), count in sorted(by_age.items()):
            if count:
                gauge.add_metric([stage, org[stage], ct, d, band], count)
        yield gauge
        reference = self.reference_time()
        gauge = GaugeMetricFamily(
            n.BACKLOG_OLDEST_AGE,
            "Age of the oldest active (not dormant) case in a stage (from the hour it entered); "
            "absent while the stage has no active case.",
            labels=["stage", "organisation"],
        )
        for stage, hour in sorted(oldest.items()):
            gauge.add_metric([stage, org[stage]], max(0.0, reference - hour))
        yield gauge

        milestone_org = {m: chain.milestone(m).organisation for m in chain.fact_plan.rank}
        for kind, name, withdrawn_name, what, owner in (
            (
                "milestone",
                n.MILESTONE_REPEATS,
                n.MILESTONE_REPEATS_WITHDRAWN,
                "Milestones reached again by a case that had reached them before (rework: an "
                "adjourned hearing held again, a second reminder)",
                milestone_org,
            ),
            (
                "stage",
                n.STAGE_REENTRIES,
                n.STAGE_REENTRIES_WITHDRAWN,
                "Visits of a case to a stage it had visited before (rework: back at the OM after "
                "an objection)",
                org,
            ),
        ):
            pairs = [(key[1], pair) for key, pair in rework.items() if key[0] == kind]
            yield _counter(
                name,
                f"{what}, ever counted.",
                [kind, "organisation"],
                (((i, owner[i]), p[0] + p[1]) for i, p in sorted(pairs)),
            )
            yield _counter(
                withdrawn_name,
                f"{what.split(' (')[0]} that a correction, retraction or late event took back; "
                f"net = {name}_total - this.",
                [kind, "organisation"],
                (((i, owner[i]), p[1]) for i, p in sorted(pairs)),
            )

        labels = ["segment", "case_type", "district"]
        added = HistogramMetricFamily(
            n.LEAD_TIME,
            "Lead time ('doorlooptijd') of completed segments in event time, every completion "
            "ever counted. Every norm limit is a bucket boundary, so the share within a norm is "
            "exact; net = this - the withdrawn histogram.",
            labels=labels,
        )
        gone = HistogramMetricFamily(
            n.LEAD_TIME_WITHDRAWN,
            "Completed segments that a correction or retraction took back, by the lead time they "
            "had been counted with.",
            labels=labels,
        )
        for key in sorted(lead.keys() | self._norm_lead_zero.keys()):
            if key not in lead:  # a norm's key before its first completion
                added.add_metric(list(key), self._norm_lead_zero[key], 0.0)
                gone.add_metric(list(key), self._norm_lead_zero[key], 0.0)
                continue
            net, net_sum, withdrawn, withdrawn_sum = lead[key]
            total = [a + b for a, b in zip(net, withdrawn, strict=True)]
            added.add_metric(
                list(key), _buckets(self._lead_les, total), net_sum[0] + withdrawn_sum[0]
            )
            gone.add_metric(list(key), _buckets(self._lead_les, withdrawn), withdrawn_sum[0])
        yield added
        yield gone

        closure_labels = ["outcome", "case_type", "district"]
        yield _counter(
            n.CASES_CLOSED,
            "Cases that left the chain, by outcome, ever counted.",
            closure_labels,
            ((k, p[0] + p[1]) for k, p in sorted(closed.items())),
        )
        yield _counter(
            n.CASES_CLOSED_WITHDRAWN,
            "Closures that a correction or retraction took back (an appeal after an acquittal).",
            closure_labels,
            ((k, p[1]) for k, p in sorted(closed.items())),
        )

    # -- configuration ------------------------------------------------------------------------
    def _norm_metrics(self) -> Iterator[Metric]:
        labels = ["norm", "segment", "case_type"]
        limit = GaugeMetricFamily(
            n.NORM_LIMIT, "Lead-time limit of a norm, from the chain definition.", labels=labels
        )
        target = GaugeMetricFamily(
            n.NORM_TARGET,
            "Share of cases that a norm wants within its limit, from the chain definition.",
            labels=labels,
        )
        for norm in self.chain.spec.norms:
            for case_type in norm.case_types or self.chain.case_types:
                limit.add_metric([norm.id, norm.segment, case_type], norm.within_seconds)
                target.add_metric([norm.id, norm.segment, case_type], norm.target)
        yield limit
        yield target


class WorkerCollector(Collector):
    """The worker process's own health: these describe the process, not the chain."""

    def __init__(self, health: Callable[[], WorkerHealth]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        health = self.health()
        gauge = GaugeMetricFamily(
            n.WORKER_HEALTHY,
            "1 while this worker is healthy (what /healthz answers 200 to: partitions restored, "
            "totals view caught up, no failed batch or broker outage pending), else 0.",
        )
        gauge.add_metric([], 1.0 if health.healthy else 0.0)
        yield gauge
        gauge = GaugeMetricFamily(n.OWNED_PARTITIONS, "Case-state partitions this worker owns now.")
        gauge.add_metric([], health.partitions)
        yield gauge
        lag = GaugeMetricFamily(
            n.CONSUMER_LAG,
            "Messages in this worker's partitions not yet committed (log end - committed offset).",
            labels=["topic"],
        )
        for topic, count in sorted(health.lag_by_topic.items()):
            lag.add_metric([topic], count)
        yield lag
        commit = GaugeMetricFamily(
            n.LAST_COMMIT,
            "When this worker last committed consumer offsets (absent before its first commit).",
        )
        if health.last_commit_timestamp is not None:
            commit.add_metric([], health.last_commit_timestamp)
        yield commit
        busy = GaugeMetricFamily(
            n.AGENT_BUSY,
            "How long a worker stage (ingest, cases, commit: waiting for the batch's records to "
            "be acknowledged and its offsets committed) has been on its current batch (0 when "
            "idle). A value above the processing timeout means a stalled worker.",
            labels=["agent"],
        )
        for agent, seconds in sorted(health.busy_seconds.items()):
            busy.add_metric([agent], seconds)
        yield busy


def _counter(
    name: str, documentation: str, labels: list[str], values: Iterable[tuple[tuple, float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in values:
        family.add_metric(list(key), value)
    return family


def _add_pairs(into: dict[K, list[int]], pairs: dict[K, tuple[int, int]]) -> None:
    for key, (net, withdrawn) in pairs.items():
        pair = into.get(key)
        if pair is None:
            into[key] = [net, withdrawn]
        else:
            pair[0] += net
            pair[1] += withdrawn


def _add_into(into: list[int], counts: Sequence[int]) -> None:
    for i, c in enumerate(counts):
        into[i] += c


def _buckets(les: Sequence[str], counts: Sequence[int]) -> list[tuple[str, int]]:
    """Per-bucket counts (the last one +Inf) as Prometheus' cumulative (le, count) pairs."""
    return list(zip(les, accumulate(counts), strict=True))

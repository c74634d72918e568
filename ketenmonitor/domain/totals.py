"""Chain totals: inflow, outflow, backlog and its age, lead-time distributions, closures.

    totals = ChainTotals(chain)
    applied = apply_event(chain, state, event)
    totals.apply(applied.added, applied.removed)
    totals.backlog()                      -> {(stage, case_type, district): open cases}
    totals.mark(marks_of(chain, before), marks_of(chain, applied.state))   # dormancy, rework
    totals.dormant(reference_time)        -> {(stage, case_type, district): dormant cases}
    totals.backlog_by_age(reference_time) -> {(stage, case_type, district, band): active cases}
    totals.oldest_active_entry(reference_time) -> {stage: hour its oldest active case entered}

Totals are a fold over facts. The net figures (`inflow`, `outflow`, `closed`, `lead_times`: what
is true now) return to what they were when a fact is added and withdrawn again; next to each, a
monotonic count of the facts withdrawn (`inflow_withdrawn`, ...), so that what Prometheus reads as a
counter never goes down: added = net + withdrawn, both only grow. The net totals of a set of cases
can always be rebuilt from their states (`rebuild`); the withdrawn counts from the facts each case
had withdrawn (`add_case(state, withdrawn)`), which the worker keeps with the case's state. One
`ChainTotals` per partition of case state; sums over partitions are plain additions.

The age of an open case in a stage is measured from the start of the hour in which it entered the
stage: that keeps the memory per stage bounded by hours, not by cases.

Dormancy and rework (domain/flow.py) are not facts: whether a case is dormant depends on when its
latest event occurred, which any event of the case moves. They are folded from the case's `Marks`
before and after each event (`mark`): open visits of stages with a dormancy limit, counted per
(hour the visit was entered, hour of the case's latest event), and rework items, whose withdrawn
ones are kept with the case like withdrawn facts (`add_case` counts both). At a reference time the
latest-event hour says which of those visits are dormant (`dormant`), and their entry hours are
taken out of the open visits' entry hours: what is left are the active visits, the backlog() -
dormant() of the backlog gauge, and the age bands and the oldest age describe exactly those
(`backlog_by_age`, `oldest_active_entry`). A dormant case's next event moves its latest-event hour,
and it counts in the ages again at the age it has in the stage.

Those readings (`backlog_readings`, what a publication of the totals needs) are kept up to date as
the totals change instead of read from every open visit each time (`BacklogReadings`): whether a
visit is dormant, and which age band it is in, changes only when the reference time crosses an
hour boundary or a band limit's or dormancy limit's offset within the hour (`phase_of`), so
within one such phase each change moves a few counts. A new phase reads every visit once. The
scan (`dormant`, `backlog_by_age`, `oldest_active_entry`) stays the definition the kept readings
are tested against.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ketenmonitor.domain.case import (
    CASE_CLOSED,
    SEGMENT_COMPLETED,
    STAGE_ENTERED,
    STAGE_LEFT,
    Applied,
    CaseState,
    Fact,
)
from ketenmonitor.domain.chain import SECONDS_PER_HOUR, Chain
from ketenmonitor.domain.flow import REWORK, Marks, facts_and_marks

StageKey = tuple[str, str, str]  # stage, case_type, district
SegmentKey = tuple[str, str, str]  # segment, case_type, district
ClosureKey = tuple[str, str, str]  # outcome, case_type, district


@dataclass
class LeadTimeHistogram:
    """Counts per bucket (not cumulative; the last one is +Inf), sum and count, in seconds."""

    counts: list[int]
    total_seconds: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for c in self.counts:
            running += c
            out.append(running)
        return out


@dataclass
class ChainTotals:
    chain: Chain
    inflow: Counter[StageKey] = field(default_factory=Counter)
    outflow: Counter[StageKey] = field(default_factory=Counter)
    open_entries_by_hour: dict[StageKey, Counter[int]] = field(default_factory=dict)
    lead_times: dict[SegmentKey, LeadTimeHistogram] = field(default_factory=dict)
    closed: Counter[ClosureKey] = field(default_factory=Counter)
    # Monotonic counts of withdrawn facts (a correction or retraction took them back).
    inflow_withdrawn: Counter[StageKey] = field(default_factory=Counter)
    outflow_withdrawn: Counter[StageKey] = field(default_factory=Counter)
    lead_times_withdrawn: dict[SegmentKey, LeadTimeHistogram] = field(default_factory=dict)
    closed_withdrawn: Counter[ClosureKey] = field(default_factory=Counter)
    # Open visits of stages with a dormancy limit, per (hour entered, hour of the case's latest
    # event).
    waiting_by_hours: dict[StageKey, Counter[tuple[int, int]]] = field(default_factory=dict)
    # (kind, milestone or stage) -> extra occurrences or visits (domain/flow.py: rework)
    rework: Counter[tuple[str, str]] = field(default_factory=Counter)
    rework_withdrawn: Counter[tuple[str, str]] = field(default_factory=Counter)
    cases: int = 0
    duplicates: int = 0
    corrections: int = 0  # milestones held in a corrected (revision > 0) form
    # Events that arrived for a case after it had been retired (closed and past the retention,
    # streams/retirement.py): not applied, kept on the dead-letter topic.
    retired_case_events: int = 0
    # The backlog readings of the last reading's phase, kept up to date by every change of the
    # hour indexes below (None: read afresh at the next reading).
    _readings: BacklogReadings | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._bounds = self.chain.lead_time_buckets_seconds

    # -- folding facts ------------------------------------------------------------------------
    def record(self, applied: Applied, new_case: bool) -> None:
        """Fold the outcome of one `apply_event` into the totals."""
        self.cases += new_case
        self.duplicates += applied.duplicate
        self.corrections += applied.corrections_delta
        fold = self._fold
        for fact in applied.removed:
            fold(fact, -1)
        for fact in applied.added:
            fold(fact, +1)

    def apply(self, added: Iterable[Fact], removed: Iterable[Fact]) -> None:
        for fact in removed:
            self._fold(fact, -1)
        for fact in added:
            self._fold(fact, +1)

    def add_case(self, state: CaseState, withdrawn: Iterable[tuple] = ()) -> None:
        """Fold a restored case: the facts of its state, and the facts it had withdrawn."""
        facts, marks = facts_and_marks(self.chain, state)  # one walk (a restore folds millions)
        self.add_walked_case(state, facts, marks, withdrawn)

    def add_walked_case(
        self, state: CaseState, facts: Iterable[tuple], marks: Marks, withdrawn: Iterable[tuple]
    ) -> None:
        """`add_case` with the state's facts and marks already read (`flow.facts_and_marks`)."""
        self.cases += 1
        self.duplicates += state.duplicates
        self.corrections += state.corrections
        for fact in facts:
            self._fold(fact, +1)
        for fact in withdrawn:
            self._count_withdrawn(fact)
        self.mark(None, marks)

    def add_totals(self, other: ChainTotals) -> None:
        """Add the totals of another set of cases (disjoint from this one's) to these."""
        self.cases += other.cases
        self.duplicates += other.duplicates
        self.corrections += other.corrections
        self.retired_case_events += other.retired_case_events
        for mine, theirs in (
            (self.inflow, other.inflow),
            (self.outflow, other.outflow),
            (self.closed, other.closed),
            (self.inflow_withdrawn, other.inflow_withdrawn),
            (self.outflow_withdrawn, other.outflow_withdrawn),
            (self.closed_withdrawn, other.closed_withdrawn),
            (self.rework, other.rework),
            (self.rework_withdrawn, other.rework_withdrawn),
        ):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        self._readings = None  # many hours change at once: read afresh
        for mine_index, their_index in (
            (self.open_entries_by_hour, other.open_entries_by_hour),
            (self.waiting_by_hours, other.waiting_by_hours),
        ):
            for key, hours in their_index.items():
                for hour, n in hours.items():
                    _add_hour(mine_index, key, hour, n)
        for mine_histograms, their_histograms in (
            (self.lead_times, other.lead_times),
            (self.lead_times_withdrawn, other.lead_times_withdrawn),
        ):
            for key, theirs in their_histograms.items():
                hist = mine_histograms.get(key)
                if hist is None:
                    hist = mine_histograms[key] = LeadTimeHistogram([0] * len(theirs.counts))
                hist.counts = [a + b for a, b in zip(hist.counts, theirs.counts, strict=True)]
                hist.total_seconds += theirs.total_seconds

    def mark(self, before: Marks | None, after: Marks) -> None:
        """Fold the change of one case's marks (None: a case not seen before). A rework item
        that `before` has and `after` lacks is withdrawn: the caller keeps it with the case's
        withdrawn facts, so that `add_case` counts it again after a restore."""
        if before is None:
            gone_waiting, new_waiting = (), after.waiting
            gone_rework, new_rework = (), after.rework
        else:
            gone_waiting = before.waiting - after.waiting
            new_waiting = after.waiting - before.waiting
            gone_rework = before.rework - after.rework
            new_rework = after.rework - before.rework
        waiting = self.waiting_by_hours
        readings = self._readings
        for stage, case_type, district, entered, last in gone_waiting:
            _add_hour(waiting, (stage, case_type, district), (entered, last), -1)
            if readings is not None:
                readings.waiting_changed(
                    (stage, case_type, district), entered, last, -1, self.open_entries_by_hour
                )
        for stage, case_type, district, entered, last in new_waiting:
            _add_hour(waiting, (stage, case_type, district), (entered, last), +1)
            if readings is not None:
                readings.waiting_changed(
                    (stage, case_type, district), entered, last, +1, self.open_entries_by_hour
                )
        for item in gone_rework:
            self.rework[item[:2]] -= 1
            self._count_withdrawn(item)
        for item in new_rework:
            self.rework[item[:2]] += 1

    def _fold(self, fact: Fact | tuple, sign: int) -> None:
        # Facts are read by position (see the `Fact` named tuples in case.py), so that the plain
        # tuples of `fact_tuples` fold exactly like `Fact` objects; the kind tag comes last.
        kind = fact[-1]
        if kind == STAGE_ENTERED:  # stage, case_type, district, at
            key = fact[:3]
            self.inflow[key] += sign
            self._open(key, fact[3], sign)
        elif kind == STAGE_LEFT:  # stage, case_type, district, entered_at, at
            key = fact[:3]
            self.outflow[key] += sign
            self._open(key, fact[3], -sign)
        elif kind == SEGMENT_COMPLETED:  # segment, case_type, district, started_at, completed_at
            self._count_lead_time(self.lead_times, fact, sign)
        elif kind == CASE_CLOSED:  # outcome, closing_milestone, case_type, district, at
            self.closed[(fact[0], fact[2], fact[3])] += sign
        if sign < 0:
            self._count_withdrawn(fact)

    def _count_withdrawn(self, fact: Fact | tuple) -> None:
        kind = fact[-1]
        if kind == STAGE_ENTERED:
            self.inflow_withdrawn[fact[:3]] += 1
        elif kind == STAGE_LEFT:
            self.outflow_withdrawn[fact[:3]] += 1
        elif kind == SEGMENT_COMPLETED:
            self._count_lead_time(self.lead_times_withdrawn, fact, +1)
        elif kind == CASE_CLOSED:
            self.closed_withdrawn[(fact[0], fact[2], fact[3])] += 1
        elif kind == REWORK:  # kind, milestone or stage, k
            self.rework_withdrawn[fact[:2]] += 1

    def _count_lead_time(
        self, histograms: dict[SegmentKey, LeadTimeHistogram], fact: Fact | tuple, sign: int
    ) -> None:
        skey = fact[:3]
        hist = histograms.get(skey)
        if hist is None:
            hist = histograms[skey] = LeadTimeHistogram([0] * (len(self._bounds) + 1))
        lead = fact[4] - fact[3]
        # Prometheus buckets are upper-inclusive (le): a lead time equal to a norm is within it.
        hist.counts[bisect.bisect_left(self._bounds, lead)] += sign
        hist.total_seconds += sign * lead

    def _open(self, key: StageKey, entered_at: float, sign: int) -> None:
        hour = int(entered_at // SECONDS_PER_HOUR) * SECONDS_PER_HOUR
        _add_hour(self.open_entries_by_hour, key, hour, sign)
        if self._readings is not None:
            self._readings.active_changed(key, hour, sign, self.open_entries_by_hour)

    # -- reading ------------------------------------------------------------------------------
    def backlog(self) -> dict[StageKey, int]:
        return {k: n - self.outflow.get(k, 0) for k, n in self.inflow.items()}

    def dormant_entries_by_hour(self, reference_time: float) -> dict[StageKey, Counter[int]]:
        """Dormant visits (see `dormant`) per hour in which they were entered."""
        limits = self.chain.fact_plan.dormant_after
        out: dict[StageKey, Counter[int]] = {}
        for key, hours in self.waiting_by_hours.items():
            limit = limits[key[0]]
            if limit is None:
                continue
            entries = None
            # is_dormant inlined (millions of entries at national scale): `last` is the start of
            # an hour already, so hour_of(last) == last.
            for (entered, last), n in hours.items():
                if reference_time - last > limit:
                    if entries is None:
                        entries = out[key] = Counter()
                    entries[entered] = entries.get(entered, 0) + n
        return out

    def dormant(
        self, reference_time: float, entries: dict[StageKey, Counter[int]] | None = None
    ) -> dict[StageKey, int]:
        """Open visits whose case has had no event for longer than the stage's limit.
        `entries`: `dormant_entries_by_hour(reference_time)` if already read."""
        if entries is None:
            entries = self.dormant_entries_by_hour(reference_time)
        return {key: sum(by_hour.values()) for key, by_hour in entries.items()}

    def active_entries_by_hour(
        self, reference_time: float, dormant: dict[StageKey, Counter[int]] | None = None
    ) -> dict[StageKey, Counter[int]]:
        """Open visits that are not dormant at `reference_time`, per hour they were entered.
        `dormant`: `dormant_entries_by_hour(reference_time)` if already read."""
        if dormant is None:
            dormant = self.dormant_entries_by_hour(reference_time)
        out: dict[StageKey, Counter[int]] = {}
        for key, hours in self.open_entries_by_hour.items():
            asleep = dormant.get(key)
            if asleep is None:
                out[key] = hours
                continue
            active = Counter()
            for hour, n in hours.items():
                n -= asleep.get(hour, 0)
                if n:
                    active[hour] = n
            out[key] = active
        return out

    def backlog_by_age(
        self, reference_time: float, active: dict[StageKey, Counter[int]] | None = None
    ) -> dict[tuple[str, str, str, str], int]:
        """Active (not dormant) open visits per age band at `reference_time`: the backlog gauge's
        cases, by how long they have been in the stage (from the hour they entered). `active`:
        `active_entries_by_hour(reference_time)` if already read."""
        if active is None:
            active = self.active_entries_by_hour(reference_time)
        bands = self.chain.backlog_age_bands
        limits = [upper for _, upper in bands]
        names = [name for name, _ in bands]
        out: dict[tuple[str, str, str, str], int] = {}
        for (stage, case_type, district), hours in active.items():
            per_band = [0] * len(bands)
            for hour, n in hours.items():
                per_band[bisect.bisect_left(limits, reference_time - hour)] += n
            for name, n in zip(names, per_band, strict=True):
                if n:
                    out[(stage, case_type, district, name)] = n
        return out

    def oldest_active_entry(
        self, reference_time: float, active: dict[StageKey, Counter[int]] | None = None
    ) -> dict[str, int]:
        """Per stage, the start of the hour in which its oldest active (not dormant at
        `reference_time`) open case entered it; stages without an active case are left out.
        `active`: `active_entries_by_hour(reference_time)` if already read."""
        if active is None:
            active = self.active_entries_by_hour(reference_time)
        oldest: dict[str, int] = {}
        for (stage, _, _), hours in active.items():
            if hours:
                first = min(hours)
                oldest[stage] = min(first, oldest.get(stage, first))
        return oldest

    def backlog_readings(
        self, reference_time: float
    ) -> tuple[dict[tuple[str, str, str, str], int], dict[str, int], dict[StageKey, int]]:
        """(backlog_by_age, oldest_active_entry, dormant) at `reference_time` (a publication
        needs all three): equal to the scans of the same names, from the readings kept since
        the last reading when the reference time is still in its phase (`BacklogReadings`)."""
        readings = self._readings
        if readings is None or readings.phase != readings.phase_of(reference_time):
            readings = self._readings = BacklogReadings(self, reference_time)
        return readings.by_age(), readings.oldest_by_stage(self.open_entries_by_hour), \
            readings.dormant_by_key()


class BacklogReadings:
    """The active (not dormant) open visits per age band, the dormant ones, and the oldest
    active entry hour per stage key, as of one reference time, kept up to date by the changes
    of a `ChainTotals`' hour indexes (`active_changed`, `waiting_changed`).

    They hold for every reference time of the same phase (`phase_of`). A visit's entry hour h
    and its case's latest-event hour l are whole hours; a band limit or a dormancy limit L is
    passed when t - h > L (or t - l > L). With t = 3600 q + r (0 <= r < 3600) and L = 3600 a + b,
    that is q - h/3600 - a >= 1, or = 0 and r > b: it depends only on q and on which of the
    limits' offsets b within the hour lie below r. So the phase is (q, the number of those
    offsets below r); at t in a phase, every visit's band and dormancy are those at the time the
    readings were made (`reference_time`), which is what each change is sorted by."""

    def __init__(self, totals: ChainTotals, reference_time: float) -> None:
        chain = totals.chain
        self.reference_time = reference_time
        self.names = [name for name, _ in chain.backlog_age_bands]
        self.limits = [upper for _, upper in chain.backlog_age_bands]
        self.dormant_after = chain.fact_plan.dormant_after
        finite = [limit for limit in (*self.limits, *self.dormant_after.values())
                  if limit != float("inf")]
        self.offsets = sorted({limit % SECONDS_PER_HOUR for limit in finite})
        self.phase = self.phase_of(reference_time)
        # stage key -> entry hour -> dormant visits; stage key -> dormant visits
        self.dormant_entries: dict[StageKey, dict[int, int]] = {}
        self.dormant: dict[StageKey, int] = {}
        self.bands: dict[StageKey, list[int]] = {}  # stage key -> active visits per band
        self.oldest: dict[StageKey, int] = {}  # stage key -> oldest active entry hour
        self.stale: set[StageKey] = set()  # keys whose oldest entry must be looked for again
        # A new phase starts from the scans that define the readings.
        asleep = totals.dormant_entries_by_hour(reference_time)
        for key, entries in asleep.items():
            self.dormant_entries[key] = dict(entries)
            total = sum(entries.values())
            if total:
                self.dormant[key] = total
        limits, width = self.limits, len(self.limits)
        for key, hours in totals.active_entries_by_hour(reference_time, asleep).items():
            counts = [0] * width
            for hour, n in hours.items():
                counts[bisect.bisect_left(limits, reference_time - hour)] += n
            self.bands[key] = counts
            if hours:
                self.oldest[key] = min(hours)

    def phase_of(self, reference_time: float) -> tuple[float, int]:
        q, r = divmod(reference_time, SECONDS_PER_HOUR)
        return q, bisect.bisect_left(self.offsets, r)

    def active_changed(
        self, key: StageKey, hour: int, n: int, open_index: dict[StageKey, Counter[int]]
    ) -> None:
        """`n` more active visits of `key` entered in `hour` (the indexes already changed)."""
        counts = self.bands.get(key)
        if counts is None:
            counts = self.bands[key] = [0] * len(self.limits)
        counts[bisect.bisect_left(self.limits, self.reference_time - hour)] += n
        if key in self.stale:
            return
        hours = open_index.get(key)  # as the scan: only the hours of open visits count
        active = hours[hour] - self.dormant_entries.get(key, {}).get(hour, 0) \
            if hours is not None and hour in hours else 0
        oldest = self.oldest.get(key)
        if active:
            if oldest is None or hour < oldest:
                self.oldest[key] = hour
        elif hour == oldest:
            self.stale.add(key)

    def waiting_changed(
        self, key: StageKey, entered: int, last: int, n: int,
        open_index: dict[StageKey, Counter[int]],
    ) -> None:
        """`n` more waiting visits of `key` (entered, latest event in those hours): if they are
        dormant at this phase, `n` more dormant and `n` fewer active ones."""
        limit = self.dormant_after.get(key[0])
        if limit is None or not self.reference_time - last > limit:
            return
        self._add_dormant(key, entered, n)
        self.active_changed(key, entered, -n, open_index)

    def _add_dormant(self, key: StageKey, entered: int, n: int) -> None:
        entries = self.dormant_entries.get(key)
        if entries is None:
            entries = self.dormant_entries[key] = {}
        total = entries.get(entered, 0) + n
        if total:
            entries[entered] = total
        else:
            del entries[entered]
        total = self.dormant.get(key, 0) + n
        if total:
            self.dormant[key] = total
        else:
            del self.dormant[key]

    def by_age(self) -> dict[tuple[str, str, str, str], int]:
        names = self.names
        return {
            (stage, case_type, district, name): n
            for (stage, case_type, district), counts in self.bands.items()
            for name, n in zip(names, counts, strict=True) if n
        }

    def dormant_by_key(self) -> dict[StageKey, int]:
        return dict(self.dormant)

    def oldest_by_stage(self, open_index: dict[StageKey, Counter[int]]) -> dict[str, int]:
        for key in self.stale:
            asleep = self.dormant_entries.get(key, {})
            active = [hour for hour, n in open_index.get(key, {}).items()
                      if n - asleep.get(hour, 0)]
            if active:
                self.oldest[key] = min(active)
            else:
                self.oldest.pop(key, None)
        self.stale.clear()
        oldest: dict[str, int] = {}
        for (stage, _, _), hour in self.oldest.items():
            oldest[stage] = min(hour, oldest.get(stage, hour))
        return oldest


def _add_hour(index: dict[StageKey, Counter], key: StageKey, hour: object, sign: int) -> None:
    hours = index.get(key)
    if hours is None:
        hours = index[key] = Counter()
    n = hours.get(hour, 0) + sign  # get: Counter's __missing__ would run in Python
    if n:
        hours[hour] = n
    else:
        del hours[hour]


def rebuild(chain: Chain, states: Iterable[CaseState]) -> ChainTotals:
    """Totals of a set of cases, from their states alone."""
    totals = ChainTotals(chain)
    for state in states:
        totals.add_case(state)
    return totals

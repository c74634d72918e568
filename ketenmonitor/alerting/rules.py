"""Prometheus recording and alert rules, generated from the chain definition and the policy.

    text = render_rules(load_chain(), load_policy())                    # production windows
    text = render_rules(chain, policy, TimeScale(4 / 86_400, "3s"))     # a chain day lasts 4 s

Every metric name comes from ketenmonitor.metric_names; every norm limit and target from chain.yaml;
every other threshold from the alerting policy. The checked-in file
deploy/prometheus/rules/ketenmonitor.rules.yml is this module's output; a test keeps them equal.

Every worker exports the whole chain's totals (streams/metrics.py), and each of its counter series
only goes up. So the rules first sum a worker's own series over the labels a figure does not need
(`worker_...:sum`, keeping the worker labels instance and job), take rate()/increase() of those per
worker, subtract what corrections withdrew (its own monotonic counter), and only then take the max
across workers: a worker that restarts, falls behind, or misses a scrape never lowers a counter, and
two workers never add up. Gauges are max'ed across workers the same way. Shares (within a norm,
dead-lettered) come from the one worker with the largest denominator, not the max: a share of the
few samples a stopped worker left in the window is noise. Recorded names follow
level:metric:operation; window suffixes are nominal ("rate7d" stays the name when a time scale
shrinks the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ketenmonitor import metric_names as m
from ketenmonitor.alerting.durations import TimeScale
from ketenmonitor.alerting.policy import AlertPolicy
from ketenmonitor.domain.chain import Chain, NormSpec

CONSUMER_LAG = m.CONSUMER_LAG
LAST_COMMIT = m.LAST_COMMIT
WORKER_JOB = m.WORKER_JOB
WORKER = ", ".join(m.WORKER_LABELS)  # "instance, job"

# -- recorded series, per worker: sums of one worker's monotonic series ------------------------
W_INFLOW = f"worker_stage:{m.STAGE_INFLOW}_total:sum"
W_INFLOW_WITHDRAWN = f"worker_stage:{m.STAGE_INFLOW_WITHDRAWN}_total:sum"
W_OUTFLOW = f"worker_stage:{m.STAGE_OUTFLOW}_total:sum"
W_OUTFLOW_WITHDRAWN = f"worker_stage:{m.STAGE_OUTFLOW_WITHDRAWN}_total:sum"
W_INFLOW_BY_TYPE = f"worker_stage_case_type:{m.STAGE_INFLOW}_total:sum"
W_INFLOW_BY_TYPE_WITHDRAWN = f"worker_stage_case_type:{m.STAGE_INFLOW_WITHDRAWN}_total:sum"
W_LEAD_BUCKET = f"worker_segment_case_type:{m.LEAD_TIME}_bucket:sum"
W_LEAD_BUCKET_WITHDRAWN = f"worker_segment_case_type:{m.LEAD_TIME_WITHDRAWN}_bucket:sum"
W_LEAD_COUNT = f"worker_segment_case_type:{m.LEAD_TIME}_count:sum"
W_LEAD_COUNT_WITHDRAWN = f"worker_segment_case_type:{m.LEAD_TIME_WITHDRAWN}_count:sum"
W_CLOSED = f"worker_outcome:{m.CASES_CLOSED}_total:sum"
W_CLOSED_WITHDRAWN = f"worker_outcome:{m.CASES_CLOSED_WITHDRAWN}_total:sum"
W_ACCEPTED = f"worker_organisation:{m.EVENTS_ACCEPTED}_total:sum"
W_REJECTED = f"worker_organisation:{m.EVENTS_REJECTED}_total:sum"
# -- recorded series, chain-wide (max across workers) ------------------------------------------
INFLOW_RATE1D = f"stage:{m.STAGE_INFLOW}:rate1d"  # net cases per second, over the last day
OUTFLOW_RATE1D = f"stage:{m.STAGE_OUTFLOW}:rate1d"
CLOSED_RATE1D = f"outcome:{m.CASES_CLOSED}:rate1d"
ACCEPTED_RATE1D = f"organisation:{m.EVENTS_ACCEPTED}:rate1d"
BACKLOG_SUM = f"stage:{m.BACKLOG}:sum"
BACKLOG_BY_TYPE_SUM = f"stage_case_type:{m.BACKLOG}:sum"
DORMANT_SUM = f"stage:{m.DORMANT}:sum"  # dormant cases per stage and owning organisation
OLDEST_AGE_MAX = f"stage:{m.BACKLOG_OLDEST_AGE}:max"
FEED_AGE = f"organisation:{m.PREFIX}_partner_feed_age_seconds"
LAG_SUM = f"topic:{CONSUMER_LAG}:sum"
WITHIN_NORM = f"{m.PREFIX}_segment_within_norm"  # ratio: share of completed segments within
COMPLETED = f"{m.PREFIX}_segment_completed_cases"
# (added, withdrawn) per-worker pairs by the figure they net to
NET_PAIRS = {
    "inflow": (W_INFLOW, W_INFLOW_WITHDRAWN),
    "outflow": (W_OUTFLOW, W_OUTFLOW_WITHDRAWN),
    "closed": (W_CLOSED, W_CLOSED_WITHDRAWN),
}

DERIVED = {"derived_from": "worker_metrics"}  # WorkerDown inhibits alerts carrying this label


def le_label(seconds: float) -> str:
    """The `le` label of a bucket bound, as both Prometheus 2 and 3 store it."""
    return m.le(seconds)


def within_norm_ratio(norm: NormSpec, window: str, by: str) -> str:
    """PromQL: per worker, the net completions within the norm's limit over the net completions,
    summed by `by`; the share of the worker that counted the most completions in the window.
    `window` may be a Grafana range ($__range)."""
    sel = f'segment="{norm.segment}"{case_type_matcher(norm)}'

    def net(le: str) -> str:
        # Both parts from the bucket series: the norm's bucket and +Inf (the count) come from one
        # recording rule, so from the same scrape; the _count series is another rule, which a
        # scrape may land between.
        return (
            f'increase({W_LEAD_BUCKET}{{{sel}, le="{le}"}}[{window}])'
            f' - increase({W_LEAD_BUCKET_WITHDRAWN}{{{sel}, le="{le}"}}[{window}])'
        )

    # clamp_max: the added and withdrawn histograms are two recording rules, and increase()
    # extrapolates each to the window's edges on its own: a share can read 1.01. A share is never
    # above 1.
    share = share_of_fullest_worker(net(le_label(norm.within_seconds)), net("+Inf"), by)
    return f"clamp_max({share}, 1)"


def share_of_fullest_worker(part: str, whole: str, by: str) -> str:
    """PromQL: part / whole per worker, summed by `by`, from the worker whose `whole` is largest.

    Not the max of the workers' shares: a worker that stopped, froze or just restarted still has a
    few samples inside the window, and a share of a handful of events is noise (3 of 3 within the
    norm reads 100%). The worker that saw the most of the window has the truest share."""
    total = f"sum by ({WORKER}, {by}) ({whole})"
    return (
        f"max by ({by}) (\n"
        f"  sum by ({WORKER}, {by}) ({part})\n"
        f"  / {total}\n"
        f"  and on ({WORKER}, {by}) topk by ({by}) (1, {total})\n)"
    )


def case_type_matcher(norm: NormSpec) -> str:
    """The label matcher (with a leading comma) for the case types a norm applies to, if any."""
    if norm.case_types is None:
        return ""
    return f', case_type=~"{"|".join(norm.case_types)}"'


def net_change(
    function: str, added: str, withdrawn: str, window: str, by: str, selector: str = ""
) -> str:
    """PromQL: the net rate() or increase() of a figure over `window`, per worker, then the max
    across workers, by the labels `by`."""
    return (
        f"max by ({by}) (\n"
        f"  {function}({added}{selector}[{window}])"
        f" - {function}({withdrawn}{selector}[{window}])\n)"
    )


@dataclass
class _Rules:
    """Collects rule groups in the order Prometheus must evaluate them."""

    groups: list[dict[str, Any]] = field(default_factory=list)

    def group(self, name: str) -> list[dict[str, Any]]:
        """Rules of one kind. All kinds go into ONE Prometheus group: rules in a group run in
        order, so a rule always sees the current value of the records it builds on; across
        groups it might read a stale or missing sample (promtool, coarse evaluation intervals)."""
        if not self.groups:
            self.groups.append({"name": "ketenmonitor", "rules": []})
        rules: list[dict[str, Any]] = self.groups[0]["rules"]
        return rules


class RuleGenerator:
    def __init__(self, chain: Chain, policy: AlertPolicy, scale: TimeScale | None = None) -> None:
        policy.check_against(chain)
        self.chain = chain
        self.policy = policy
        self.scale = scale or TimeScale()
        self.organisation_label = {p.id: p.label for p in chain.spec.partners}

    # -- helpers ------------------------------------------------------------------------------
    def w(self, duration: str) -> str:
        """A window or `for` duration, scaled."""
        return self.scale.duration(duration)

    def norm_owner(self, norm: NormSpec) -> str:
        """Partner owning a norm: the organisation where its segment starts, for partner and
        handover segments (the sender answers for a handover); the chain for chain segments."""
        segment = next(s for s in self.chain.spec.segments if s.id == norm.segment)
        if segment.kind == "chain":
            return self.policy.owners.chain
        return self.chain.milestone(segment.start).organisation

    def case_type_matcher(self, norm: NormSpec) -> str:
        return case_type_matcher(norm)

    def stage_norms(self) -> list[tuple[str, NormSpec]]:
        """(stage, norm) pairs where the norm's segment is exactly the stage: entry to exit."""
        pairs = []
        segments = {s.id: s for s in self.chain.spec.segments}
        for stage in self.chain.spec.stages:
            for norm in self.chain.spec.norms:
                seg = segments[norm.segment]
                if seg.start in stage.enter and seg.end in stage.exit:
                    pairs.append((stage.id, norm))
        return pairs

    def objective(self, norm: NormSpec) -> float:
        """The target in force: the interim target where the norm has one."""
        return norm.interim_target if norm.interim_target is not None else norm.target

    # -- generation ---------------------------------------------------------------------------
    def generate(self) -> dict[str, Any]:
        rules = _Rules()
        self._sums(rules.group("ketenmonitor.sums"))
        self._flow(rules.group("ketenmonitor.flow"))
        self._norm_records(rules.group("ketenmonitor.norms"))
        self._throughput_alerts(rules.group("ketenmonitor.alerts.throughput"))
        self._norm_alerts(rules.group("ketenmonitor.alerts.norms"))
        self._forecast_alerts(rules.group("ketenmonitor.alerts.forecast"))
        self._feed_alerts(rules.group("ketenmonitor.alerts.feeds"))
        self._dead_letter_alerts(rules.group("ketenmonitor.alerts.dead_letter"))
        self._monitor_alerts(rules.group("ketenmonitor.alerts.monitor"))
        return {"groups": rules.groups}

    def _sums(self, g: list[dict[str, Any]]) -> None:
        stage_by = f"{WORKER}, stage, organisation"

        # No `or (... * 0)` fallbacks: a failed scrape can land between two rules of the same
        # evaluation, and a fallback would then record 0 for a worker that has data: a false reset.
        # The worker exports every series these sums need from the start (streams/metrics.py).
        def per_worker(name: str, by: str, metric: str) -> None:
            g.append(_record(name, f"sum by ({by}) ({metric})"))

        per_worker(W_INFLOW, stage_by, f"{m.STAGE_INFLOW}_total")
        per_worker(W_INFLOW_WITHDRAWN, stage_by, f"{m.STAGE_INFLOW_WITHDRAWN}_total")
        per_worker(W_OUTFLOW, stage_by, f"{m.STAGE_OUTFLOW}_total")
        per_worker(W_OUTFLOW_WITHDRAWN, stage_by, f"{m.STAGE_OUTFLOW_WITHDRAWN}_total")
        type_by = f"{stage_by}, case_type"
        per_worker(W_INFLOW_BY_TYPE, type_by, f"{m.STAGE_INFLOW}_total")
        per_worker(W_INFLOW_BY_TYPE_WITHDRAWN, type_by, f"{m.STAGE_INFLOW_WITHDRAWN}_total")
        lead_by = f"{WORKER}, segment, case_type"
        # Every bucket, not only the norm limits: the dashboards take p50/p80 over the time
        # picker's range from these (histogram_quantile needs the whole histogram up to +Inf).
        per_worker(W_LEAD_BUCKET, f"{lead_by}, le", f"{m.LEAD_TIME}_bucket")
        per_worker(
            W_LEAD_BUCKET_WITHDRAWN, f"{lead_by}, le", f"{m.LEAD_TIME_WITHDRAWN}_bucket",
        )
        per_worker(W_LEAD_COUNT, lead_by, f"{m.LEAD_TIME}_count")
        per_worker(W_LEAD_COUNT_WITHDRAWN, lead_by, f"{m.LEAD_TIME_WITHDRAWN}_count")
        per_worker(W_CLOSED, f"{WORKER}, outcome", f"{m.CASES_CLOSED}_total")
        per_worker(W_CLOSED_WITHDRAWN, f"{WORKER}, outcome", f"{m.CASES_CLOSED_WITHDRAWN}_total")
        per_worker(W_ACCEPTED, f"{WORKER}, organisation", f"{m.EVENTS_ACCEPTED}_total")
        per_worker(W_REJECTED, f"{WORKER}, organisation", f"{m.EVENTS_REJECTED}_total")
        g += [
            _record(
                BACKLOG_SUM,
                f"max by (stage, organisation) (sum by ({stage_by}) ({m.BACKLOG}))",
            ),
            _record(
                BACKLOG_BY_TYPE_SUM,
                f"max by (stage, organisation, case_type) (sum by ({type_by}) ({m.BACKLOG}))",
            ),
            _record(
                DORMANT_SUM,
                f"max by (stage, organisation) (sum by ({stage_by}) ({m.DORMANT}))",
            ),
            _record(OLDEST_AGE_MAX, f"max by (stage, organisation) ({m.BACKLOG_OLDEST_AGE})"),
            _record(FEED_AGE, f"time() - max by (organisation) ({m.PARTNER_LAST_EVENT})"),
            _record(LAG_SUM, f"sum by (topic) ({CONSUMER_LAG})"),
        ]

    def _flow(self, g: list[dict[str, Any]]) -> None:
        p = self.policy
        for window in _unique(["1d", p.throughput.window]):
            for figure, metric in (("inflow", m.STAGE_INFLOW), ("outflow", m.STAGE_OUTFLOW)):
                added, withdrawn = NET_PAIRS[figure]
                g.append(_record(
                    f"stage:{metric}:rate{window}",  # 1d: INFLOW_RATE1D, OUTFLOW_RATE1D
                    net_change("rate", added, withdrawn, self.w(window), "stage, organisation"),
                ))
        window = p.throughput.window
        inflow = f"stage:{m.STAGE_INFLOW}:increase{window}"
        outflow = f"stage:{m.STAGE_OUTFLOW}:increase{window}"
        g += [
            _record(inflow, net_change(
                "increase", *NET_PAIRS["inflow"], self.w(window), "stage, organisation"
            )),
            _record(outflow, net_change(
                "increase", *NET_PAIRS["outflow"], self.w(window), "stage, organisation"
            )),
            # Backlog growth from the counters (backlog = inflow - outflow), not from the gauge.
            _record(f"stage:{m.BACKLOG}:growth{window}", f"{inflow} - {outflow}"),
            _record(
                CLOSED_RATE1D,
                net_change("rate", *NET_PAIRS["closed"], self.w("1d"), "outcome"),
            ),
            _record(
                ACCEPTED_RATE1D,
                f"max by (organisation) (rate({W_ACCEPTED}[{self.w('1d')}]))",
            ),
        ]
        dl = p.dead_letter.window
        w = self.w(dl)
        g += [
            _record(
                f"organisation:{m.PREFIX}_events:increase{dl}",
                f"max by (organisation) (\n"
                f"  increase({W_ACCEPTED}[{w}]) + increase({W_REJECTED}[{w}])\n)",
            ),
            _record(
                f"organisation:{m.EVENTS_REJECTED}:ratio{dl}",
                share_of_fullest_worker(
                    f"increase({W_REJECTED}[{w}])",
                    f"increase({W_ACCEPTED}[{w}]) + increase({W_REJECTED}[{w}])",
                    "organisation",
                ),
            ),
        ]

    def within_norm_ratio(self, norm: NormSpec, window: str, by: str) -> str:
        return within_norm_ratio(norm, window, by)

    def _norm_records(self, g: list[dict[str, Any]]) -> None:
        p = self.policy
        burn_windows = [w for t in p.burn_rate.tiers for w in (t.long, t.short)]
        long_windows = [t.long for t in p.burn_rate.tiers]
        for norm in self.chain.spec.norms:
            sel = f'segment="{norm.segment}"{self.case_type_matcher(norm)}'
            labels = {"norm": norm.id}
            for window in p.share_windows:
                g.append(_record(
                    f"norm_case_type:{WITHIN_NORM}:ratio{window}",
                    self.within_norm_ratio(norm, self.w(window), "segment, case_type"),
                    labels,
                ))
            for window in _unique([*p.share_windows, *burn_windows]):
                g.append(_record(
                    f"norm:{WITHIN_NORM}:ratio{window}",
                    self.within_norm_ratio(norm, self.w(window), "segment"),
                    labels,
                ))
            for window in _unique(long_windows):
                w = self.w(window)
                g.append(_record(
                    f"norm:{COMPLETED}:increase{window}",
                    f"max by (segment) (sum by ({WORKER}, segment) (\n"
                    f"  increase({W_LEAD_COUNT}{{{sel}}}[{w}])"
                    f" - increase({W_LEAD_COUNT_WITHDRAWN}{{{sel}}}[{w}])\n))",
                    labels,
                ))
        trend = p.forecast.trend_window
        for stage, norm in self.stage_norms():
            if norm.target >= 1:
                continue  # Little's law gives no useful backlog limit for a 100% norm
            sel = f'stage="{stage}"{self.case_type_matcher(norm)}'
            labels = {"norm": norm.id}
            g.append(_record(
                f"norm:{m.BACKLOG}:sum",
                f"sum by (stage, organisation) ({BACKLOG_BY_TYPE_SUM}{{{sel}}})",
                labels,
            ))
            w = self.w(trend)
            g.append(_record(
                f"norm:{m.STAGE_INFLOW}:rate{trend}",
                f"max by (stage, organisation) (sum by ({WORKER}, stage, organisation) (\n"
                f"  rate({W_INFLOW_BY_TYPE}{{{sel}}}[{w}])"
                f" - rate({W_INFLOW_BY_TYPE_WITHDRAWN}{{{sel}}}[{w}])\n))",
                labels,
            ))

    # -- alerts -------------------------------------------------------------------------------
    def _throughput_alerts(self, g: list[dict[str, Any]]) -> None:
        t = self.policy.throughput
        window = t.window
        share = 1 - t.max_outflow_ratio
        growth = f"stage:{m.BACKLOG}:growth{window}"
        inflow = f"stage:{m.STAGE_INFLOW}:increase{window}"
        g.append(_alert(
            "KetenmonitorThroughputBreach",
            f"{growth} > {_num(share)} * {inflow}\nand {inflow} >= {t.min_inflow_cases}",
            self.w(t.for_),
            {"severity": t.severity, "kind": "throughput", **DERIVED},
            summary=(
                "Werkvoorraad {{ $labels.stage }} ({{ $labels.organisation }}) groeit: uitstroom "
                f"blijft onder {_pct(t.max_outflow_ratio)} van de instroom ({window})"
            ),
            description=(
                "Over the last " + window + " the backlog of stage {{ $labels.stage }} grew by "
                "{{ $value | printf \"%.0f\" }} cases: fewer cases left the stage than "
                f"{_pct(t.max_outflow_ratio)} of those that entered."
            ),
            runbook=(
                "Compare inflow and outflow of the stage per case type and district on the "
                "dashboard. A real capacity shortfall is for the owning organisation's management; "
                "if outflow dropped to zero suddenly, first check that the partner still reports "
                "the stage's exit milestone (KetenmonitorPartnerFeedStale, dead letters)."
            ),
        ))

    def _norm_alerts(self, g: list[dict[str, Any]]) -> None:
        b = self.policy.burn_rate
        for tier in b.tiers:
            for norm in self.chain.spec.norms:
                objective = self.objective(norm)
                budget = 1 - objective
                threshold = tier.factor * budget
                sel = f'{{norm="{norm.id}"}}'
                long_ratio = f"norm:{WITHIN_NORM}:ratio{tier.long}{sel}"
                short_ratio = f"norm:{WITHIN_NORM}:ratio{tier.short}{sel}"
                completed = f"norm:{COMPLETED}:increase{tier.long}{sel}"
                # A 100% norm has no error budget (threshold 0): any case beyond the limit
                # breaches it, and 0 / 0 (no completed case) is NaN, which never fires.
                # The short window can only end the alert by showing the burn stopped: a short
                # window without completions (a weekend without judgments, a rebalance) reads
                # 0 / 0, which is no verdict, so `unless ... <=` and not `and ... >`.
                expr = (
                    f"(1 - {long_ratio}) > {_num(threshold)}\n"
                    f"and {completed} >= {b.min_completed_cases}\n"
                    f"unless (1 - {short_ratio}) <= {_num(threshold)}"
                )
                target_text = _pct(objective) + (
                    f" (interim; final {_pct(norm.target)})" if norm.interim_target else ""
                )
                g.append(_alert(
                    f"KetenmonitorNormBurnRate{tier.name.title()}",
                    expr,
                    self.w(tier.for_),
                    {
                        "severity": tier.severity,
                        "kind": "norm",
                        "organisation": self.norm_owner(norm),
                        "norm": norm.id,
                        "window": tier.long,
                        **DERIVED,
                    },
                    summary=(
                        f"Norm '{norm.label}' in gevaar: minder dan {target_text} binnen "
                        f"{norm.within_days} dagen"
                    ),
                    description=(
                        f"Over the last {tier.long} "
                        "{{ $value | humanizePercentage }} of the completed segments "
                        f"{norm.segment} took longer than {norm.within_days} days, and the last "
                        f"{tier.short} shows no recovery; the norm wants {target_text} within. "
                        "The error "
                        "budget burns faster than "
                        f"{_num(tier.factor)}x the sustainable rate."
                    ),
                    # A rule evaluation that misses a series (a failed scrape, a restart) is
                    # no recovery either: keep firing for one short window (Prometheus 2.42+).
                    keep_firing_for=self.w(tier.short),
                    runbook=(
                        "Open the norm on the dashboard and drill down by case type and district "
                        "to find where lead times grew; list the oldest open cases of the "
                        "segment's stages. The owning organisation decides on extra capacity or "
                        "priority; the SG digest reports it chain-wide."
                    ),
                ))

    def _forecast_alerts(self, g: list[dict[str, Any]]) -> None:
        f = self.policy.forecast
        trend = self.w(f.trend_window)
        horizon = _num(self.scale.seconds(f.horizon))
        labels = {"severity": f.severity, "kind": "forecast", **DERIVED}
        runbook = (
            "Look at the trend of the stage's backlog and oldest cases on the dashboard. Act "
            "before the limit is crossed: prioritise the oldest cases, add capacity, or agree a "
            "plan with the partners upstream that feed the stage."
        )
        for _stage, norm in self.stage_norms():
            if norm.target >= 1:
                continue
            sel = f'{{norm="{norm.id}"}}'
            # Little's law: with backlog L and inflow rate r, the mean time in the stage is L / r;
            # above r x limit the average case already waits longer than the norm allows.
            # Under a time scale a chain second lasts `factor` wall seconds.
            limit = _num(norm.within_seconds * self.scale.factor)
            capacity = f"norm:{m.STAGE_INFLOW}:rate{f.trend_window}{sel} * {limit}"
            g.append(_alert(
                "KetenmonitorBacklogForecast",
                f"predict_linear(norm:{m.BACKLOG}:sum{sel}[{trend}], {horizon})\n  > {capacity}",
                self.w(f.for_),
                {**labels, "norm": norm.id},
                summary=(
                    "Werkvoorraad {{ $labels.stage }} overschrijdt binnen " + f.horizon + " de "
                    f"grens voor norm '{norm.label}'"
                ),
                description=(
                    "At the trend of the last " + f.trend_window + " the backlog of stage "
                    "{{ $labels.stage }} will reach {{ $value | printf \"%.0f\" }} cases within "
                    + f.horizon + ": more than inflow x " + str(norm.within_days) + " days, so "
                    "the average case would wait longer than the norm allows (Little's law)."
                ),
                runbook=runbook,
            ))
        for stage, limit in sorted(f.backlog_limits.items()):
            g.append(_alert(
                "KetenmonitorBacklogForecast",
                f'predict_linear({BACKLOG_SUM}{{stage="{stage}"}}[{trend}], {horizon}) > {limit}',
                self.w(f.for_),
                {**labels, "norm": "policy"},
                summary=(
                    "Werkvoorraad {{ $labels.stage }} overschrijdt binnen " + f.horizon +
                    f" de grens van {limit} zaken"
                ),
                description=(
                    "At the trend of the last " + f.trend_window + " the backlog of stage "
                    "{{ $labels.stage }} will reach {{ $value | printf \"%.0f\" }} cases within "
                    + f.horizon + f" (policy limit {limit})."
                ),
                runbook=runbook,
            ))
        for stage, norm in self.stage_norms():
            if norm.case_types is not None:
                continue  # the oldest-case age is not kept per case type
            g.append(_alert(
                "KetenmonitorOldestCaseForecast",
                f'predict_linear({OLDEST_AGE_MAX}{{stage="{stage}"}}[{trend}], {horizon})\n'
                f"  > {norm.within_seconds}",
                self.w(f.for_),
                {**labels, "norm": norm.id},
                summary=(
                    "Oudste zaak in {{ $labels.stage }} passeert binnen " + f.horizon +
                    f" de grens van {norm.within_days} dagen ('{norm.label}')"
                ),
                description=(
                    "At the trend of the last " + f.trend_window + " the oldest active (not "
                    "dormant) case of stage "
                    "{{ $labels.stage }} will be {{ $value | humanizeDuration }} old within "
                    + f.horizon + f", beyond the {norm.within_days}-day limit of norm {norm.id}."
                ),
                runbook=(
                    "List the oldest open cases of the stage (pseudonymous keys) and hand them to "
                    "the owning organisation: a case beyond the reasonable time (ECHR art. 6) may "
                    "lead to a reduced sentence or inadmissibility."
                ),
            ))

    def _feed_alerts(self, g: list[dict[str, Any]]) -> None:
        s = self.policy.stale_feed
        labels = {"severity": s.severity, "kind": "feed", **DERIVED}
        runbook = (
            "Ask the partner's technical contact whether their export runs and can reach Kafka; "
            "check the partner topic's newest offset. Figures of this partner's stages are stale "
            "until the feed resumes; silence the alert during an announced outage."
        )
        for partner in self.chain.partner_ids:
            after = s.per_partner.get(partner, s.after)
            name = self.organisation_label[partner]
            g.append(_alert(
                "KetenmonitorPartnerFeedStale",
                f'{FEED_AGE}{{organisation="{partner}"}} > {_num(self.scale.seconds(after))}',
                self.w("1m"),
                {**labels, "organisation": partner},
                summary=f"Geen gebeurtenissen van {name} sinds "
                + "{{ $value | humanizeDuration }}",
                description=(
                    f"The newest event from {name} ({partner}) arrived "
                    "{{ $value | humanizeDuration }} ago; the limit is " + after + "."
                ),
                runbook=runbook,
            ))
            g.append(_alert(
                "KetenmonitorPartnerFeedAbsent",
                f'absent({m.PARTNER_LAST_EVENT}{{organisation="{partner}"}})',
                self.w(after),
                {**labels, "organisation": partner},
                summary=f"Nog nooit een gebeurtenis van {name} ontvangen",
                description=(
                    f"No worker has reported any event from {name} ({partner}) for " + after +
                    ": the feed never started, or its series disappeared."
                ),
                runbook=runbook,
            ))

    def _dead_letter_alerts(self, g: list[dict[str, Any]]) -> None:
        d = self.policy.dead_letter
        ratio = f"organisation:{m.EVENTS_REJECTED}:ratio{d.window}"
        events = f"organisation:{m.PREFIX}_events:increase{d.window}"
        g.append(_alert(
            "KetenmonitorDeadLetterSurge",
            f"{ratio} > {_num(d.max_reject_ratio)}\nand {events} >= {d.min_events}",
            self.w(d.for_),
            {"severity": d.severity, "kind": "dead_letter", **DERIVED},
            summary=(
                "{{ $value | humanizePercentage }} van de gebeurtenissen van "
                "{{ $labels.organisation }} afgekeurd (dead letter)"
            ),
            description=(
                "Over the last " + d.window + " {{ $value | humanizePercentage }} of the events "
                "from {{ $labels.organisation }} broke the contract (limit "
                f"{_pct(d.max_reject_ratio)}); they are on the dead-letter topic with a reason."
            ),
            runbook=(
                "Read ketenmonitor_events_rejected_total by reason to see what breaks; a new "
                "schema version or code list at the partner is the usual cause. Fix at the "
                "source, then replay the dead-letter topic."
            ),
        ))

    def _monitor_alerts(self, g: list[dict[str, Any]]) -> None:
        mon = self.policy.monitor
        owner = self.policy.owners.monitor
        g.append(_alert(
            "KetenmonitorWorkerDown",
            f'up{{job="{WORKER_JOB}"}} == 0',
            self.w(mon.worker_down_for),
            {"severity": "critical", "kind": "monitor", "organisation": owner},
            summary="Ketenmonitor-worker {{ $labels.instance }} is onbereikbaar",
            description=(
                "Prometheus cannot scrape worker {{ $labels.instance }}. Its partitions move to "
                "the other workers after a rebalance; until then every figure misses them, so the "
                "alerts derived from worker metrics are inhibited."
            ),
            runbook=(
                "Check the worker process and its log; restart it (ketenmonitor worker). If it "
                "crashes at start, its log says why (broker unreachable, credentials, a changelog "
                "it cannot read); restore progress is logged per partition."
            ),
        ))
        g.append(_alert(
            "KetenmonitorConsumerLagGrowing",
            f"{LAG_SUM} > {mon.min_lag_messages}\n"
            f"and deriv({LAG_SUM}[{self.w(mon.lag_window)}]) > 0",
            self.w(mon.lag_for),
            {"severity": "warning", "kind": "monitor", "organisation": owner, **DERIVED},
            summary="Achterstand op topic {{ $labels.topic }} groeit",
            description=(
                "{{ $value | printf \"%.0f\" }} messages on {{ $labels.topic }} wait for the "
                "workers and the number has been rising for " + mon.lag_for + "."
            ),
            runbook=(
                "Compare the event arrival rate with the processing rate; start another worker "
                "if the workers are saturated. A lag that grows while processing stopped is a "
                "stalled consumer: restart the worker that owns the topic."
            ),
        ))
        g.append(_alert(
            "KetenmonitorNoOffsetCommits",
            f"time() - {LAST_COMMIT} > {_num(self.scale.seconds(mon.no_commit_after))}\n"
            f"and on (instance) sum by (instance) ({CONSUMER_LAG}) > 0",
            self.w("1m"),
            {"severity": "critical", "kind": "monitor", "organisation": owner, **DERIVED},
            summary="Worker {{ $labels.instance }} legt geen voortgang vast",
            description=(
                "Worker {{ $labels.instance }} committed no offset for "
                "{{ $value | humanizeDuration }} while messages wait: it is stalled."
            ),
            runbook=(
                "Read the worker's log (a batch not acknowledged within the processing timeout "
                "is logged and retried from the changelogs) and ketenmonitor_agent_busy_seconds, "
                "then restart the worker; at-least-once processing with idempotent updates "
                "makes the restart safe."
            ),
        ))


def generate_rules(
    chain: Chain, policy: AlertPolicy, scale: TimeScale | None = None
) -> dict[str, Any]:
    return RuleGenerator(chain, policy, scale).generate()


HEADER = """\
# GENERATED by `ketenmonitor rules generate`{scale} from the chain definition
# (ketenmonitor/chain.yaml: norm limits and targets) and the alerting policy
# (ketenmonitor/alerting/policy.yaml). Do not edit: change those and regenerate.
"""


def render_rules(chain: Chain, policy: AlertPolicy, scale: TimeScale | None = None) -> str:
    scale = scale or TimeScale()
    note = (
        "" if scale.factor == 1 else f" --time-scale {scale.factor!r} --min-window {scale.minimum}"
    )
    body = yaml.dump(
        generate_rules(chain, policy, scale),
        Dumper=_Dumper,
        sort_keys=False,
        width=1000,  # long PromQL on one line; multi-line expressions are literal blocks
        allow_unicode=True,
    )
    return HEADER.format(scale=note) + body


# -- small builders ------------------------------------------------------------------------------
def _record(name: str, expr: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def _alert(
    name: str,
    expr: str,
    for_: str,
    labels: dict[str, str],
    *,
    summary: str,
    description: str,
    runbook: str,
    keep_firing_for: str | None = None,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        **({"keep_firing_for": keep_firing_for} if keep_firing_for else {}),
        "labels": dict(labels),
        "annotations": {"summary": summary, "description": description, "runbook": runbook},
    }


def _rate(series: str, window: str) -> str:
    return f"rate({series}[{window}])"


def _num(x: float) -> str:
    """A number for PromQL without float noise (0.1 rather than 0.09999999999999998)."""
    return f"{x:.10g}"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions) as literal blocks, readable in review."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)

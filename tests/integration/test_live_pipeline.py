"""End to end on a real broker: simulated partners -> Kafka -> a real worker process -> /metrics.

Every series the worker exports about cases is compared, exactly, with an independent batch
computation over the simulator's ground truth (tests/integration/batch_truth.py).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from batch_truth import CASE_METRICS, comparable, expected_samples, wait_for_truth
from prometheus_client.utils import floatToGoString

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases


def monitored_topics(settings: Settings, partners: list[str]) -> list[str]:
    return [settings.partner_topic(p) for p in partners] + [settings.cases_topic]


def test_metrics_of_a_simulated_log_equal_an_independent_batch_computation(
    monitor_env, start_worker
):
    chain = load_chain()
    reference = float(int(time.time()) - 3600)
    env = {
        **monitor_env,
        "KETENMONITOR_AGE_REFERENCE_TIME": datetime.fromtimestamp(reference, UTC).isoformat(),
    }
    settings = Settings(
        kafka_bootstrap=env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"],
    )
    cases = simulate_cases(load_scenario(), 3000, reference - 2 * 365 * 86400, reference, seed=11)
    # Every branch of the default chain is in the log.
    last_nodes = Counter(f"{c.steps[-1].milestone}:{c.steps[-1].outcome}" for c in cases if c.steps)
    for branch_end in (
        "om_decision:dismissal",
        "judgment:acquittal",
        "final:non_financial",
        "collection_closed:paid",
        "collection_closed:uncollectable",
        "collection_closed:substitute_detention",
    ):
        assert last_nodes[branch_end] > 0, branch_end
    assert any(any(s.milestone == "appeal_judgment" for s in c.steps) for c in cases)
    assert any(any(s.outcome == "settlement" for s in c.steps) for c in cases)

    worker = start_worker(
        {"KETENMONITOR_AGE_REFERENCE_TIME": env["KETENMONITOR_AGE_REFERENCE_TIME"]}
    )
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for event in contract_events(cases, chain, seed=11):
            publisher.send(settings.partner_topic(event["organisation"]), event)

    wait_until_caught_up(
        settings.kafka_bootstrap,
        env["KETENMONITOR_APP_ID"],
        monitored_topics(settings, chain.partner_ids),
        timeout=300,
    )
    expected = comparable(expected_samples(chain, cases, reference), CASE_METRICS)
    assert len(expected) > 1000  # the comparison covers thousands of series
    for name in ("ketenmonitor_dormant_cases", "ketenmonitor_milestone_repeats_total",
                 "ketenmonitor_stage_reentries_cases_total"):  # the log has some of each
        assert sum(v for k, v in expected.items() if k[0] == name) > 0, name
    actual = comparable(wait_for_truth(worker.scrape, expected, CASE_METRICS), CASE_METRICS)
    assert sum(v for k, v in actual.items() if k[0] == "ketenmonitor_events_accepted_total") == sum(
        len(c.steps) for c in cases
    )
    # Lateness: every accepted event is in the histogram; the simulated events are months to days
    # old when published, so none is within the first minute.
    samples = worker.scrape()
    for partner in chain.partner_ids:
        org = frozenset({("organisation", partner)})
        accepted = samples[("ketenmonitor_events_accepted_total", org)]
        assert samples[("ketenmonitor_event_lateness_seconds_count", org)] == accepted
        first_bucket = frozenset({("organisation", partner), ("le", floatToGoString(60.0))})
        assert samples[("ketenmonitor_event_lateness_seconds_bucket", first_bucket)] == 0

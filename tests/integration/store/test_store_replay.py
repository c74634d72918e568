"""Replays write idempotently: twice, or in another order, the store holds the same rows."""

from __future__ import annotations

import json

from store_helpers import TEST_SECRET, dump, write_log

from ketenmonitor.domain.pseudonym import pseudonymise
from ketenmonitor.store import CaseFactSink, make_engine
from ketenmonitor.store.replay import Replayer, replay_file


def _replay(store_url, chain, path, max_buffered=10_000) -> dict:
    with CaseFactSink.from_url(store_url, chain, max_buffered=max_buffered) as sink:
        sink.start()
        replayer = Replayer(chain, TEST_SECRET, 6, sink)
        replay_file(path, replayer, progress=False)
    return replayer.summary()


def _rows(store_url) -> dict:
    engine = make_engine(store_url)
    try:
        return dump(engine)
    finally:
        engine.dispose()


def test_replaying_the_same_log_twice_leaves_the_same_rows(
    store_url, chain, simulated_cases, tmp_path
):
    log = write_log(simulated_cases, chain, tmp_path / "events.jsonl")
    first = _replay(store_url, chain, log)
    rows = _rows(store_url)
    second = _replay(store_url, chain, log, max_buffered=301)  # other flush boundaries too
    assert _rows(store_url) == rows
    assert first["accepted"] == second["accepted"] == sum(len(c.steps) for c in simulated_cases)
    assert len(rows["cases"]) == sum(1 for c in simulated_cases if c.steps)
    assert len(rows["case_milestones"]) == first["accepted"]
    assert rows["case_stages"] and rows["case_segments"]


def test_event_order_does_not_change_the_rows(store_url, chain, simulated_cases, tmp_path):
    log = write_log(simulated_cases, chain, tmp_path / "events.jsonl")
    reversed_log = tmp_path / "reversed.jsonl"
    reversed_log.write_text(
        "".join(reversed(log.read_text().splitlines(keepends=True))), encoding="utf-8"
    )
    _replay(store_url, chain, log)
    rows = _rows(store_url)
    other = store_url.replace("store.db", "other.db") if store_url.startswith("sqlite") else None
    if other is None:
        # PostgreSQL: replay the reversed log over the same database after emptying it.
        engine = make_engine(store_url)
        with engine.begin() as conn:
            for table in ("case_segments", "case_stages", "case_milestones", "cases"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        engine.dispose()
        other = store_url
    _replay(other, chain, reversed_log, max_buffered=400)
    assert _rows(other) == rows


def test_corrections_and_retractions_replace_and_remove_rows(store_url, chain, tmp_path):
    """A later revision moves a milestone; a retraction removes it and what it implied."""
    t0 = 1_717_200_000  # 2024-06-01
    base = {"schema_version": 1, "case_key": "PN-CORR-1", "case_type": "standard",
            "district": "amsterdam"}

    def event(event_id, organisation, milestone, t, **extra):
        from datetime import UTC, datetime

        return json.dumps({**base, "event_id": event_id, "organisation": organisation,
                           "milestone": milestone,
                           "occurred_at": datetime.fromtimestamp(t, UTC).isoformat(), **extra})

    lines = [
        event("e1", "police", "report_registered", t0),
        event("e2", "police", "file_sent_to_om", t0 + 10 * 86400),
        event("e3", "om", "om_intake", t0 + 12 * 86400),
        event("e4", "om", "om_decision", t0 + 40 * 86400, outcome="dismissal"),
    ]
    log = tmp_path / "a.jsonl"
    log.write_text("\n".join(lines) + "\n")
    _replay(store_url, chain, log)
    rows = _rows(store_url)
    assert len(rows["cases"]) == 1 and rows["cases"][0][6] is None  # closed: no current stage
    assert "end_to_end" in [r[1] for r in rows["case_segments"]]

    corrections = [
        event("e2b", "police", "file_sent_to_om", t0 + 5 * 86400, revision=1),
        event("e4x", "om", "om_decision", t0 + 40 * 86400, revision=1, retracted=True),
    ]
    log.write_text("\n".join(lines + corrections) + "\n")
    _replay(store_url, chain, log)
    rows = _rows(store_url)
    pseudonym = pseudonymise(TEST_SECRET, "PN-CORR-1")
    milestones = {r[1]: r for r in rows["case_milestones"]}
    assert set(milestones) == {"report_registered", "file_sent_to_om", "om_intake"}
    assert milestones["file_sent_to_om"][2] == t0 + 5 * 86400
    segments = {r[1]: r[4] for r in rows["case_segments"]}
    assert segments == {"police_report_to_file": 5 * 86400.0,
                        "police_file_to_om_intake": 7 * 86400.0}
    assert rows["cases"] == [
        (pseudonym, "standard", "amsterdam", float(t0), "om_intake", t0 + 12 * 86400.0,
         "om_assessment", None, None)
    ]
    stages = {r[1]: (r[2], r[3]) for r in rows["case_stages"]}
    assert stages["om_assessment"] == (t0 + 12 * 86400.0, None)

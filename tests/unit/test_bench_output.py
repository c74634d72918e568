"""The benchmark's own logic: its correctness check, latency matching, profile and summary output.

No broker and no timings here: tests/integration/test_bench_run.py runs the harness for real.
"""

from __future__ import annotations

import itertools
import json
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from ketenmonitor.schemas.events import parse_event
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.metrics import ChainCollector
from ketenmonitor.streams.totals import LocalTotals
from prometheus_client import CollectorRegistry, generate_latest

from bench.core_loop import run_core_loop
from bench.correctness import compare, expected_metrics, expected_metrics_of
from bench.latency import latencies, percentile
from bench.machine import CpuClock
from bench.national import RETENTION_DAYS, national_cases, national_events, run_national
from bench.profile import summarise
from bench.runner import checks_pass
from bench.summary import render
from bench.workload import EventLog, open_cases_log, replay_log
from ketenmonitor.domain.chain import SECONDS_PER_DAY, load_chain
from ketenmonitor.infra.worker_process import parse_samples


def _metrics_of(chain, log) -> dict:
    """What a worker's /metrics would say after the log, from the worker's own code (no Kafka)."""
    core = run_core_loop(chain, log.raw)
    accepted = Counter(organisation for organisation, _ in log.raw)
    ingest = [(org, IngestStats(accepted=n)) for org, n in accepted.items()]
    local = LocalTotals(
        lambda: core.totals.by_partition.values(), lambda: ingest, lambda: log.reference_time
    )
    registry = CollectorRegistry()
    collector = ChainCollector(
        chain, local, {p: p for p in chain.partner_ids}, reference_time=lambda: log.reference_time
    )
    registry.register(collector)
    return parse_samples(generate_latest(registry).decode())


def test_the_correctness_check_accepts_the_worker_code_and_rejects_a_changed_number():
    chain = load_chain()
    log = replay_log(chain, 1500, seed=3)
    expected = expected_metrics(chain, log)
    actual = _metrics_of(chain, log)

    report = compare(actual, expected.samples)
    assert report.equal, report.mismatches
    assert report.series > 500

    inflow = "ketenmonitor_stage_inflow_cases_total"
    key = next(k for k, v in actual.items() if k[0] == inflow and v)
    wrong = compare({**actual, key: actual[key] + 1}, expected.samples)
    assert not wrong.equal
    assert wrong.mismatches[0]["metric"] == "ketenmonitor_stage_inflow_cases_total"
    missing = compare({k: v for k, v in actual.items() if k != key}, expected.samples)
    assert not missing.equal


def test_open_cases_stay_open_and_each_is_one_event():
    chain = load_chain()
    log = open_cases_log(chain, 300)
    assert len(log) == 300 == len({c.case_key for c in log.cases})
    samples = _metrics_of(chain, log)
    assert samples[("ketenmonitor_cases_tracked", frozenset())] == 300
    assert not any(k[0] == "ketenmonitor_cases_closed_total" and v for k, v in samples.items())


NATIONAL_REFERENCE = 1_780_000_000.0  # 2026-05-28, a whole hour


def test_national_events_pass_the_contract_and_close_the_history_only():
    chain = load_chain()
    cases = list(national_cases(chain, 900, 100, NATIONAL_REFERENCE))
    raw = list(national_events(chain, cases))
    assert len(cases) == 1000 == len({c.case_key for c in cases})
    assert len(raw) == 2 * 900 + 100
    ids = {parse_event(value, chain, organisation, now=NATIONAL_REFERENCE).event_id
           for organisation, value in raw}
    assert len(ids) == len(raw)
    history = [c for c in cases if c.complete]
    assert len(history) == 900 and {c.case_type for c in history} == {"wahv"}
    assert {(s.milestone, s.outcome) for c in history for s in c.steps} == {
        ("wahv_fine_issued", None), ("collection_closed", "paid")
    }
    # every history case closed more than the retention before the reference
    assert max(s.occurred_at for c in history for s in c.steps) < (
        NATIONAL_REFERENCE - RETENTION_DAYS * SECONDS_PER_DAY
    )
    # the worker's own code holds every case and closes the history; the batch computation,
    # fed by the generator itself, agrees with it
    samples = _metrics_of(chain, EventLog(cases, raw, NATIONAL_REFERENCE))
    assert samples[("ketenmonitor_cases_tracked", frozenset())] == 1000
    closed = sum(v for k, v in samples.items() if k[0] == "ketenmonitor_cases_closed_total")
    assert closed == 900
    truth = expected_metrics_of(
        chain, national_cases(chain, 900, 100, NATIONAL_REFERENCE), NATIONAL_REFERENCE, len(raw)
    )
    assert compare(samples, truth.samples).equal


def test_national_open_cases_are_spread_through_the_history():
    chain = load_chain()
    prefix = list(itertools.islice(national_cases(chain, 1000, 100, NATIONAL_REFERENCE), 110))
    assert sum(not c.complete for c in prefix) == 10


def test_a_national_log_is_generated_one_case_at_a_time():
    chain = load_chain()

    def peak_for_first_events(history: int, open_cases: int) -> int:
        tracemalloc.start()
        try:
            cases = national_cases(chain, history, open_cases, NATIONAL_REFERENCE)
            events = national_events(chain, cases)
            assert sum(1 for _ in itertools.islice(events, 20_000)) == 20_000
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # the first 20,000 events of a 10M-case log cost what they cost from a 100k-case log (the
    # simulation behind the open cases' mix dominates both); 10M cases held would be gigabytes
    small = peak_for_first_events(100_000, 10_000)
    assert peak_for_first_events(10_000_000, 1_000_000) < small * 1.2


def test_national_replay_modes_need_the_in_memory_baseline_and_known_names(tmp_path: Path):
    chain = load_chain()
    for modes in (("retention+state", "state"), ("in-memory", "on-disk")):
        try:
            run_national(None, chain, 10, 1, tmp_path, modes=modes)  # type: ignore[arg-type]
        except ValueError as exc:
            assert "in-memory" in str(exc)
        else:
            raise AssertionError(f"{modes} accepted")


def test_the_cpu_clock_splits_user_and_system_time_and_counts_faults():
    import mmap
    import os

    clock = CpuClock(os.getpid())
    before = clock.counters()
    pages = mmap.mmap(-1, 2_000 * 4096)  # fresh anonymous pages: each first touch a minor fault
    for page in range(2_000):
        pages[page * 4096] = 1
    deadline = time.process_time() + 5
    while clock.counters()["cpu_user_seconds"] == before["cpu_user_seconds"]:  # 10 ms ticks
        sum(range(100_000))
        assert time.process_time() < deadline
    after = clock.counters()
    pages.close()
    assert after["cpu_user_seconds"] > before["cpu_user_seconds"]
    assert after["minor_faults"] > before["minor_faults"]
    assert after["voluntary_switches"] >= before["voluntary_switches"]


def test_latency_is_the_first_scrape_covering_each_event():
    sent = [0.0, 0.1, 0.2]
    scrapes = [(0.05, 0), (0.15, 1), (0.35, 3)]
    assert [round(x, 6) for x in latencies(sent, scrapes)] == [0.15, 0.25, 0.15]
    assert latencies(sent, [(0.5, 1)]) == [0.5, None, None]
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 99) == 4


def test_profile_summary_counts_self_inclusive_and_layers():
    collapsed = "\n".join([
        "process 1;thread (0x1);run (streams/worker.py:97);_process (streams/worker.py:170);"
        "apply_event (ketenmonitor/domain/case.py:5) 6",
        "process 1;thread (0x1);run (streams/worker.py:97);_consume (streams/worker.py:160);"
        "getmany (aiokafka/consumer/consumer.py:3) 4",
    ])
    summary = summarise(collapsed)
    assert summary["samples"] == 10
    assert summary["self"][0] == {
        "frame": "apply_event (ketenmonitor/domain/case.py:5)", "samples": 6, "share": 0.6
    }
    assert summary["inclusive"][0]["frame"] == "run (streams/worker.py:97)"
    assert summary["layers"] == {"ours: domain core": 0.6, "aiokafka": 0.4}


def test_profile_counts_the_runtime_only_for_its_own_frames():
    runtime = "ours: runtime (streams/worker.py, web.py)"
    glue = summarise(
        "process 1;thread (0x1);run (streams/worker.py:97);_consume (streams/worker.py:160);"
        "getmany (aiokafka/consumer/consumer.py:9) 3\n"
        "process 1;thread (0x1);run (streams/worker.py:97);_ingest (streams/worker.py:200) 2\n"
        "process 1;thread (0x1);run (streams/worker.py:97);select (selectors.py:468) 1\n"
        "process 1;thread (0x1);run (streams/worker.py:97);_handle (aiohttp/web_protocol.py:4);"
        "metrics (streams/web.py:40);collect (streams/metrics.py:80) 2\n"
        "process 1;thread (0x2);Thread.run (threading.py:982);"
        "_worker (concurrent/futures/thread.py:81) 2"
    )
    assert glue["layers"] == {
        "aiokafka": 0.3, runtime: 0.2, "ours: /metrics collector": 0.2,
        "idle thread-pool thread": 0.2, "waiting in select (idle)": 0.1,
    }
    old = summarise(
        "process 1;thread (0x1);run_worker (streams/app.py:252);_c_aiter (faust/streams.py:9) 1"
    )
    assert old["layers"] == {"faust": 1.0}


def _document(started_at: str, results: dict) -> dict:
    sample = json.loads((Path(__file__).parent / "samples" / "bench_result.json").read_text())
    return {"started_at": started_at, "command": "python -m bench run",
            "machine": sample["machine"], "results": results, "errors": {}}


def _section(text: str, heading: str) -> str:
    """The markdown section that starts with `heading` (up to the next ## heading)."""
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _restore_figure(seconds: float) -> dict:
    return {"recovered": True, "seconds_to_correct_metrics": seconds,
            "seconds_to_http_ready": 1.0, "cpu_seconds": 2.0, "load_average": [1, 1, 1],
            "check": {"equal": True, "series": 3, "mismatches": []}}


def test_recovery_summary_reads_old_per_store_files_and_prefers_the_newest_restore(
    tmp_path: Path,
):
    old = {"method": "per store", "cases": 1000,
           "memory": _restore_figure(12.5), "rocksdb": _restore_figure(3.25)}
    (tmp_path / "a-old.json").write_text(
        json.dumps(_document("2026-01-01T00:00:00+00:00", {"recovery": old}))
    )
    section = _section(render(tmp_path), "## Recovery")
    assert "| memory:// (faust" in section and "| rocksdb:// (faust" in section
    assert "| 12.5 |" in section and "~12500 s (linear)" in section

    new = {"method": "changelog", "cases": 1000, "runtime": "changelog restore (worker)",
           "restore": _restore_figure(0.75)}
    document = _document("2026-01-02T00:00:00+00:00", {"recovery": new})
    (tmp_path / "b-new.json").write_text(json.dumps(document))
    section = _section(render(tmp_path), "## Recovery")
    assert "| changelog restore (worker) | 0.75 |" in section and "~750 s (linear)" in section
    assert "memory://" not in section and "rocksdb://" not in section
    assert checks_pass(document)
    new["restore"]["check"]["equal"] = False
    assert not checks_pass(document)

    # Metrics come from the totals topic before the restore ends: the restore, timed from the
    # worker's log, is the figure that grows with the cases held and is extrapolated.
    timed = {**new, "restore": {**_restore_figure(0.75), "seconds_to_restored_state": 2.5}}
    document = _document("2026-01-03T00:00:00+00:00", {"recovery": timed})
    (tmp_path / "c-newer.json").write_text(json.dumps(document))
    section = _section(render(tmp_path), "## Recovery")
    assert "| changelog restore (worker) | 0.75 | 2.5 |" in section
    assert "~2500 s (linear)" in section


def test_summary_renders_a_results_file_and_checks_pass_reads_every_check(tmp_path: Path):
    document = json.loads((Path(__file__).parent / "samples" / "bench_result.json").read_text())
    (tmp_path / "2026-01-01-x.json").write_text(json.dumps(document))
    text = render(tmp_path)
    assert "## Replay throughput" in text and "MISSED" in text
    assert checks_pass(document)
    document["results"]["replay"]["worker"]["check"]["equal"] = False
    assert not checks_pass(document)


def test_the_national_section_shows_the_load_both_restarts_and_the_replay(tmp_path: Path):
    # a small-scale run's result as the benchmark wrote it
    result = json.loads((Path(__file__).parent / "samples" / "bench_national.json").read_text())
    document = _document("2026-01-01T00:00:00+00:00", {"national": result})
    (tmp_path / "2026-01-01-national.json").write_text(json.dumps(document))
    section = _section(render(tmp_path), "## National scale")
    assert f"{result['closed_cases']:,} closed, {result['open_cases']:,} open" in section
    assert "| whole changelog | " in section and "| local checkpoint + changelog tail" in section
    assert section.count("| in-memory |") == section.count("| retention+state |") >= 1
    assert "not the issue's scale" in section  # a small run is not the issue's figure
    assert "| NO |" not in section and "| NOT |" not in section and checks_pass(document)
    result["restore_local_state"]["check"]["equal"] = False
    assert not checks_pass(document)


def test_the_national_section_keeps_the_largest_run_and_not_a_newer_probe(tmp_path: Path):
    large = json.loads((Path(__file__).parent / "samples" / "bench_national.json").read_text())
    large = {**large, "open_cases": 1_000_000, "history_cases": 2_000_000}
    probe = {**large, "open_cases": 2_000, "history_cases": 10_000}
    for name, when, result in (("a-large", "2026-01-01", large), ("b-probe", "2026-01-02", probe)):
        document = _document(f"{when}T00:00:00+00:00", {"national": result})
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
    assert "(2,000,000 cases of history" in _section(render(tmp_path), "## National scale")
    failed = {**large, "open_cases": 2_000_000, "error": "Traceback ..."}
    document = _document("2026-01-03T00:00:00+00:00", {"national": failed})
    (tmp_path / "c-failed.json").write_text(json.dumps(document))
    assert "(2,000,000 cases of history" in _section(render(tmp_path), "## National scale")
    bigger = {**large, "history_cases": 3_000_000}
    document = _document("2026-01-04T00:00:00+00:00", {"national": bigger})
    (tmp_path / "d-bigger.json").write_text(json.dumps(document))
    assert "(3,000,000 cases of history" in _section(render(tmp_path), "## National scale")


def test_the_exactly_once_section_lists_every_run_and_the_medians(tmp_path: Path):
    def run(round_: int, on: bool, rate: float, per_cpu: float) -> dict:
        return {"round": round_, "exactly_once": on, "completed": True, "events_per_second": rate,
                "events_per_cpu_second": per_cpu, "cpu_seconds_total": 10.0,
                "wall_seconds_from_start": 20.0, "load_average_before": [1.0, 1.0, 1.0],
                "duplicates": 0.0, "check": {"equal": True, "series": 12, "mismatches": []}}

    result = {
        "events": 1000, "cases": 100, "runtime": "worker",
        "runs": [run(1, False, 100, 200), run(1, True, 90, 180)],
        "median": {"off": {"events_per_second": 100, "events_per_cpu_second": 200},
                   "on": {"events_per_second": 90, "events_per_cpu_second": 180}},
        "cost": {"wall_throughput_ratio": 0.9, "cpu_throughput_ratio": 0.9},
    }
    document = _document("2026-01-01T00:00:00+00:00", {"exactly_once": result})
    (tmp_path / "a.json").write_text(json.dumps(document))
    section = _section(render(tmp_path), "## Exactly-once mode")
    assert "| 1 | false | 100 | 200 |" in section and "| 1 | true | 90 | 180 |" in section
    assert "(0.90x)" in section
    assert checks_pass(document)


def test_rounds_alternate_their_order_and_ratios_pair_the_runs_of_a_round():
    from bench.interleaved import order_of_round, paired_ratios

    modes = ("in-memory", "retention+state")
    assert [order_of_round(modes, n) for n in (1, 2, 3)] == [modes, modes[::-1], modes]

    def run(round_, mode, wall, cpu, completed=True):
        return {"round": round_, "mode": mode, "completed": completed,
                "events_per_second": wall, "events_per_cpu_second": cpu}

    runs = [
        run(1, "in-memory", 100, 200), run(1, "retention+state", 90, 210),
        run(2, "retention+state", 55, 100), run(2, "in-memory", 50, 100),
        run(3, "in-memory", 80, 160), run(3, "retention+state", 80, 1, completed=False),
    ]
    paired = paired_ratios(runs, "mode", "retention+state", "in-memory")
    assert [p["round"] for p in paired["rounds"]] == [1, 2]  # round 3 has no completed pair
    assert [p["wall_throughput_ratio"] for p in paired["rounds"]] == [0.9, 1.1]
    assert paired["median_wall_throughput_ratio"] == 1.0
    assert paired["median_cpu_throughput_ratio"] == 1.025


def test_the_machine_share_is_read_from_proc_stat_and_settle_returns_when_quiet_enough():
    from bench.machine import MachineShare, settle

    share = MachineShare()
    # Some CPU in between, until /proc/stat has counted a few ticks (10 ms each at the usual
    # USER_HZ; a fixed amount of work ended inside one tick on a fast machine).
    deadline = time.monotonic() + 5.0
    while True:
        sum(i * i for i in range(50_000))
        found = share.shares()
        if found["machine_busy_share"] > 0.0 or time.monotonic() > deadline:
            break
    assert 0.0 <= found["machine_steal_share"] <= found["machine_busy_share"] + 1.0
    assert 0.0 < found["machine_busy_share"] <= 1.0
    waited = settle(busy_below=1.01, window_seconds=0.2, give_up_seconds=5.0)
    assert waited["settle_seconds"] < 1.0  # anything is below 101% busy: one window


def test_the_checkpoint_layout_probe_writes_the_same_records_both_ways(tmp_path: Path):
    import marshal

    import lmdb

    from bench.checkpoint_layout import LAYOUTS, measure

    records = {f"case-{i:05d}".encode(): bytes([i % 256]) * 130 for i in range(2_000)}
    for layout in LAYOUTS:
        run = measure(layout, records, tmp_path / layout)
        assert run["layout"] == layout and run["write_seconds"] > 0
        assert run["main_rate_alone"] > 0 and run["main_rate_while_writing"] > 0
        env = lmdb.open(str(tmp_path / layout), max_dbs=2, readonly=True)
        with env.begin(db=env.open_db(b"records", create=False)) as txn:
            stored = dict(txn.cursor())
        env.close()
        found = stored if layout == "put-per-record" else marshal.loads(stored[b"delta"])
        assert found == records

"""National scale (issue #17): years of closed history and the open cases, in bounded memory.

    result = run_national(broker, chain, history=10_000_000, open_cases=1_000_000, logs=...)

The issue's figure: 10 million cases of history, of which 1 million open. The log
(national_cases, streamed: never held in memory): `history - open_cases` closed Wahv cases (8 of 10
national cases are Wahv fines), each two CJIB events, `wahv_fine_issued` and `collection_closed`
with outcome `paid` (a closure in the chain), issued over the three years before the age
reference up to a year before it and closed 1 to 180 days later (so all more than the retention,
90 days, before it); interleaved with them the `open_cases` cases that reached only their first
milestone (bench/workload.py `_first_steps`: the simulator's case type, district and milestone
mix), never closed. Every event passes the contract; each is keyed by its case key on its
partner's topic and every partner takes one hop (placement `case-key`, bench/one_hop.py).
The independent batch computation (tests/integration/batch_truth.py) folds the same cases as
they are generated.

Load: the whole log is produced (not timed), then one worker with
KETENMONITOR_CLOSED_CASE_RETENTION_DAYS=90 and a KETENMONITOR_STATE_DIR consumes it, timed as
the replay worker (bench/worker_run.py: from process start until every input is committed); it
keeps running until its log says it retired every closed case ("retired N closed cases",
summed; a case closed by an event is retired no sooner than 60 s after), then its RSS is read at
rest and its /metrics must equal the batch computation (the reference of the restarts). It is
stopped with SIGTERM (it writes its last checkpoints). Then the restart of bench/recovery.py
(`timed_restart`), twice from the same changelog: without the state directory (the whole
changelog: markers, open cases, the aggregates) and with it (LMDB checkpoint + tail).

Replay: a smaller log of the same mix (`replay_cases` cases) through a worker with retention and
a state directory and one without either (in-memory state), interleaved (in-memory first in
odd rounds, last in even ones), `rounds` of each, each run its own group and changelogs on the
same produced topics; timed as above, /metrics compared with the batch computation of that
log. A case closed by an event is retired no sooner than 60 s after: a replay shorter than a
minute retires nothing. Besides the medians per mode, each round's state run is divided by the
in-memory run of its round (paired ratios) and the median of those is given. Before each run the
harness waits (up to 90 s) until the machine is less than 15% busy over 3 s (the run before left
the broker compacting its changelogs: the second run of a round was the slower one in most
rounds), and it records the machine's busy and steal shares during each run.

RSS: at rest after the load (what a worker that consumed the history holds: Python does not give
back all the memory of the cases it retired), and of each restarted worker once exact (what a
worker holding only the open cases and the retired keys' digests takes); per open case also
above the loading worker's RSS when its HTTP endpoint came up (before it owned partitions).
"""

from __future__ import annotations

import multiprocessing
import re
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench.correctness import BatchResult, expected_metrics_of, settled_comparison
from bench.interleaved import median_per_mode, order_of_round, paired_ratios, throughput_ratios
from bench.kafka_env import LagWatch, create_topics, run_env
from bench.machine import CpuClock, MachineShare, load_average, mapped_unnamed_bytes, settle
from bench.one_hop import path_env
from bench.recovery import TRACKED, timed_restart
from bench.replay import age_reference_env
from bench.worker_run import race, time_catch_up
from bench.workload import _first_steps, produce_keyed, reference_time
from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import SimulatedCase, Step, step_event

HISTORY_SEED = 17  # event ids sim17-<index>-<step> (history), sim9-... (open, as open_cases_log)
OPEN_SEED = 9
RETENTION_DAYS = 90
HISTORY_YEARS = 3
ISSUED_UNTIL_DAYS_BEFORE = 365  # the last fine is issued a year before the reference
MAX_COLLECTION_DAYS = 180  # ... and closed at most 181 days later: > RETENTION_DAYS before it
DIGEST_BYTES = 8  # a retired key's digest (streams/retirement.py RetiredKeys)
RETIRED = re.compile(r"retired (\d+) closed cases")
RUNTIME = "streams/worker.py, aiokafka batches; retention + LMDB local state"
T = TypeVar("T")
MODES = ("in-memory", "retention+state")
# --national-modes: the two parts of "retention+state" alone, to split a difference between them
MODE_PARTS = {"in-memory": (), "retention+state": ("retention", "state"),
              "retention": ("retention",), "state": ("state",),
              # in-memory state with Python's own garbage-collector settings (before 2026-12-01)
              "untuned-gc": ("untuned-gc",),
              # the control: in-memory state under another name, to see the harness's own bias
              "in-memory-again": ()}
MEASURES = ("events_per_second", "events_per_cpu_second", "wall_seconds_from_start",
            "cpu_seconds_total", "peak_rss_bytes")


def history_case(chain: Chain, index: int, closed: int, reference: float) -> SimulatedCase:
    """Closed case `index` of `closed`: a Wahv fine issued and paid, long before `reference`."""
    districts = chain.districts
    start = reference - HISTORY_YEARS * 365 * DAY
    span = (HISTORY_YEARS * 365 - ISSUED_UNTIL_DAYS_BEFORE) * DAY
    issued = float(int(start + span * index / closed))
    closed = issued + (1 + index * 7919 % MAX_COLLECTION_DAYS) * DAY + index % 3600
    steps = (Step("wahv_fine_issued", None, issued), Step("collection_closed", "paid", closed))
    district = districts[index * 31 % len(districts)]
    return SimulatedCase(index, f"NH{HISTORY_SEED:03d}-{index:09d}", "wahv", district, steps, True)


def national_cases(
    chain: Chain, closed: int, open_cases: int, reference: float
) -> Iterator[SimulatedCase]:
    """`closed` closed cases with `open_cases` open ones spread evenly between them (any prefix
    has the mix of the whole); generated one at a time."""
    opens = _first_steps(open_cases, reference, OPEN_SEED)
    emitted = 0
    for index in range(closed):
        yield history_case(chain, index, closed, reference)
        due = (index + 1) * open_cases // closed
        while emitted < due:
            yield next(opens)
            emitted += 1
    yield from opens  # every one when none is closed


def national_records(
    chain: Chain, cases: Iterable[SimulatedCase]
) -> Iterator[tuple[str, bytes, bytes]]:
    """(organisation, case key, contract event JSON) of each case's steps, case by case."""
    for case in cases:
        seed = HISTORY_SEED if case.complete else OPEN_SEED
        for n in range(len(case.steps)):
            event = step_event(case, n, chain, seed)
            yield event["organisation"], event["case_key"].encode(), orjson.dumps(event)


def national_events(chain: Chain, cases: Iterable[SimulatedCase]) -> Iterator[tuple[str, bytes]]:
    """(organisation, contract event JSON) of each case's steps, case by case."""
    for organisation, _, value in national_records(chain, cases):
        yield organisation, value


def in_child(compute: Callable[[], T]) -> Callable[[], T]:
    """Start `compute` in a forked process now (so that it runs beside what follows, on the other
    core); the function returned waits for its result. The 10M log's batch computation takes ~15
    CPU-minutes, about as long as producing the log."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def target() -> None:
        try:
            sender.send((True, compute()))
        except BaseException as exc:  # the parent raises it, with its text
            sender.send((False, "".join(traceback.format_exception(exc))))

    process = context.Process(target=target, name="bench-batch-truth", daemon=True)
    process.start()
    sender.close()

    def result() -> T:
        try:
            ok, value = receiver.recv()
        except EOFError:
            process.join()
            raise RuntimeError(
                f"the batch computation's process died (exit code {process.exitcode})"
            ) from None
        process.join()
        if not ok:
            raise RuntimeError(f"the batch computation failed:\n{value}")
        return value

    return result


def retired_cases(log_path: Path) -> int:
    """Closed cases the worker's log says it retired, summed."""
    if not log_path.exists():
        return 0
    return sum(int(n) for n in RETIRED.findall(log_path.read_text(errors="replace")))


def run_national(
    broker: LocalKafkaBroker,
    chain: Chain,
    history: int,
    open_cases: int,
    logs: Path,
    replay_cases: int = 500_000,
    rounds: int = 1,
    modes: tuple[str, ...] = MODES,
    side_by_side: bool = False,
    timeout: float = 6 * 3600,  # the 10M load at ~2,000 events/s on this box takes 3 hours
) -> dict[str, Any]:
    if not 0 <= open_cases <= history:
        raise ValueError(f"{open_cases} open cases among {history} cases of history")
    unknown = set(modes) - MODE_PARTS.keys()
    if unknown or "in-memory" not in modes:
        raise ValueError(f"replay modes {sorted(unknown)} unknown, or no in-memory baseline: "
                         f"choose among {sorted(MODE_PARTS)}, in-memory included")
    reference = reference_time()
    closed = history - open_cases
    out: dict[str, Any] = {
        "method": __doc__.split("\n\n", 2)[2].strip(),
        "history_cases": history,
        "closed_cases": closed,
        "open_cases": open_cases,
        "events": 2 * closed + open_cases,
        "retention_days": RETENTION_DAYS,
        "runtime": RUNTIME,
    }
    batch = in_child(lambda: expected_metrics_of(
        chain, national_cases(chain, closed, open_cases, reference), reference,
        2 * closed + open_cases,
    ))
    watch = LagWatch(broker.bootstrap_servers)
    try:
        out["load"], reference_samples, env, local = _load(
            broker, chain, closed, open_cases, reference, batch, watch, logs, timeout
        )
        out["batch_truth_cpu_seconds"] = out["load"].pop("batch_truth_cpu_seconds")
        held = int(reference_samples[TRACKED]) - out["load"]["retired_cases"]
        out["restore"] = timed_restart(env, reference_samples, held, logs / "national-2.log",
                                       timeout)
        out["restore_local_state"] = timed_restart(
            local, reference_samples, held, logs / "national-3.log", timeout
        )
        base = out["load"]["rss_at_ready_bytes"] or 0
        for key in ("restore", "restore_local_state"):  # a fresh process holds only what it must
            restart = out[key]
            restart["rss_above_start_per_open_case_bytes"] = round(
                (restart["rss_bytes"] - base) / max(open_cases, 1), 1
            )
        if replay_cases:
            replay = _replay_side_by_side if side_by_side else _replay
            out["replay"] = replay(broker, chain, closed, open_cases, replay_cases, rounds,
                                   watch, logs, timeout, modes)
    except Exception as exc:  # keep the phases measured (hours at full scale); fails the run
        out["error"] = "".join(traceback.format_exception(exc))[-3000:]
        out["check"] = {"equal": False, "series": 0, "mismatches": []}
    finally:
        watch.close()
    return out


def _national_env(broker: LocalKafkaBroker, chain: Chain, name: str, reference: float,
                  **extra: str) -> dict[str, str]:
    return run_env(broker, name, **age_reference_env(reference), **path_env(chain, "one-hop"),
                   **extra)


def _topics(broker: LocalKafkaBroker, chain: Chain, env: dict[str, str]) -> list[str]:
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    topics = [*(settings.partner_topic(p) for p in chain.partner_ids), settings.cases_topic]
    create_topics(broker.bootstrap_servers, topics)
    return topics


def _produce(broker: LocalKafkaBroker, chain: Chain, cases: Iterable[SimulatedCase],
             env: dict[str, str]) -> dict[str, Any]:
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    started = time.monotonic()
    n = produce_keyed(broker.bootstrap_servers, national_records(chain, cases),
                      settings.partner_topic, progress_every=1_000_000)
    seconds = time.monotonic() - started
    return {"events": n, "seconds": round(seconds, 2), "events_per_second": round(n / seconds)}


def _load(
    broker: LocalKafkaBroker, chain: Chain, closed: int, open_cases: int, reference: float,
    truth: Callable[[], BatchResult], watch: LagWatch, logs: Path, timeout: float,
) -> tuple[dict[str, Any], Any, dict[str, str], dict[str, str]]:
    """Produce the log (the batch computation runs beside it: `truth`), then time one worker
    consuming it."""
    env = _national_env(broker, chain, "national", reference,
                        KETENMONITOR_CLOSED_CASE_RETENTION_DAYS=str(RETENTION_DAYS))
    local = {**env, "KETENMONITOR_STATE_DIR": str(logs / f"state-{env['KETENMONITOR_APP_ID']}")}
    topics = _topics(broker, chain, env)
    produced = _produce(broker, chain, national_cases(chain, closed, open_cases, reference), env)
    log_path = logs / "national-1.log"
    worker = WorkerProcess(local, log_path=log_path, loglevel="info")
    at_ready: dict[str, Any] = {}

    def note_ready(w: WorkerProcess) -> None:
        assert w.process is not None
        at_ready["parts"] = CpuClock(w.process.pid).rss_parts()
        at_ready["rss"] = at_ready["parts"]["rss_bytes"]

    try:
        timing = time_catch_up(worker, watch, env["KETENMONITOR_APP_ID"], topics,
                               produced["events"], timeout, on_ready=note_ready)
        if not timing["completed"]:
            raise TimeoutError(f"the national log was not consumed within {timeout:.0f} s")
        assert worker.process is not None
        clock = CpuClock(worker.process.pid)
        caught_up = time.monotonic()
        while (retired := retired_cases(log_path)) < closed:
            if time.monotonic() - caught_up > timeout:
                raise TimeoutError(f"{retired} of {closed} closed cases retired in {timeout} s")
            time.sleep(1.0)
        retired_after = time.monotonic() - caught_up
        time.sleep(5.0)  # let the last retirement's garbage go before the reading at rest
        batch = truth()
        check = settled_comparison(worker.scrape, batch.samples, timeout=120.0)
        rss_at_rest = clock.rss_bytes()
        rss_parts_at_rest = clock.rss_parts()
        reference_samples = worker.scrape()
        load = {
            "produce": produced,
            **timing,
            "check": check.as_dict(),
            "retired_cases": retired,
            "seconds_after_catch_up_until_retired": round(retired_after, 2),
            "rss_at_ready_bytes": at_ready.get("rss"),
            "rss_at_rest_bytes": rss_at_rest,
            "rss_parts_at_ready": at_ready.get("parts"),
            "rss_parts_at_rest": rss_parts_at_rest,
            "rss_at_rest_per_open_case_bytes": round(rss_at_rest / max(open_cases, 1), 1),
            "rss_above_ready_per_open_case_bytes": round(
                (rss_at_rest - at_ready.get("rss", 0)) / max(open_cases, 1), 1
            ),
            "retired_digest_bytes": DIGEST_BYTES * retired,
            # With a state directory the sorted digests are unnamed files there, mapped (the
            # page cache, not the worker's anonymous memory): what the process maps of them.
            "retired_digests_mapped_bytes": mapped_unnamed_bytes(
                worker.process.pid, Path(local["KETENMONITOR_STATE_DIR"])
            ),
            "cases_tracked": reference_samples.get(TRACKED),
            "load_average_at_rest": load_average(),
            "batch_truth_cpu_seconds": round(batch.cpu_seconds, 2),
        }
    finally:
        worker.stop(timeout=600)  # SIGTERM: the last checkpoints are written on the way out
    return load, reference_samples, env, local


def _replay_log(
    broker: LocalKafkaBroker, chain: Chain, closed: int, open_cases: int, cases: int, name: str
) -> tuple[dict[str, str], list[str], int, BatchResult, dict[str, Any]]:
    """The replay's log (the national mix at `cases` cases) produced to its own topics, with its
    batch computation: (env, topics, events, batch, the result's first fields)."""
    replay_history = round(cases * closed / max(closed + open_cases, 1))
    replay_open = cases - replay_history
    reference = reference_time()

    def log() -> Iterator[SimulatedCase]:
        return national_cases(chain, replay_history, replay_open, reference)

    events = 2 * replay_history + replay_open
    batch = expected_metrics_of(chain, log(), reference, events)
    shared = _national_env(broker, chain, name, reference)
    topics = _topics(broker, chain, shared)
    out: dict[str, Any] = {"closed_cases": replay_history, "open_cases": replay_open,
                           "produce": _produce(broker, chain, log(), shared)}
    return shared, topics, events, batch, out


def _mode_env(shared: dict[str, str], mode: str, round_: int, logs: Path) -> dict[str, str]:
    env = {**shared, "KETENMONITOR_APP_ID": f"{shared['KETENMONITOR_APP_ID']}-{mode}"
           f"-{round_}".replace("+", "-")}
    if "retention" in MODE_PARTS[mode]:
        env["KETENMONITOR_CLOSED_CASE_RETENTION_DAYS"] = str(RETENTION_DAYS)
    if "state" in MODE_PARTS[mode]:
        env["KETENMONITOR_STATE_DIR"] = str(logs / f"state-{env['KETENMONITOR_APP_ID']}")
    if "untuned-gc" in MODE_PARTS[mode]:
        env["KETENMONITOR_GC_YOUNG_THRESHOLD"] = "0"
    return env


def _replay_side_by_side(
    broker: LocalKafkaBroker, chain: Chain, closed: int, open_cases: int, cases: int,
    rounds: int, watch: LagWatch, logs: Path, timeout: float, modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """The replay's modes started together, each its own group on the same produced log, and
    compared over the same minutes (bench/worker_run.py `race`): per round, each mode's events
    committed and events per CPU-second when the first worker had the whole log, against the
    in-memory worker's."""
    shared, topics, events, batch, out = _replay_log(
        broker, chain, closed, open_cases, cases, "national-side-by-side"
    )
    out.update(events=events, modes=list(modes), side_by_side=True, rounds=[])
    for round_ in range(1, rounds + 1):
        order = order_of_round(modes, round_)  # who is started first alternates
        envs = {mode: _mode_env(shared, mode, round_, logs) for mode in order}
        workers = {
            mode: WorkerProcess(envs[mode], log_path=logs / f"side-by-side-{round_}-{mode}.log",
                                loglevel="info")
            for mode in order
        }
        settled = settle()
        load_before = load_average()
        share = MachineShare()
        try:
            timing = race(workers, watch, {m: e["KETENMONITOR_APP_ID"] for m, e in envs.items()},
                          topics, events, timeout)
            timing["machine_during_run"] = share.shares()
            timing["checks"] = {
                mode: {"check": settled_comparison(worker.scrape, batch.samples).as_dict()}
                for mode, worker in workers.items()
            }
        finally:
            for worker in workers.values():
                worker.stop(timeout=300)
        window = timing["in_window"]
        timing["ratios_to_in_memory"] = {
            mode: _window_ratios(figures, window["in-memory"])
            for mode, figures in window.items() if mode != "in-memory"
        }
        # Commits come in steps (~2% of this log), so the committed-events ratio is stepped; the
        # finishing times are not: the in-memory worker's over each mode's (below 1: slower).
        finished = timing["finished_after_seconds"]
        timing["finish_time_ratios"] = {
            mode: round(finished["in-memory"] / seconds, 3)
            for mode, seconds in finished.items() if mode != "in-memory"
        }
        # local state alone: each state mode against the mode that differs only in the state
        timing["state_over_memory"] = {
            mode: _window_ratios(window[mode], window[baseline])
            for mode, baseline in STATE_BASELINES.items() if mode in window and baseline in window
        }
        out["rounds"].append({"round": round_, "started_first": order[0],
                              "load_average_before": load_before, "settled_before": settled,
                              **timing})
        print(f"[bench] national side by side round {round_}: {timing['ratios_to_in_memory']} "
              f"state over memory {timing['state_over_memory']} finishing times "
              f"{timing['finish_time_ratios']}", flush=True)
    for key in ("ratios_to_in_memory", "state_over_memory"):
        compared = out["rounds"][0][key] if out["rounds"] else {}
        out[f"median_{key}"] = {
            mode: {
                measure: round(statistics.median(r[key][mode][measure] for r in out["rounds"]), 3)
                for measure in ("wall_throughput_ratio", "cpu_throughput_ratio")
            }
            for mode in compared
        }
    out["median_finish_time_ratios"] = {
        mode: round(statistics.median(r["finish_time_ratios"][mode] for r in out["rounds"]), 3)
        for mode in (out["rounds"][0]["finish_time_ratios"] if out["rounds"] else {})
    }
    return out


# A mode with local state, and the mode that is the same without it.
STATE_BASELINES = {"state": "in-memory", "retention+state": "retention"}


def _window_ratios(figures: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    return {
        "wall_throughput_ratio": round(
            figures["events_committed"] / max(base["events_committed"], 1), 3),
        "cpu_throughput_ratio": round(
            figures["events_per_cpu_second"] / max(base["events_per_cpu_second"], 1e-9), 3),
    }


def _replay(
    broker: LocalKafkaBroker, chain: Chain, closed: int, open_cases: int, cases: int,
    rounds: int, watch: LagWatch, logs: Path, timeout: float, modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """The same mix at a smaller size through an in-memory worker and one with retention and a
    state directory, interleaved, on one produced log."""
    shared, topics, events, batch, out = _replay_log(
        broker, chain, closed, open_cases, cases, "national-replay"
    )
    out["runs"] = []
    for round_ in range(1, rounds + 1):
        for mode in order_of_round(modes, round_):
            env = _mode_env(shared, mode, round_, logs)
            settled = settle()  # the run before has finished on the machine (broker included)
            load_before = load_average()
            worker = WorkerProcess(env, log_path=logs / f"national-replay-{round_}-{mode}.log",
                                   loglevel="info")
            share = MachineShare()
            try:
                timing = time_catch_up(worker, watch, env["KETENMONITOR_APP_ID"], topics, events,
                                       timeout)
                timing["machine_during_run"] = share.shares()
                timing["check"] = settled_comparison(worker.scrape, batch.samples).as_dict()
            finally:
                worker.stop(timeout=300)
            run = {"round": round_, "mode": mode, "load_average_before": load_before,
                   "settled_before": settled,
                   "load_average_after": load_average(), **timing}
            out["runs"].append(run)
            print(f"[bench] national replay round {round_} {mode}: "
                  f"{timing.get('events_per_second')} events/s", flush=True)
    out["modes"] = list(modes)
    out["median"] = median_per_mode(out["runs"], "mode", modes, MEASURES)
    for mode in modes:  # every other mode against the in-memory run of its round
        if mode not in ("in-memory", "retention+state") and mode in out["median"]:
            out.setdefault("paired_by_mode", {})[mode] = paired_ratios(
                out["runs"], "mode", mode, "in-memory"
            )
    if set(MODES) <= out["median"].keys():
        out["ratio"] = throughput_ratios(
            out["median"]["retention+state"], out["median"]["in-memory"]
        )
        out["paired"] = paired_ratios(out["runs"], "mode", "retention+state", "in-memory")
    return out

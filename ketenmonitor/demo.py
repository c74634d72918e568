"""`ketenmonitor demo`: a broker, a worker and simulated partners, with a live summary.

Starts a local Kafka broker on --kafka-port (9092 unless given; without --kafka-port, --bootstrap
or KETENMONITOR_KAFKA_BOOTSTRAP names a running broker instead), one worker process, and a
simulator thread that publishes two years of cases for the four partners at a steady rate. The
terminal shows backlog, inflow and outflow per stage and p80 lead time against each norm, read
from the worker's /metrics, until Ctrl-C, SIGTERM (or --duration) stops everything, the broker it
started included (its data: KAFKA_DATA_DIR, default .cache/kafka/demo-<port>). Each run has its
own topic prefix and consumer group (unless KETENMONITOR_TOPIC_PREFIX / _APP_ID are set), so
running the demo twice does not count the same simulated cases twice.
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.table import Table

from ketenmonitor import metric_names as m
from ketenmonitor.cli_common import ConfigurationError, ServiceUnreachableError
from ketenmonitor.cli_common import console as pipe_console
from ketenmonitor.domain.chain import SECONDS_PER_DAY, Chain, load_chain
from ketenmonitor.infra.script_server import DEPLOY_DIR
from ketenmonitor.infra.worker_process import Samples, WorkerProcess
from ketenmonitor.kafka_check import require_kafka
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases


def run_demo(
    cases: int,
    rate: float,
    seed: int,
    duration: float | None = None,
    kafka_port: int | None = None,
    bootstrap: str | None = None,
) -> int:
    if kafka_port is not None and bootstrap is not None:
        raise ConfigurationError(
            "--kafka-port starts the demo's own broker, --bootstrap uses a running one: give one"
        )
    console = pipe_console() if os.isatty(1) else pipe_console(width=160)
    run = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    # This run's own topics and consumer group: a second demo on the same broker (whose data is
    # kept) starts from zero instead of counting the cases of the first again.
    env: dict[str, str] = {
        "KETENMONITOR_TOPIC_PREFIX": os.environ.get("KETENMONITOR_TOPIC_PREFIX", f"demo-{run}"),
        "KETENMONITOR_APP_ID": os.environ.get("KETENMONITOR_APP_ID", f"ketenmonitor-demo-{run}"),
    }
    if "KETENMONITOR_CASE_PLACEMENT" not in os.environ:
        # Both paths (streams/placement.py): every partner but the last keys by case and is
        # applied where it arrives; the last one's events are re-keyed through the case topic.
        env["KETENMONITOR_CASE_PLACEMENT"] = "case-key"
        env["KETENMONITOR_ONE_HOP_PARTNERS"] = ",".join(load_chain().partner_ids[:-1])
    if not {"KETENMONITOR_PSEUDONYM_KEY", "KETENMONITOR_PSEUDONYM_KEY_FILE"} & set(os.environ):
        # A throw-away key: pseudonyms of this demo cannot be linked to anything afterwards.
        env["KETENMONITOR_PSEUDONYM_KEY"] = secrets.token_hex(32)
    if kafka_port is None:  # an explicit --kafka-port overrides KETENMONITOR_KAFKA_BOOTSTRAP
        bootstrap = bootstrap or os.environ.get("KETENMONITOR_KAFKA_BOOTSTRAP")
        kafka_port = 9092
    broker = None
    worker = None
    stop = threading.Event()
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop
    try:
        if bootstrap is None:
            from ketenmonitor.infra.kafka_broker import BrokerStartError, LocalKafkaBroker

            script = kafka_script()
            console.print(f"starting Kafka on 127.0.0.1:{kafka_port} ...")
            data_dir = Path(
                os.environ.get("KAFKA_DATA_DIR")
                or script.parents[2] / ".cache" / "kafka" / f"demo-{kafka_port}"
            )
            # A JVM on a busy 2-core machine may need minutes; a user would rather wait.
            broker = LocalKafkaBroker(port=kafka_port, data_dir=data_dir, start_timeout=180)
            broker.script = script
            try:
                broker.start()
            except BrokerStartError as exc:
                lines = str(exc).splitlines()
                reason = next((ln for ln in lines if "error:" in ln), lines[0]).strip()
                if "Address already in use" in str(exc) + _tail(data_dir / "kafka.log"):
                    reason += f"; port {kafka_port} or {kafka_port + 1} is taken"
                raise ServiceUnreachableError(
                    f"the demo's Kafka on 127.0.0.1:{kafka_port} did not start ({reason}); "
                    f"its log: {data_dir / 'kafka.log'}"
                ) from None
            bootstrap = broker.bootstrap_servers
        env["KETENMONITOR_KAFKA_BOOTSTRAP"] = bootstrap
        os.environ.update(env)
        settings = Settings()
        require_kafka(settings)
        chain = load_chain(settings.chain_file)
        log_path = Path(tempfile.gettempdir()) / f"ketenmonitor-demo-{run}-worker.log"
        worker = WorkerProcess(env, metrics_port=settings.metrics_port, log_path=log_path)
        published = [0]
        worker.start()
        worker.wait_ready()
        console.print(
            f"Kafka {bootstrap}, topics {settings.topic_prefix}.*; worker metrics: "
            f"{worker.metrics_url}   (worker log: {log_path})"
        )
        publisher = threading.Thread(
            target=_publish, args=(settings, chain, cases, rate, seed, stop, published), daemon=True
        )
        publisher.start()
        started = time.monotonic()
        live = console.is_terminal
        view: Live | _NoLive = (
            Live(console=console, refresh_per_second=1, auto_refresh=False) if live else _NoLive()
        )
        with view:
            while duration is None or time.monotonic() - started < duration:
                time.sleep(2.0)
                try:
                    samples = worker.scrape()
                except OSError:
                    continue
                summary = render_summary(chain, samples, published[0])
                if isinstance(view, Live):
                    view.update(summary, refresh=True)
                else:
                    console.print(summary)
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
        try:
            if worker is not None:
                worker.stop()
        finally:
            if broker is not None:
                broker.stop()
            signal.signal(signal.SIGTERM, previous_sigterm)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def kafka_script() -> Path:
    """deploy/kafka/kafka.sh of a clone (KETENMONITOR_DEPLOY_DIR) or of this source tree."""
    override = os.environ.get("KETENMONITOR_DEPLOY_DIR")
    script = (Path(override) if override else DEPLOY_DIR) / "kafka" / "kafka.sh"
    if not script.is_file():
        raise ConfigurationError(
            f"the demo starts Kafka with deploy/kafka/kafka.sh, which is not at {script} (an "
            "installed package does not ship it): set KETENMONITOR_DEPLOY_DIR to the deploy/ "
            "folder of a clone of the repository, or pass --bootstrap HOST:PORT of a running broker"
        )
    return script


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _publish(
    settings: Settings, chain: Chain, cases: int, rate: float, seed: int,
    stop: threading.Event, published: list[int],
) -> None:
    end = time.time() - 60
    start = end - 2 * 365 * SECONDS_PER_DAY
    simulated = simulate_cases(load_scenario(), cases, start, end, seed=seed)
    interval = 1.0 / rate if rate > 0 else 0.0
    next_send = time.monotonic()
    by_case = settings.one_hop_partner_ids
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for event in contract_events(simulated, chain, seed=seed):
            if stop.is_set():
                return
            organisation = event["organisation"]
            publisher.send(
                settings.partner_topic(organisation), event, key_by_case=organisation in by_case
            )
            published[0] += 1
            if interval:
                next_send += interval
                delay = next_send - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


def _net_by(samples: Samples, added: str, withdrawn: str, label: str) -> dict[str, float]:
    """Counted minus withdrawn (corrections), summed by `label`."""
    net = _sum_by(samples, f"{added}_total", label)
    for key, value in _sum_by(samples, f"{withdrawn}_total", label).items():
        net[key] = net.get(key, 0.0) - value
    return net


def _sum_by(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (metric, labels), value in samples.items():
        if metric == name:
            out[dict(labels).get(label, "")] += value
    return out


def quantile_from_buckets(buckets: dict[float, float], q: float) -> float | None:
    """histogram_quantile's linear interpolation over cumulative bucket counts."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / max(count - lower_count, 1e-9)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def render_summary(chain: Chain, samples: Samples, published: int) -> Group:
    inflow = _net_by(samples, m.STAGE_INFLOW, m.STAGE_INFLOW_WITHDRAWN, "stage")
    outflow = _net_by(samples, m.STAGE_OUTFLOW, m.STAGE_OUTFLOW_WITHDRAWN, "stage")
    backlog = _sum_by(samples, m.BACKLOG, "stage")
    oldest = _sum_by(samples, m.BACKLOG_OLDEST_AGE, "stage")
    accepted = sum(_sum_by(samples, f"{m.EVENTS_ACCEPTED}_total", "organisation").values())
    rejected = sum(_sum_by(samples, f"{m.EVENTS_REJECTED}_total", "reason").values())

    stages = Table(title="Werkvoorraad per fase (backlog per stage)")
    columns = (
        "stage", "owner", "instroom (in)", "uitstroom (out)", "werkvoorraad", "oldest (days)"
    )
    for col in columns:
        stages.add_column(col, justify="right" if col not in ("stage", "owner") else "left")
    for stage in chain.spec.stages:
        stages.add_row(
            stage.label, chain.stage_organisation[stage.id],
            f"{inflow.get(stage.id, 0):.0f}", f"{outflow.get(stage.id, 0):.0f}",
            f"{backlog.get(stage.id, 0):.0f}", f"{oldest.get(stage.id, 0) / SECONDS_PER_DAY:.0f}",
        )

    norms = Table(title="Doorlooptijd p80 tegen de norm (lead time p80 against the norm)")
    for col in ("norm", "completed", "p80 (days)", "norm (days)", "within norm", "target"):
        norms.add_column(col, justify="left" if col == "norm" else "right")
    for norm in chain.spec.norms:
        case_types = set(norm.case_types or chain.case_types)
        buckets: dict[float, float] = defaultdict(float)
        for (metric, labels), value in samples.items():
            lab = dict(labels)
            if (
                metric == f"{m.LEAD_TIME}_bucket"
                and lab["segment"] == norm.segment
                and lab["case_type"] in case_types
            ):
                buckets[float(lab["le"])] += value
        total = buckets.get(float("inf"), 0.0)
        p80 = quantile_from_buckets(buckets, 0.8)
        within = buckets.get(float(norm.within_seconds), 0.0) / total if total else None
        norms.add_row(
            norm.label, f"{total:.0f}",
            "-" if p80 is None else f"{p80 / SECONDS_PER_DAY:.0f}", f"{norm.within_days}",
            "-" if within is None else f"{within:.0%}", f"{norm.target:.0%}",
        )
    header = Table.grid()
    header.add_row(
        f"published {published}   accepted {accepted:.0f}   rejected {rejected:.0f}"
        "   (Ctrl-C stops)"
    )
    return Group(header, stages, norms)


def _tail(path: Path, size: int = 256 * 1024) -> str:
    """The end of a log file (the JVM's bind error may be followed by many lines of shutdown,
    more than the start error quotes), or "" when there is none."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


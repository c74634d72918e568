"""Every expected mistake is one line on stderr that names the fix, with the documented status.

Each test runs the real `ketenmonitor` command in a child process (docs/cli.md lists the statuses):
a broker that is not running, a missing key file, an unknown log level, an output folder that
does not exist, Ctrl-C during a replay, a reader that closes the pipe, a store URL with a typo.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ketenmonitor.infra.worker_process import free_port
from tests.integration.cli_helpers import REPO, clean_env, cli_command, error_lines, run_cli

KEY = "cli-errors-test-key-0123456789"


def _one_line(result: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    lines = error_lines(result.stderr)
    assert result.returncode == status, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("events") / "events.jsonl"
    result = run_cli(["simulate", "--cases", "40", "--output", str(out)], {})
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory, events_file: Path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    result = run_cli(
        ["replay", "--from-file", str(events_file), "--no-progress", "--store-url", url],
        {"KETENMONITOR_PSEUDONYM_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    return url


def test_every_command_that_talks_to_kafka_fails_fast_with_the_address_when_no_broker_runs(
    events_file: Path, tmp_path: Path
) -> None:
    nothing = f"127.0.0.1:{free_port()}"
    env = {"KETENMONITOR_PSEUDONYM_KEY": KEY}
    store = f"sqlite:///{tmp_path / 's.db'}"
    commands = [
        ["worker", "--bootstrap", nothing],
        ["topics", "--bootstrap", nothing],
        ["acl", "apply", "--bootstrap", nothing],
        ["simulate", "--cases", "5", "--bootstrap", nothing],
        ["replay", "--from-topics", "--bootstrap", nothing, "--store-url", store],
        ["publish", str(events_file), "--organisation", "police", "--bootstrap", nothing],
        ["demo", "--bootstrap", nothing],
    ]
    for command in commands:
        started = time.monotonic()
        result = run_cli(command, env)
        elapsed = time.monotonic() - started
        _one_line(result, 3, "cannot reach Kafka", nothing, "--bootstrap")
        assert elapsed < 15, (command, elapsed)
    # The same through the environment instead of --bootstrap.
    result = run_cli(["topics"], {**env, "KETENMONITOR_KAFKA_BOOTSTRAP": nothing})
    _one_line(result, 3, nothing)


def test_a_missing_key_file_names_the_variable_and_the_path(events_file: Path, tmp_path):
    missing = tmp_path / "no-such-key"
    result = run_cli(
        ["replay", "--from-file", str(events_file), "--store-url", f"sqlite:///{tmp_path}/s.db"],
        {"KETENMONITOR_PSEUDONYM_KEY_FILE": str(missing)},
    )
    _one_line(result, 2, "KETENMONITOR_PSEUDONYM_KEY_FILE", str(missing))


def test_an_unknown_log_level_is_one_usage_line_with_the_choices():
    result = run_cli(["worker", "--loglevel", "verbose"], {})
    _one_line(result, 2, "verbose", "debug, info, warning, error".replace(", ", "', '"))


def test_the_demo_takes_its_own_broker_port_or_a_running_broker_not_both():
    result = run_cli(["demo", "--kafka-port", "29092", "--bootstrap", "127.0.0.1:9092"], {})
    _one_line(result, 2, "--bootstrap", "--kafka-port")


def test_a_demo_whose_controller_port_is_held_by_a_socket_names_the_taken_ports(tmp_path):
    # A bound socket that does not listen (as an outgoing connection holds its port) passes a
    # connect test; the broker's JVM then fails to bind, and the user reads which ports.
    port = free_port(consecutive=2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + 1))
        result = run_cli(
            ["demo", "--kafka-port", str(port), "--duration", "5"],
            {"KAFKA_DATA_DIR": str(tmp_path / "kafka")}, timeout=300,
        )
    _one_line(result, 3, f"127.0.0.1:{port} did not start", f"port {port} or {port + 1} is taken")


def test_simulate_into_a_missing_folder_is_refused_before_simulating(tmp_path):
    target = tmp_path / "no-such-folder" / "events.jsonl"
    result = run_cli(["simulate", "--cases", "5", "--output", str(target)], {})
    _one_line(result, 2, "no-such-folder", "does not exist")
    assert not target.parent.exists()


def test_ctrl_c_during_replay_exits_130_with_one_line(tmp_path, events_file):
    # A FIFO that stays open: the replay is certainly still reading when Ctrl-C comes.
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)
    try:
        process = subprocess.Popen(
            cli_command("replay", "--from-file", str(fifo), "--no-progress",
                        "--store-url", f"sqlite:///{tmp_path / 's.db'}"),
            env=clean_env({"KETENMONITOR_PSEUDONYM_KEY": KEY}), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        os.write(writer, events_file.read_bytes()[:5000])
        _wait_until_open(process, fifo)  # past start-up, reading the events
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(writer)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert _one_line(result, 130) == "ketenmonitor replay: interrupted"


def _wait_until_open(process: subprocess.Popen[str], path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        fds = Path(f"/proc/{process.pid}/fd")
        if any(os.path.realpath(fd) == str(path) for fd in fds.iterdir()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path} not opened by the command")


@pytest.mark.parametrize("fmt", ["table", "csv", "html"])
def test_report_into_a_closed_pipe_ends_quietly(store_url, fmt):
    process = subprocess.Popen(
        cli_command("report", "--period", "2026", "--format", fmt, "--store-url", store_url),
        env=clean_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head` that has read what it wanted
    _, err = process.communicate(timeout=120)
    assert err.decode() == ""
    assert process.returncode == 141


def test_report_and_stuck_refuse_a_mistyped_store_and_create_nothing(store_url, tmp_path):
    typo = tmp_path / "stroe.db"
    for command in (["report", "--period", "2026Q3"], ["stuck", "--stage", "court_trial"]):
        result = run_cli([*command, "--store-url", f"sqlite:///{typo}"], {})
        _one_line(result, 2, str(typo.name), "KETENMONITOR_STORE_URL")
        assert not typo.exists()
        # Through the environment, as an operator sets it.
        result = run_cli(command, {"KETENMONITOR_STORE_URL": f"sqlite:///{typo}"})
        _one_line(result, 2, "no store")
        assert not typo.exists()
    empty = tmp_path / "other.db"
    empty.write_bytes(b"")
    result = run_cli(["report", "--period", "2026Q3", "--store-url", f"sqlite:///{empty}"], {})
    _one_line(result, 2, "holds no Ketenmonitor store")
    result = run_cli(["stuck", "--stage", "court_trial", "--store-url",
                      f"postgresql://nobody@127.0.0.1:{free_port()}/nodb"], {})
    _one_line(result, 3, "cannot open the store")
    # The real store still reports.
    result = run_cli(["report", "--period", "2026", "--format", "csv", "--store-url", store_url])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") > 5


def test_errors_are_json_objects_with_log_format_json():
    import json

    result = run_cli(["--log-format", "json", "topics"],
                     {"KETENMONITOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 3
    record = json.loads(result.stderr)
    assert record["level"] == "error" and record["exit_status"] == 3
    assert record["command"] == "topics" and "cannot reach Kafka" in record["message"]

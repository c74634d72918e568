"""The README's main job: `ketenmonitor demo` shows live numbers within a minute."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ketenmonitor.infra.worker_process import free_port


def test_the_demo_shows_numbers_within_a_minute(kafka_broker, tmp_path):
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KETENMONITOR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
        "KETENMONITOR_TOPIC_PREFIX": f"demo{run}",
        "KETENMONITOR_APP_ID": f"demo-{run}",
        "KETENMONITOR_METRICS_PORT": str(free_port()),
    }
    env.pop("KETENMONITOR_PSEUDONYM_KEY", None)  # the demo makes a throw-away key itself
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "demo", "--duration", "50", "--rate", "400"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accepted = [int(n) for n in re.findall(r"accepted (\d+)", result.stdout)]
    assert accepted and max(accepted) > 0, result.stdout[-3000:]
    assert "Werkvoorraad per fase" in result.stdout
    # The summary shows stage rows with live counts, not only headers.
    assert re.search(r"Opsporing \(politie\)\s*│\s*police\s*│\s*[1-9]", result.stdout), (
        result.stdout[-3000:]
    )


# --- Issue 20: run twice, stopped by a service manager, started in the background by a script ---

STAGE_ROW = re.compile(r"^│ (\S.*?)\s*│ (\w+)\s*│\s*(\d+) │\s*(\d+) │\s*(\d+) │", re.M)


def _demo_env(kafka_broker) -> dict[str, str]:
    """The caller's environment without the demo's own choices: it picks topics, group and key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETENMONITOR_")}
    env["KETENMONITOR_METRICS_PORT"] = str(free_port())
    return env


def _summaries(stdout: str) -> list[tuple[int, int, list[tuple[str, ...]]]]:
    """published, accepted, and (stage, owner, instroom, uitstroom, werkvoorraad) per summary."""
    out = []
    for part in stdout.split("published ")[1:]:
        head = re.match(r"(\d+)\s+accepted (\d+)", part)
        if head:
            out.append((int(head.group(1)), int(head.group(2)), STAGE_ROW.findall(part)))
    return out


def _demo_until_settled(args: list[str], env: dict[str, str], out_path: Path) -> tuple:
    """Run the demo until everything it published is counted and two summaries agree; stop it
    with SIGINT (exit 0) and return the last summary."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ketenmonitor.cli", "demo", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=out_path.parent,
        )
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            time.sleep(1)
            assert proc.poll() is None, out_path.read_text()[-3000:]
            seen = _summaries(out_path.read_text())
            if len(seen) >= 2 and seen[-1] == seen[-2] and 0 < seen[-1][0] == seen[-1][1]:
                break
        else:
            raise AssertionError(f"never settled: {out_path.read_text()[-3000:]}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:  # the test failed: SIGTERM still stops the demo and its worker
            proc.terminate()
            proc.wait(120)
    return seen[-1]


@pytest.mark.fault  # two demos one after the other: ~1-2 minutes on a busy 2-core machine
def test_a_second_demo_shows_the_same_numbers_as_the_first(kafka_broker, tmp_path):
    """Same seed, same broker, no prefix or group given: the second run counts only its own
    cases (the same as the first), not the first run's again."""
    args = ["--bootstrap", kafka_broker.bootstrap_servers, "--cases", "150", "--rate", "3000"]
    first = _demo_until_settled(args, _demo_env(kafka_broker), tmp_path / "first.out")
    second = _demo_until_settled(args, _demo_env(kafka_broker), tmp_path / "second.out")
    assert first[2] and any(int(row[2]) for row in first[2]), first
    assert second == first
    prefixes = [
        re.search(r"topics (\S+)\.\*", (tmp_path / f"{run}.out").read_text()).group(1)
        for run in ("first", "second")
    ]
    assert prefixes[0] != prefixes[1]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(proc: subprocess.Popen, out_path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = out_path.read_text(errors="replace") if out_path.exists() else ""
        if text in out:
            return out
        assert proc.poll() is None, f"exited {proc.returncode} before {text!r}: {out[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} after {timeout}s: {out_path.read_text()[-3000:]}")


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.fault  # starts its own Kafka broker: ~1 minute on a busy 2-core machine
def test_sigterm_stops_the_demo_and_the_broker_it_started(tmp_path):
    """A service manager's stop: exit 0, and neither the broker nor the worker stays behind."""
    port = free_port()
    while _listening(port + 1):  # the controller takes the next port
        port = free_port()
    env = {**_demo_env(None), "KAFKA_DATA_DIR": str(tmp_path / "kafka")}
    out_path = tmp_path / "demo.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ketenmonitor.cli",
                "demo",
                "--kafka-port",
                str(port),
                "--cases",
                "100",
                "--rate",
                "200",
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Past the demo's own 180 s for its broker: its one-line error is the better failure.
        output = _wait_for(proc, out_path, "Werkvoorraad per fase", 300)
        pid_file = tmp_path / "kafka" / "kafka.pid"
        broker_pid = int(pid_file.read_text())
        assert _pid_alive(broker_pid)
        metrics_port = int(env["KETENMONITOR_METRICS_PORT"])
        assert _listening(metrics_port), output[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, out_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:  # the test failed: SIGTERM still stops the demo and its broker
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert not _pid_alive(broker_pid), f"broker pid {broker_pid} still runs after the demo"
    assert not _listening(port) and not _listening(port + 1)
    assert not _listening(metrics_port), "the demo's worker still answers"


def test_a_demo_started_in_the_background_by_a_script_stops_on_sigint(kafka_broker, tmp_path):
    """`ketenmonitor demo &` in a non-interactive shell: bash starts it with SIGINT ignored (a
    probe started the same way shows it), and `kill -INT` must still stop it cleanly."""
    env = _demo_env(kafka_broker)
    out_path = tmp_path / "demo.out"
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    script = (
        f"{sys.executable} -c '{probe}' > {tmp_path}/probe.out &\n"
        "wait $!\n"
        f"{sys.executable} -m ketenmonitor.cli demo --bootstrap {kafka_broker.bootstrap_servers}"
        f" --cases 100 --rate 200 > {out_path} 2>&1 &\n"
        f"echo $! > {tmp_path}/demo.pid\n"
        "wait $!\n"
    )
    shell = subprocess.Popen(["bash", "-c", script], env=env, cwd=tmp_path)
    try:
        _wait_for(shell, out_path, "Werkvoorraad per fase", 120)
        assert (tmp_path / "probe.out").read_text().strip() == "True", "SIGINT not ignored"
        os.kill(int((tmp_path / "demo.pid").read_text()), signal.SIGINT)
        assert shell.wait(60) == 0, out_path.read_text()[-3000:]
    finally:
        if shell.poll() is None:  # the test failed: leave no demo behind (SIGTERM stops it)
            pid_file = tmp_path / "demo.pid"
            if pid_file.exists() and _pid_alive(int(pid_file.read_text())):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            shell.wait(60)
    assert "stopping" in out_path.read_text()
    assert not _listening(int(env["KETENMONITOR_METRICS_PORT"])), "the demo's worker still runs"

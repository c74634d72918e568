"""Secrets never printed, and a refused password is told apart from a broker that is down.

Every `ketenmonitor` command (the list is read from the parser, so a new command must be added
here) runs with the Kafka password, the pseudonym key and the Grafana token in its environment:
with valid arguments and with a bad one, under settings that are wrong in the ways users get
them wrong (credentials on a PLAINTEXT broker, key and key file both set, a key that is too short)
and against a real secure broker (SASL/SCRAM) that refuses the password. Nothing it prints may
contain a secret, or the first four characters of the key.

The matrix calls main() in this process (a child process costs seconds of imports each on this
machine); the authentication tests and a few of the matrix's cases run as child processes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ketenmonitor.cli import build_parser
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import free_port
from tests.integration.cli_helpers import REPO, error_lines, leaf_commands, run_cli, run_main
from tests.integration.conftest import KAFKA_TEST_PORT, TEST_BROKER_JVM_OPTS

# Prefixes that no output contains by chance (pseudonyms and ids are hex or lower case).
KAFKA_PASSWORD = "PwQXZ" + secrets.token_urlsafe(12)
PSEUDONYM_KEY = "QZJX" + secrets.token_hex(16)
SHORT_KEY = "QZJXshort"
GRAFANA_TOKEN = "glsa_QXZW" + secrets.token_hex(12)
ADMIN_PASSWORD = "AdmQXZ" + secrets.token_urlsafe(12)
SECRETS = (KAFKA_PASSWORD, PSEUDONYM_KEY, PSEUDONYM_KEY[:4], GRAFANA_TOKEN, ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(
        port=KAFKA_TEST_PORT + 4,
        controller_port=KAFKA_TEST_PORT + 5,
        data_dir=tmp_path_factory.mktemp("kafka-secure-cli"),
        secure=True,
        users={"admin": ADMIN_PASSWORD, "ketenmonitor": secrets.token_urlsafe(18)},
        jvm_opts=TEST_BROKER_JVM_OPTS,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _sasl_env(broker: LocalKafkaBroker, password: str) -> dict[str, str]:
    return {
        "KETENMONITOR_KAFKA_BOOTSTRAP": broker.bootstrap_servers,
        "KETENMONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KETENMONITOR_KAFKA_USERNAME": "admin",
        "KETENMONITOR_KAFKA_PASSWORD": password,
        "KETENMONITOR_TOPIC_PREFIX": f"sec{secrets.token_hex(3)}",
    }


def test_a_wrong_password_is_an_authentication_failure_not_an_unreachable_broker(secure_broker):
    started = time.monotonic()
    refused = run_cli(["topics"], {**_sasl_env(secure_broker, KAFKA_PASSWORD)})
    assert time.monotonic() - started < 15
    assert refused.returncode == 4, refused.stderr
    (line,) = error_lines(refused.stderr)
    assert "refused the login" in line and "KETENMONITOR_KAFKA_PASSWORD" in line
    assert secure_broker.bootstrap_servers in line
    # The same broker with the right password: reachable, so the 4 above was the password.
    accepted = run_cli(["topics"], _sasl_env(secure_broker, ADMIN_PASSWORD))
    assert accepted.returncode == 0, accepted.stderr
    applied = run_cli(["acl", "apply"], _sasl_env(secure_broker, ADMIN_PASSWORD))
    assert applied.returncode == 0, applied.stderr
    for result in (refused, accepted, applied):
        _assert_no_secret(result.stdout + result.stderr, "child process")
    # And nothing listening is 3, not 4.
    down = {**_sasl_env(secure_broker, KAFKA_PASSWORD),
            "KETENMONITOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    assert run_cli(["topics"], down).returncode == 3


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("secrets")
    events = tmp / "events.jsonl"
    result = run_cli(["simulate", "--cases", "20", "--output", str(events)])
    assert result.returncode == 0, result.stderr
    store = f"sqlite:///{tmp / 'store.db'}"
    result = run_cli(["replay", "--from-file", str(events), "--store-url", store],
                     {"KETENMONITOR_PSEUDONYM_KEY": "secrets-test-store-key-0123456789"})
    assert result.returncode == 0, result.stderr
    key_file = tmp / "key"
    key_file.write_text(PSEUDONYM_KEY)
    return {"tmp": str(tmp), "events": str(events), "store": store, "key_file": str(key_file)}


def _valid_args(command: tuple[str, ...], f: dict[str, str], bootstrap: str) -> list[str]:
    tmp = Path(f["tmp"])
    store = ["--store-url", f["store"]]
    table: dict[tuple[str, ...], list[str]] = {
        ("worker",): [],
        ("topics",): [],
        ("demo",): ["--bootstrap", bootstrap, "--duration", "1"],
        ("simulate",): ["--cases", "3", "--output", str(tmp / "sim.jsonl")],
        ("publish",): [f["events"], "--organisation", "police"],
        ("import-log",): [str(REPO / "examples/eventlog/sample_log.csv"),
                          "--mapping", str(REPO / "examples/eventlog/mapping.yaml")],
        ("store", "upgrade"): store,
        ("report",): ["--period", "2026", *store],
        ("stuck",): ["--stage", "court_trial", *store],
        ("replay",): ["--from-file", f["events"], "--no-progress",
                      "--store-url", f"sqlite:///{tmp / 'replayed.db'}"],
        ("rules", "generate"): [],
        ("rules", "alertmanager"): [],
        ("dashboards", "publish"): ["--url", f"http://127.0.0.1:{free_port()}"],
        ("dashboards", "build"): ["--output", str(tmp / "dashboards")],
        ("acl", "show"): [],
        ("acl", "apply"): ["--timeout", "5"],
        ("acl", "strimzi"): ["--cluster", "ketenmonitor"],
        ("chart", "sync"): ["--check"],
    }
    return [*command, *table[command]]


def _environments(broker: LocalKafkaBroker, f: dict[str, str]) -> dict[str, dict[str, str]]:
    common = {"KETENMONITOR_GRAFANA_TOKEN": GRAFANA_TOKEN}
    closed = f"127.0.0.1:{free_port()}"
    return {
        "credentials on a PLAINTEXT broker": {
            **common, "KETENMONITOR_KAFKA_USERNAME": "u",
            "KETENMONITOR_KAFKA_PASSWORD": KAFKA_PASSWORD,
            "KETENMONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY, "KETENMONITOR_KAFKA_BOOTSTRAP": closed,
        },
        "key and key file both set": {
            **common, "KETENMONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "KETENMONITOR_PSEUDONYM_KEY_FILE": f["key_file"],
            "KETENMONITOR_KAFKA_BOOTSTRAP": closed,
        },
        "a key that is too short": {
            **common, "KETENMONITOR_PSEUDONYM_KEY": SHORT_KEY,
            "KETENMONITOR_KAFKA_BOOTSTRAP": closed,
        },
        "a bad number beside the secrets": {
            **common, "KETENMONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "KETENMONITOR_KAFKA_PASSWORD": KAFKA_PASSWORD, "KETENMONITOR_PARTITIONS": "many",
        },
        "a secure broker that refuses the password": {
            **common, **_sasl_env(broker, KAFKA_PASSWORD),
            "KETENMONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        },
    }


def test_no_command_prints_a_secret_with_good_or_bad_input(secure_broker, files, capfd):
    commands = [c for c, _ in leaf_commands(build_parser())]
    environments = _environments(secure_broker, files)
    statuses: dict[str, set[int]] = {}
    for name, env in environments.items():
        bootstrap = env.get("KETENMONITOR_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
        for command in commands:
            valid = _valid_args(command, files, bootstrap)
            for argv in (valid, [*valid, "--no-such-option"], [*command, "--help"]):
                status, out, err = run_main(argv, env, capfd)
                _assert_no_secret(out + err, f"{name}: ketenmonitor {' '.join(argv)}")
                assert "Traceback" not in err, (name, argv, err)
                statuses.setdefault(name, set()).add(status)
    # The settings errors were reached (not only usage errors), and the broker refused.
    assert 2 in statuses["credentials on a PLAINTEXT broker"]
    assert 4 in statuses["a secure broker that refuses the password"]
    # A few of the same as child processes: what reaches the terminal, exit included.
    for name in ("credentials on a PLAINTEXT broker", "key and key file both set"):
        result = run_cli(["topics"], environments[name])
        assert result.returncode == 2 and len(error_lines(result.stderr)) == 1, result.stderr
        assert "invalid settings" in result.stderr
        _assert_no_secret(result.stdout + result.stderr, name)


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where}: a secret ({secret[:2]}...) in the output"

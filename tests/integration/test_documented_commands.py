"""Every command in README.md and docs/*.md runs as written (issue 20).

The convention (also in docs/cli.md, "Commands in these documents", where authors look):

- every fenced block in README.md and docs/*.md has a language tag;
- a ```sh block holds commands: one a line (a trailing backslash continues it, `# ...` is a
  comment), each runnable as written from the repository root, with `.venv/bin` on PATH;
- ```text holds output and diagrams; json, yaml, python, promql blocks are file contents.

Each command is listed in COMMANDS below with how it runs: `Run` (to the end: exit 0 and a line
of expected output), `LongRunning` (started, checked for its first useful output, stopped with
SIGINT as Ctrl-C does, expecting a clean exit) or `NotRun` (the few that cannot run inside the
suite, each with its reason and a check of what can be checked). A command found in the docs and
not listed fails the test, and so does a listed command no longer in the docs. Commands in an
indented code block (unfenced, so not found) fail it too: every line that starts such a block and
reads like a command (SHELL_LINE) must move into a ```sh block.

The commands of one document run in document order (a later one may read what an earlier one
wrote), in a directory that stands for the repository root: every top-level entry of the checkout
linked in, so that `deploy/...`, `examples/...` and `make` work as written while the files a command
writes (events.jsonl) stay out of the checkout. `.cache` (git-ignored, where docs/store.md puts a
store) is a directory of its own with the checkout's entries linked. Commands that regenerate
checked-in files (`rules generate`, `chart sync`, `dashboards.build`) write through the links: the
checkout must be unchanged after.

The environment is what the docs tell a user to set: KETENMONITOR_KAFKA_BOOTSTRAP (the suite's
broker), KETENMONITOR_PSEUDONYM_KEY, KETENMONITOR_STORE_URL, the port and data variables of
docs/alerting.md and KAFKA_DATA_DIR of the demo's broker (docs/cli.md). Two literal addresses are
replaced, because the machine is shared and those ports may be taken: 127.0.0.1:9092 by the
suite's broker and 29092 by a free port (PORTS).
The files a document names as the user's own (export.jsonl, export.csv, log.csv, mapping.yaml)
are made by the test (USER_FILES). docs/store.md's "as known then" needs partner topics that hold
messages published before 2026-06-30 (their retention): the test publishes such a history, with
those Kafka timestamps, on topics that keep it (HISTORY).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from ketenmonitor.infra.worker_process import free_port

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
COMMAND_TAG = "sh"
NON_COMMAND_TAGS = {"text", "json", "yaml", "python", "promql"}
# Fences may be indented (a block inside a list item).
FENCE = re.compile(r"^ *```(.*?)\n(.*?)^ *```", re.S | re.M)
FENCE_LINE = re.compile(r"^ *```")
# The start of a line that a reader would type at a shell prompt.
SHELL_LINE = re.compile(
    r"^(\$ |\.venv/|\./|deploy/|(ketenmonitor|make|bash|sh|promtool|amtool|helm|kubectl|curl|"
    r"docker|docker-compose|python3?|pip|apt-get|export|printf|git)( |$)|[A-Z][A-Z0-9_]*=\S*\s)"
)


@dataclass(frozen=True)
class Run:
    """Runs to the end: exit 0, and `expect` (a regex) in its output."""

    expect: str


@dataclass(frozen=True)
class LongRunning:
    """Runs until stopped: `expect` (a regex) in its output, or `topics` (messages on the partner
    topics), then SIGINT (to the process group with `group`, as Ctrl-C at a terminal does).
    `status` is its documented exit status when interrupted."""

    expect: str = ""
    topics: bool = False
    status: int = 0
    group: bool = False
    after: str = ""  # a regex the output shows once it stopped


@dataclass(frozen=True)
class NotRun:
    """Cannot run inside the suite as written: why, and what is checked instead."""

    reason: str
    check: Callable[[], None]


def _ci_runs_exactly_make_test() -> None:
    lines = [ln for ln in (REPO / ".ci/run").read_text().splitlines() if not ln.startswith("#")]
    assert lines[-1] == "exec make test", lines
    recipe = (REPO / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert recipe.splitlines()[1:] == ["\tbash tests/run_side_by_side.sh"], recipe
    # ... which runs the whole suite, no recursion: the fault scenarios and everything else
    script = (REPO / "tests/run_side_by_side.sh").read_text()
    runs = re.findall(r"\.venv/bin/pytest -m (\"[^\"]+\") \"\$@\"", script)
    assert sorted(runs) == ['"fault or fault_lane"', '"not fault and not fault_lane"'], runs


def _setup_installs(*packages: str) -> Callable[[], None]:
    def check() -> None:
        text = (REPO / "deploy/setup.sh").read_text()
        listed = re.search(r"^packages=\((.*)\)$", text, re.M)
        assert listed, "deploy/setup.sh has no packages=(...) list"
        assert set(packages) <= set(listed.group(1).split()), listed.group(1)

    return check


def _chart_has_values(*keys: str) -> Callable[[], None]:
    def check() -> None:
        values = yaml.safe_load((REPO / "deploy/helm/ketenmonitor/values.yaml").read_text())
        for key in keys:
            node = values
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"values.yaml has no {key}"
                node = node[part]

    return check


def _suite_has(*files: str) -> Callable[[], None]:
    def check() -> None:
        for name in files:
            assert (REPO / name).is_file(), name

    return check


def _contains(file: str, *texts: str) -> Callable[[], None]:
    def check() -> None:
        content = (REPO / file).read_text()
        for text in texts:
            assert text in content, f"{file} has no {text!r}"

    return check


def _all(*checks: Callable[[], None]) -> Callable[[], None]:
    def check() -> None:
        for each in checks:
            each()

    return check


def _alert_rules_test_runs_promtool() -> None:
    text = (REPO / "tests/unit/test_alert_rules.py").read_text()
    assert '"deploy/prometheus/tests").glob("*.test.yml")' in text
    assert 'run("promtool", "test", "rules", one)' in text  # each test group of each file


# HISTORY: cases of the spring of 2026 as their partners published them, before the moment of
# docs/store.md's "as known then" replay.
KNOWN_AT = datetime.fromisoformat("2026-06-30T23:59:59+02:00").timestamp()
HISTORY_CASES = 60

DEMO = LongRunning(expect=r"Werkvoorraad per fase", after=r"stopping \.\.\.")
INTERRUPTED = LongRunning(status=130, after=r"^ketenmonitor simulate: interrupted$")

COMMANDS: dict[str, dict[str, Run | LongRunning | NotRun]] = {
    "README.md": {
        # Ctrl-C reaches make and the demo alike: the demo stops cleanly ("stopping ..."), then
        # make, which was interrupted too, ends by the signal (GNU make re-raises SIGINT).
        "make demo": LongRunning(
            expect=r"Werkvoorraad per fase",
            group=True,
            status=-signal.SIGINT,
            after=r"stopping \.\.\.",
        ),
        "make test": NotRun(
            "what CI runs (.ci/run) and what this test is part of: running it here would recurse",
            _ci_runs_exactly_make_test,
        ),
        "ketenmonitor publish export.jsonl --organisation police": Run(r"sent"),
        "ketenmonitor import-log log.csv --mapping examples/eventlog/mapping.yaml": Run(
            r"published|sent"
        ),
        "ketenmonitor simulate --cases 1000 --output events.jsonl": Run(
            r"of 1000 cases.* to events\.jsonl"
        ),
        "ketenmonitor replay --from-file events.jsonl": Run(r'"cases_written": 1000'),
        "ketenmonitor replay --from-topics": Run(r'"cases_written": [1-9]'),
        "ketenmonitor report --period 2026Q3": Run(r"Ketenmonitor 2026Q3"),
        "ketenmonitor report --from 2025-11 --to 2026Q1": Run(r"Ketenmonitor 2025-11\.\.2026Q1"),
        "ketenmonitor stuck --stage court_trial --top 20": Run(r"Oldest open cases in court_trial"),
        "ketenmonitor stuck --organisation om --dormant": Run(
            r"Oldest dormant cases in the stages of om"
        ),
        "helm install km deploy/helm/ketenmonitor --set "
        "kafka.bootstrap=kafka-kafka-bootstrap.kafka.svc:9093 --set "
        "pseudonymKey.existingSecret=ketenmonitor-pseudonym-key --set strimzi.enabled=true "
        "--set kafka.tls.caSecret=kafka-cluster-ca-cert": NotRun(
            "needs a Kubernetes cluster with Strimzi; tests/integration/test_helm_chart.py renders"
            " and validates the chart",
            _chart_has_values(
                "kafka.bootstrap",
                "pseudonymKey.existingSecret",
                "strimzi.enabled",
                "kafka.tls.caSecret",
            ),
        ),
        "ketenmonitor chart sync": Run(r""),
    },
    "docs/alerting.md": {
        "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager": NotRun(
            "changes the machine's packages (root, network, dpkg lock shared with other runs);"
            " deploy/setup.sh installs them",
            _setup_installs("prometheus", "prometheus-alertmanager"),
        ),
        "deploy/alertmanager/alertmanager.sh start": Run(r"ready on http://127\.0\.0\.1:"),
        "deploy/prometheus/prometheus.sh start": Run(r"ready on http://127\.0\.0\.1:"),
        "deploy/prometheus/prometheus.sh status; deploy/prometheus/prometheus.sh stop": Run(
            r"running on http(.|\n)*stopped"
        ),
        "deploy/alertmanager/alertmanager.sh stop": Run(r"stopped"),
        "ketenmonitor rules generate --output deploy/prometheus/rules/ketenmonitor.rules.yml": Run(
            r""
        ),
        "ketenmonitor rules alertmanager --output deploy/alertmanager/alertmanager.yml": Run(r""),
        "ketenmonitor rules alertmanager --webhook-url "
        "'https://relay.example/alerts/{receiver}' --output alertmanager.yml": Run(r""),
        "ketenmonitor rules generate --time-scale 0.0000463 --min-window 3s": Run(r"groups:"),
        ".venv/bin/pytest tests/unit/test_alert_rules.py": NotRun(
            "a part of the suite this test belongs to (make test runs it)",
            _suite_has("tests/unit/test_alert_rules.py"),
        ),
        ".venv/bin/pytest tests/integration/test_prometheus_alertmanager_runners.py": NotRun(
            "a part of the suite this test belongs to (make test runs it)",
            _suite_has("tests/integration/test_prometheus_alertmanager_runners.py"),
        ),
        "promtool test rules deploy/prometheus/tests/*.test.yml": NotRun(
            "minutes of CPU; tests/unit/test_alert_rules.py runs exactly this per file",
            _alert_rules_test_runs_promtool,
        ),
    },
    "docs/cli.md": {
        "ketenmonitor --version": Run(r"^ketenmonitor \d+\.\d+"),
        "ketenmonitor --help": Run(r"130"),
        "ketenmonitor report --help": Run(r"--suppress-below"),
        "ketenmonitor demo": DEMO,
        "ketenmonitor demo --kafka-port 29092 --duration 120": DEMO,
        "ketenmonitor demo --bootstrap 127.0.0.1:9092": DEMO,
    },
    "docs/dashboards.md": {
        ".venv/bin/python -m ketenmonitor.dashboards.build": Run(
            r"^wrote \S*dashboards/json/ketenoverzicht\.json$"
        ),
        ".venv/bin/python -m ketenmonitor.dashboards.build --check": Run(
            r"^dashboards up to date$"
        ),
        "export KETENMONITOR_GRAFANA_URL=https://grafana.example.org": NotRun(
            "the reader's Grafana (grafana.example.org stands for it), for the publish commands"
            " below: no Grafana server can run here",
            _contains("dashboards/publish.py", "KETENMONITOR_GRAFANA_URL"),
        ),
        "export KETENMONITOR_GRAFANA_TOKEN=glsa_...": NotRun(
            "the reader's service-account token (glsa_... stands for it): no Grafana here",
            _contains("dashboards/publish.py", "KETENMONITOR_GRAFANA_TOKEN"),
        ),
        "ketenmonitor dashboards publish": NotRun(
            "needs a Grafana server, none can run here: tests/unit/test_dashboard_publish.py runs"
            " this command against an HTTP server playing Grafana's endpoints",
            _contains("tests/unit/test_dashboard_publish.py", 'main(["dashboards", "publish"])'),
        ),
        "ketenmonitor dashboards publish --json-dir dashboards/json": NotRun(
            "needs a Grafana server, none can run here; the files it uploads are those the"
            " build above checks",
            _contains("dashboards/publish.py", '"--json-dir"'),
        ),
        ".venv/bin/pytest tests/unit/test_dashboards.py tests/unit/test_dashboard_publish.py "
        "tests/unit/test_compose.py": NotRun(
            "a part of the suite this test belongs to (make test runs it)",
            _suite_has(
                "tests/unit/test_dashboards.py",
                "tests/unit/test_dashboard_publish.py",
                "tests/unit/test_compose.py",
            ),
        ),
        "KETENMONITOR_TEST_KAFKA_PORT=19092 .venv/bin/pytest "
        "tests/integration/test_dashboard_queries.py tests/integration/test_history_queries.py": (
            NotRun(
                "a part of the suite this test belongs to (make test runs it)",
                _suite_has(
                    "tests/integration/test_dashboard_queries.py",
                    "tests/integration/test_history_queries.py",
                ),
            )
        ),
    },
    "docs/partners.md": {
        "ketenmonitor publish export.jsonl --organisation police": Run(r"sent"),
        "ketenmonitor publish export.csv --organisation om": Run(r"sent"),
        "ketenmonitor publish export.csv --organisation om --dry-run": Run(r""),
        "ketenmonitor publish export.jsonl --organisation police --key-by case-key": Run(r"sent"),
        "ketenmonitor import-log examples/eventlog/sample_log.csv --mapping "
        "examples/eventlog/mapping.yaml": Run(r""),
        "ketenmonitor import-log log.csv --mapping mapping.yaml --output events.jsonl": Run(r""),
        "ketenmonitor import-log log.csv --mapping mapping.yaml --dry-run": Run(r""),
        "ketenmonitor simulate --cases 1000 --output events.jsonl": Run(r"of 1000 cases"),
        # A year of national volume and ~10M cases take far longer than the suite may: started,
        # checked for their first lines, interrupted (documented status 130).
        "ketenmonitor simulate --national --days 365 --output year.jsonl": INTERRUPTED,
        "ketenmonitor simulate --national --scale 50 --output load.jsonl": INTERRUPTED,
        # Paced runs to Kafka: two years at a day per second, one day in real time.
        "ketenmonitor simulate --cases 5000 --speed 86400": LongRunning(
            topics=True, status=130, after=INTERRUPTED.after
        ),
        "ketenmonitor simulate --live --days 1 --cases 10000 --no-delays": LongRunning(
            topics=True, status=130, after=INTERRUPTED.after
        ),
        "ketenmonitor simulate --cases 500 --duplicates 0.02 --out-of-order 0.02 --late 0.01 "
        "--malformed 0.005 --corrections 0.01 --silence courts:100:14 --output faulty.jsonl": Run(
            r"malformed \{"
        ),
    },
    "docs/security.md": {
        "ketenmonitor acl show": Run(r"^User:police +WRITE +topic +ketenmonitor\.events\.police$"),
        "ketenmonitor acl apply": NotRun(
            "needs a broker with an authorizer and the admin's login: the suite's broker runs"
            " without either; tests/integration/test_security.py runs it as admin on a broker in"
            " secure mode and checks every grant",
            _contains("tests/integration/test_security.py", '(["topics"], ["acl", "apply"])'),
        ),
        "ketenmonitor acl apply --prune": NotRun(
            "needs a broker with an authorizer and the admin's login, as above; what --prune may"
            " delete is tested in tests/unit/test_access_plan.py",
            _contains("tests/unit/test_access_plan.py", "def test_prune_scope_"),
        ),
        "printf '%s\\n' admin=... ketenmonitor=... operator=... police=... om=... courts=... "
        "cjib=... > /etc/ketenmonitor/kafka-users && chmod 600 /etc/ketenmonitor/kafka-users": (
            NotRun(
                "the reader's passwords (each ... stands for one) into /etc, outside the checkout;"
                " tests/integration/test_security.py generates its own",
                _contains(
                    "deploy/kafka/kafka.sh", "KAFKA_SCRAM_CREDENTIALS_FILE lines `name=password`"
                ),
            )
        ),
        "KAFKA_SECURITY=scram KAFKA_SCRAM_CREDENTIALS_FILE=/etc/ketenmonitor/kafka-users "
        "bash deploy/kafka/kafka.sh start": NotRun(
            "a second broker, in secure mode on the default ports 9092/9093 (a shared machine's),"
            " from the file above; tests/integration/test_security.py starts one through"
            " deploy/kafka/kafka.sh with KAFKA_SECURITY=scram (a minute)",
            _all(
                _contains("deploy/kafka/kafka.sh", "SECURITY=${KAFKA_SECURITY:-none}"),
                _contains("ketenmonitor/infra/kafka_broker.py", 'env["KAFKA_SECURITY"] = "scram"'),
            ),
        ),
        "KETENMONITOR_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT KETENMONITOR_KAFKA_USERNAME=admin "
        "KETENMONITOR_KAFKA_PASSWORD_FILE=/etc/ketenmonitor/admin-password "
        "sh -c 'ketenmonitor topics && ketenmonitor acl apply'": NotRun(
            "needs the secure broker above and the admin's password file; test_security.py runs"
            " `topics` and `acl apply` as admin",
            _all(
                _contains("tests/integration/test_security.py", '(["topics"], ["acl", "apply"])'),
                _contains("ketenmonitor/settings.py", "kafka_password_file: Path | None"),
            ),
        ),
        "KETENMONITOR_TEST_KAFKA_PORT=19092 .venv/bin/pytest tests/integration/test_security.py "
        "tests/integration/test_privacy_scan.py": NotRun(
            "a part of the suite this test belongs to (make test runs it)",
            _suite_has(
                "tests/integration/test_security.py", "tests/integration/test_privacy_scan.py"
            ),
        ),
        ".venv/bin/pytest tests/unit/test_access_plan.py tests/unit/test_rejection_details.py "
        "tests/unit/test_compose.py": NotRun(
            "a part of the suite this test belongs to (make test runs it)",
            _suite_has(
                "tests/unit/test_access_plan.py",
                "tests/unit/test_rejection_details.py",
                "tests/unit/test_compose.py",
            ),
        ),
    },
    "docs/store.md": {
        "ketenmonitor simulate --cases 1000 --output events.jsonl": Run(
            r"of 1000 cases.* to events\.jsonl"
        ),
        "ketenmonitor replay --from-file events.jsonl": Run(r'"cases_written": 1000'),
        # The simulated year ends now (late November 2026): every period below has completions.
        "ketenmonitor report --period 2026-10": Run(
            r"Ketenmonitor 2026-10 \(2026-10-01 to 2026-11-01, Europe/Amsterdam\)"
            r"(.|\n)*police_report_to_file +│ standard +│ +[1-9]"
        ),
        "ketenmonitor report --period 2026-10-05": Run(
            r"Ketenmonitor 2026-10-05 \(2026-10-05 to 2026-10-06, Europe/Amsterdam\)"
        ),
        "ketenmonitor report --from 2025-11 --to 2026Q1": Run(
            r"Ketenmonitor 2025-11\.\.2026Q1 \(2025-11-01 to 2026-04-01, Europe/Amsterdam\)"
        ),
        "ketenmonitor report --period 2026Q3 --format csv --output q3.csv": Run(
            r"^wrote the csv report of 2026Q3 to q3\.csv$"
        ),
        "ketenmonitor report --period 2026Q3 --format html --output q3.html --suppress-below 10": (
            Run(r"^wrote the html report of 2026Q3 to q3\.html$")
        ),
        # HISTORY: the partner topics hold messages published before the moment.
        "KETENMONITOR_STORE_URL=sqlite:///$PWD/.cache/store-2026-06-30.db ketenmonitor replay "
        "--from-topics --known-at 2026-06-30T23:59:59+02:00": Run(
            rf'"cases": {HISTORY_CASES}, "cases_written": {HISTORY_CASES}\}}'
        ),
        "KETENMONITOR_STORE_URL=sqlite:///$PWD/.cache/store-2026-06-30.db ketenmonitor report "
        "--period 2026Q2": Run(r"Ketenmonitor 2026Q2(.|\n)*│ standard +│ +[1-9]"),
        "ketenmonitor stuck --stage court_trial --top 20": Run(
            r"Oldest open cases in court_trial(.|\n)*│ court_trial"
        ),
        "ketenmonitor stuck --stage court_trial --at 2026-06-30T00:00:00+02:00 --format csv": Run(
            r"^pseudonym,stage,entered_at,age_days,(.|\n)*^[0-9a-f]{32},court_trial,"
        ),
        "ketenmonitor stuck --organisation om --dormant": Run(
            r"Oldest dormant cases in the stages of om"
        ),
    },
}
# The output files of the interrupted simulations: their first line must have appeared.
FIRST_LINES = {"year.jsonl", "load.jsonl"}


def documented_commands(doc: str) -> list[str]:
    """The commands of the ```sh blocks of `doc`, continuation lines joined, comments removed."""
    commands = []
    for match in FENCE.finditer((REPO / doc).read_text()):
        if match.group(1).strip() != COMMAND_TAG:
            continue
        line = ""
        for raw in match.group(2).splitlines():
            text = raw.strip()
            if text.endswith("\\"):
                line += text[:-1].strip() + " "
                continue
            line += text
            command = re.sub(r"\s+#.*$", "", line).strip()
            line = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def indented_commands(doc: str) -> list[str]:
    """The lines that start an indented (unfenced) code block of `doc`, or continue one, and read
    like a command: the test would not see them."""
    found = []
    fenced = False
    in_block = False
    previous_blank = True
    for line in (REPO / doc).read_text().splitlines():
        if FENCE_LINE.match(line):
            fenced = not fenced
        elif not fenced:
            indented = line.startswith(("    ", "\t")) and bool(line.strip())
            in_block = (indented and (in_block or previous_blank)) or (
                in_block and not line.strip()
            )
            if in_block and indented and SHELL_LINE.match(line.strip()):
                found.append(line.strip())
        previous_blank = not line.strip()
    return found


def test_every_documented_command_is_covered():
    problems = []
    for doc in DOCS:
        problems += [
            f"{doc}: a command in an indented code block (use a ```sh block): {line}"
            for line in indented_commands(doc)
        ]
        for match in FENCE.finditer((REPO / doc).read_text()):
            tag = match.group(1).strip()
            if tag != COMMAND_TAG and tag not in NON_COMMAND_TAGS:
                problems.append(f"{doc}: a ``` block tagged {tag!r}: use sh (commands) or text")
        found = documented_commands(doc)
        listed = COMMANDS.get(doc, {})
        problems += [f"{doc}: not covered by this test: {c}" for c in found if c not in listed]
        problems += [
            f"{doc}: listed here, no longer in the doc: {c}" for c in listed if c not in found
        ]
    for doc, listed in COMMANDS.items():
        assert doc in DOCS, doc
        for handling in listed.values():
            if isinstance(handling, NotRun):
                handling.check()
    assert not problems, "\n".join(problems)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Stands for the repository root: its top-level entries linked, USER_FILES added."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name == ".cache":  # a store written there stays out of the checkout
            (root / ".cache").mkdir()
            for cached in entry.iterdir():
                (root / ".cache" / cached.name).symlink_to(cached)
        elif entry.name != ".git":
            (root / entry.name).symlink_to(entry)
    _user_files(root)
    return root


def _user_files(root: Path) -> None:
    """USER_FILES: a partner's exports and event log, as the docs assume the reader has them."""
    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

    end = time.time() - 3600
    cases = simulate_cases(load_scenario(), 20, end - 200 * 86_400, end, seed=20)
    events = list(contract_events(cases, load_chain(), seed=20))
    police = [e for e in events if e["organisation"] == "police"]
    om = [e for e in events if e["organisation"] == "om"]
    (root / "export.jsonl").write_text("".join(json.dumps(e) + "\n" for e in police))
    columns = sorted({key for e in om for key in e})
    with open(root / "export.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(om)
    shutil.copy(REPO / "examples/eventlog/sample_log.csv", root / "log.csv")
    shutil.copy(REPO / "examples/eventlog/mapping.yaml", root / "mapping.yaml")


def _partner_history(bootstrap: str) -> None:
    """HISTORY: HISTORY_CASES cases of April to June 2026 on the partner topics of the default
    prefix, each message with a Kafka timestamp (publication time) an hour after its event and
    before KNOWN_AT, on topics whose retention keeps them (24 h on the suite's broker otherwise:
    its next check would delete these)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType

    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.kafka_io import ensure_topics
    from ketenmonitor.settings import Settings
    from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

    chain = load_chain()
    settings = Settings(kafka_bootstrap=bootstrap)
    topics = [settings.partner_topic(p) for p in chain.partner_ids]
    end = KNOWN_AT - 2 * 86_400
    cases = simulate_cases(load_scenario(), HISTORY_CASES, end - 90 * 86_400, end, seed=630)
    events = list(contract_events(cases, chain, seed=630))
    assert len({e["case_key"] for e in events}) == HISTORY_CASES
    ensure_topics(bootstrap, topics, settings.partitions, security={}, settings=settings)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "-1"})
                for t in topics
            ]
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for event in events:
            published = datetime.fromisoformat(event["occurred_at"]).timestamp() + 3600
            assert published < KNOWN_AT
            producer.send(
                settings.partner_topic(event["organisation"]),
                value=json.dumps(event).encode(),
                key=event["event_id"].encode(),
                timestamp_ms=int(published * 1000),
            )
        producer.flush(60)
    finally:
        producer.close()


# Made before the commands of a document run: what it assumes the reader has, on the broker.
SETUP: dict[str, Callable[[str], None]] = {"docs/store.md": _partner_history}


def _env(broker_bootstrap: str, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETENMONITOR_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        KETENMONITOR_KAFKA_BOOTSTRAP=broker_bootstrap,
        KETENMONITOR_PSEUDONYM_KEY="documented-commands-key-0123456789",
        KETENMONITOR_STORE_URL=f"sqlite:///{root}/store.db",
        KETENMONITOR_METRICS_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        PROMETHEUS_DATA_DIR=str(root.parent / "prometheus"),
        ALERTMANAGER_PORT=str(free_port()),
        ALERTMANAGER_DATA_DIR=str(root.parent / "alertmanager"),
        KAFKA_DATA_DIR=str(root.parent / "kafka"),  # the demo's own broker (docs/cli.md)
    )
    return env


def _ports(command: str, bootstrap: str) -> str:
    """PORTS: the two literal addresses that a shared machine cannot give to the test."""
    command = command.replace("127.0.0.1:9092", bootstrap)
    if "29092" in command:
        port = free_port(consecutive=2)  # the demo's controller takes the next port
        command = command.replace("29092", str(port))
    return command


def _tracked_changes() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _partner_messages(env: dict[str, str]) -> int:
    """Messages on the partner topics of the default prefix (the docs set none)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=env["KETENMONITOR_KAFKA_BOOTSTRAP"])
    try:
        topics = [t for t in consumer.topics() if t.startswith("ketenmonitor.events.")]
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        return sum(consumer.end_offsets(parts).values()) if parts else 0
    finally:
        consumer.close()


def _run(command: str, handling: Run, env: dict[str, str], root: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{output[-3000:]}"
    assert re.search(handling.expect, output, re.M), f"{command}: no {handling.expect!r}\n{output}"
    assert "Traceback" not in output, output[-3000:]


def _long_running(command: str, handling: LongRunning, env: dict[str, str], root: Path) -> None:
    out_path = root.parent / "long-running.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    output_file = next((f for f in FIRST_LINES if f in command.split()), None)
    messages_before = _partner_messages(env) if handling.topics else 0
    try:
        deadline = time.monotonic() + 240
        while True:
            output = out_path.read_text(errors="replace")
            assert proc.poll() is None, f"{command}: exited {proc.returncode}\n{output[-3000:]}"
            if output_file:
                path = root / output_file
                ready = path.exists() and "\n" in path.read_text()[:100_000]
            elif handling.topics:
                ready = _partner_messages(env) > messages_before
            else:
                ready = bool(re.search(handling.expect, output, re.M))
            if ready:
                break
            assert time.monotonic() < deadline, f"{command}: not ready in time\n{output[-3000:]}"
            time.sleep(1)
        if handling.group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        status = proc.wait(90)
    finally:
        if proc.poll() is None:  # failed: SIGTERM lets a demo stop its worker and broker
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = out_path.read_text(errors="replace")
    assert status == handling.status, f"{command}: exit {status}\n{output[-3000:]}"
    assert re.search(handling.after, output, re.M), f"{command}: {handling.after!r}\n{output}"
    assert "Traceback" not in output, output[-3000:]


# The longest documents run in the fault scenarios' process (tests/run_side_by_side.sh).
IN_FAULT_LANE = {"docs/cli.md", "docs/store.md"}


@pytest.mark.parametrize(
    "doc",
    [pytest.param(d, marks=pytest.mark.fault_lane) if d in IN_FAULT_LANE else d
     for d in sorted(COMMANDS)],
)
def test_documented_commands_run_as_written(doc, kafka_broker, workdir):
    env = _env(kafka_broker.bootstrap_servers, workdir)
    before = _tracked_changes()
    if doc in SETUP:
        SETUP[doc](kafka_broker.bootstrap_servers)
    try:
        for command in documented_commands(doc):
            handling = COMMANDS[doc][command]  # coverage: test_every_documented_command_is_covered
            runnable = _ports(command, kafka_broker.bootstrap_servers)
            started = time.monotonic()
            if isinstance(handling, Run):
                _run(runnable, handling, env, workdir)
            elif isinstance(handling, LongRunning):
                _long_running(runnable, handling, env, workdir)
            print(f"{time.monotonic() - started:6.1f} s  {command}")  # shown with -rP
    finally:
        for script in ("prometheus/prometheus.sh", "alertmanager/alertmanager.sh"):
            subprocess.run(
                ["bash", str(REPO / "deploy" / script), "stop"], env=env, capture_output=True
            )
    assert _tracked_changes() == before, "a documented command changed checked-in files"

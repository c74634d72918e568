"""Alert rules and Alertmanager routes: generated from the chain, checked by promtool and amtool.

promtool and amtool come from the Debian packages prometheus and prometheus-alertmanager; a
missing tool fails these tests (FileNotFoundError), it never skips them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ketenmonitor.streams.metrics import ChainCollector
from ketenmonitor.streams.totals import LocalTotals

from ketenmonitor.alerting.durations import TimeScale, format_duration, parse_duration
from ketenmonitor.alerting.policy import load_policy
from ketenmonitor.alerting.routing import render_alertmanager_config
from ketenmonitor.alerting.rules import le_label, render_rules
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.domain.totals import ChainTotals
from ketenmonitor.metric_names import ALL_METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/ketenmonitor.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.test.yml"))
ALERTMANAGER = ROOT / "deploy/alertmanager/alertmanager.yml"
CHAIN = load_chain()
POLICY = load_policy()


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, check=False
    )


def test_the_checked_in_rule_file_is_the_generated_one() -> None:
    assert RULES.read_text() == render_rules(CHAIN, POLICY), (
        "regenerate: ketenmonitor rules generate --output " + str(RULES.relative_to(ROOT))
    )


def test_the_checked_in_alertmanager_config_is_the_generated_one() -> None:
    assert ALERTMANAGER.read_text() == render_alertmanager_config(CHAIN, POLICY)


def test_promtool_accepts_the_rules() -> None:
    result = run("promtool", "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_time_scaled_rules_are_valid_and_have_no_day_windows(tmp_path: Path) -> None:
    scaled = tmp_path / "scaled.rules.yml"
    scaled.write_text(render_rules(CHAIN, POLICY, TimeScale(4 / 86_400, "3s")))
    result = run("promtool", "check", "rules", scaled)
    assert result.returncode == 0, result.stdout + result.stderr
    exprs = [r["expr"] for g in yaml.safe_load(scaled.read_text())["groups"] for r in g["rules"]]
    assert not [e for e in exprs if re.search(r"\[\d+d\]", e)]
    assert any("[28s]" in e for e in exprs)  # the 7-day throughput window at 4 s per day


# promtool evaluates every rule of the file at every step of every test group, and the day-scale
# rules read 90-day windows: flow_and_norms took minutes of CPU on a loaded machine. Each test group
# runs instead against the rules it reads (the alerts it names, the series its expressions name,
# and every recording rule those read, in their own groups and order): rules only ever see each
# other through recorded series, so what is left out cannot change what is evaluated.
RULE_TEST_GROUPS = [
    (test_file, index)
    for test_file in RULE_TESTS
    for index, _ in enumerate(yaml.safe_load(test_file.read_text())["tests"])
]
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def rules_read_by(test: dict, groups: list[dict]) -> list[dict]:
    """The rule groups cut down to what one promtool test group reads (empty groups left out)."""
    recorded = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    alerts = {case["alertname"] for case in test.get("alert_rule_test", [])}
    exprs = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") in alerts]
    exprs += [case["expr"] for case in test.get("promql_expr_test", [])]
    needed: set[str] = set()
    while exprs:
        for name in _NAME.findall(exprs.pop()):
            if name in recorded and name not in needed:
                needed.add(name)
                exprs.append(recorded[name])
    cut = []
    for group in groups:
        kept = [r for r in group["rules"] if r.get("alert") in alerts or r.get("record") in needed]
        if kept:
            cut.append({**group, "rules": kept})
    return cut


def test_a_test_group_keeps_the_recording_rules_its_alert_reads_through_others() -> None:
    groups = [
        {"name": "a", "rules": [{"record": "x:one", "expr": "sum(m)"},
                                {"record": "x:two", "expr": "x:one * 2"},
                                {"record": "x:other", "expr": "sum(n)"}]},
        {"name": "b", "rules": [{"alert": "Fires", "expr": "x:two > 1"},
                                {"alert": "Other", "expr": "x:other > 1"}]},
    ]
    cut = rules_read_by({"alert_rule_test": [{"alertname": "Fires"}]}, groups)
    assert cut == [
        {"name": "a", "rules": groups[0]["rules"][:2]},
        {"name": "b", "rules": [groups[1]["rules"][0]]},
    ]


@pytest.mark.parametrize(
    ("test_file", "index"), RULE_TEST_GROUPS, ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_promtool_unit_tests_pass(test_file: Path, index: int, tmp_path: Path) -> None:
    spec = yaml.safe_load(test_file.read_text())
    (rule_file,) = spec["rule_files"]
    groups = yaml.safe_load((test_file.parent / rule_file).read_text())["groups"]
    test = spec["tests"][index]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rules_read_by(test, groups)}, sort_keys=False))
    one = tmp_path / "test.yml"
    one.write_text(yaml.safe_dump({**spec, "rule_files": [str(rules)], "tests": [test]},
                                  sort_keys=False))
    result = run("promtool", "test", "rules", one)
    assert result.returncode == 0, f"{test['name']}\n{result.stdout}{result.stderr}"


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in RULE_TESTS:
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert alerts - firing == set()
    assert alerts - quiet == set()


OWNER_FROM_SERIES = {
    "KetenmonitorThroughputBreach",  # stage series: organisation = the stage's owner
    "KetenmonitorBacklogForecast",
    "KetenmonitorOldestCaseForecast",
    "KetenmonitorDeadLetterSurge",  # partner series
}


def test_every_alert_has_severity_owner_summary_and_runbook() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            # The owner is a static label, or comes from series that carry `organisation`.
            if "organisation" not in rule["labels"]:
                assert rule["alert"] in OWNER_FROM_SERIES, rule["alert"]
            assert {"summary", "description", "runbook"} <= set(rule["annotations"])


def test_every_metric_in_the_rules_is_exported_by_the_workers() -> None:
    exprs = [
        r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    ]
    # Raw metric names: not part of a recorded name (level:name:op), not a label value ("...").
    used = {
        name
        for expr in exprs
        for name in re.findall(r'(?<![:"\w])(ketenmonitor_[a-z_]+)(?![:"\w])', expr)
    }
    assert used, "no metric found: the pattern is broken"
    assert used - ALL_METRIC_NAMES == set()


def test_norm_bucket_labels_match_what_the_worker_exports() -> None:
    totals = ChainTotals(CHAIN)  # one completed segment: its histogram, every bucket
    totals._fold(("end_to_end", "standard", "amsterdam", 0.0, 86_400.0, "segment_completed"), +1)
    local = LocalTotals(lambda: [totals], lambda: [], lambda: 86_400.0)
    collector = ChainCollector(CHAIN, local, {})
    exported = {
        s.labels["le"]
        for family in collector.collect()
        for s in family.samples
        if s.name.endswith("_bucket")
    }
    for norm in CHAIN.spec.norms:
        assert le_label(norm.within_seconds) in exported
        assert f'le="{le_label(norm.within_seconds)}"' in RULES.read_text()


def test_durations_round_trip_and_scale() -> None:
    assert parse_duration("1h30m") == 5400
    assert format_duration(90 * 86_400) == "90d"
    assert TimeScale(4 / 86_400, "3s").duration("7d") == "28s"
    assert TimeScale(4 / 86_400, "3s").duration("6h") == "3s"


# -- Alertmanager ---------------------------------------------------------------------------
def test_amtool_accepts_the_config() -> None:
    result = run("amtool", "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr


ROUTES = [
    # (labels, receivers that must get the alert)
    ({"organisation": "police", "severity": "warning"}, "sg-digest,partner-police"),
    ({"organisation": "om", "severity": "critical"}, "sg-urgent,partner-om"),
    ({"organisation": "courts", "severity": "warning"}, "sg-digest,partner-courts"),
    ({"organisation": "cjib", "severity": "critical"}, "sg-urgent,partner-cjib"),
    ({"organisation": "chain", "severity": "warning"}, "sg-digest"),
    ({"organisation": "chain", "severity": "critical"}, "sg-urgent"),
    ({"organisation": "monitor_operations", "severity": "critical"}, "monitor-operations"),
    ({"organisation": "unknown_partner", "severity": "info"}, "sg-digest"),
]


@pytest.mark.parametrize(("labels", "receivers"), ROUTES, ids=[r[1] for r in ROUTES])
def test_amtool_routes_each_alert_to_its_receivers(labels: dict[str, str], receivers: str) -> None:
    result = run(
        "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receivers}", *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_partner_has_a_route_to_its_own_receiver() -> None:
    for partner in CHAIN.partner_ids:
        result = run(
            "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}",
            f"organisation={partner}", "severity=info",
        )
        assert result.stdout.strip() == f"partner-{partner}", result.stdout + result.stderr


def test_what_a_norm_measures_is_exported_at_zero_before_any_completion() -> None:
    """increase() misses the completions that make a series appear: a fresh stack fed history
    within one scrape would read 0/0 for every norm. Norm histograms therefore start at zero."""
    collector = ChainCollector(CHAIN, LocalTotals(lambda: [ChainTotals(CHAIN)], list, float), {})
    counts = {
        (s.labels["segment"], s.labels["case_type"], s.labels["district"]): s.value
        for family in collector.collect()
        for s in family.samples
        if s.name == "ketenmonitor_segment_lead_time_seconds_count"
    }
    measured = {
        (norm.segment, case_type, district)
        for norm in CHAIN.spec.norms
        for case_type in norm.case_types or CHAIN.case_types
        for district in CHAIN.districts
    }
    assert set(counts) == measured  # and nothing a norm does not measure
    assert set(counts.values()) == {0}
    # Each carries (at least) the bucket its norms read, so the share is a ratio of two series.
    buckets = {
        (s.labels["segment"], s.labels["case_type"], s.labels["le"])
        for family in collector.collect()
        for s in family.samples
        if s.name == "ketenmonitor_segment_lead_time_seconds_bucket"
    }
    for norm in CHAIN.spec.norms:
        for case_type in norm.case_types or CHAIN.case_types:
            assert (norm.segment, case_type, le_label(norm.within_seconds)) in buckets
            assert (norm.segment, case_type, "+Inf") in buckets

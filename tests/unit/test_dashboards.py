"""The generated dashboards: up to date, well formed, and tied to the metrics and norms they show.

Run: .venv/bin/pytest tests/unit/test_dashboards.py
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import queries
from dashboards.build import BUILDERS, JSON_DIR, main, rendered_files
from dashboards.model import DashboardModelError, Panel, PromQuery
from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, Chain, chain_from_mapping, load_chain
from ketenmonitor.metric_names import ALL_METRIC_NAMES
from ketenmonitor.store.models import Base

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"


# -- helpers ---------------------------------------------------------------------------------
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (functions, labels, keywords excluded)."""
    text = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr)  # Grafana variable query
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)          # string literals
    text = re.sub(r"\$\{?\w+\}?", "", text)                    # Grafana variables
    text = re.sub(r"\{[^}]*\}", "", text)                       # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                      # range and subquery windows
    text = re.sub(r"\boffset\s+\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        start, end = match.span()
        if start and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue  # a number such as 1e3
        if re.match(r"\s*\(", text[end:]) or match.group().lower() in _KEYWORDS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


def recording_rule_names() -> set[str]:
    names = set()
    for path in sorted(RULES_DIR.glob("*.y*ml")) if RULES_DIR.is_dir() else []:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        uids.update(ds["uid"] for ds in yaml.safe_load(path.read_text())["datasources"])
    return uids


def dashboards_json() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in rendered_files(load_chain()).items()}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from board["panels"]


def prometheus_expressions(board: dict[str, Any]) -> Iterator[str]:
    for panel in panels(board):
        for target in panel["targets"]:
            if target["datasource"]["type"] == "prometheus":
                yield target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return dashboards_json()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return load_chain(DEFAULT_CHAIN_FILE)


def overview_panel(boards: dict[str, dict[str, Any]], title: str) -> dict[str, Any]:
    matches = [p for p in boards["ketenoverzicht.json"]["panels"] if p["title"] == title]
    assert len(matches) == 1, f"expected one overview panel titled {title!r}"
    return matches[0]


# -- generated files -------------------------------------------------------------------------
def test_checked_in_json_equals_what_the_builders_generate_now() -> None:
    generated = rendered_files(load_chain(DEFAULT_CHAIN_FILE))
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.glob("*.json")}
    assert set(on_disk) == set(generated), "run: python -m dashboards.build"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} is out of date: run python -m dashboards.build"


def test_build_check_fails_on_a_stale_file_and_passes_on_fresh_ones(tmp_path: Path) -> None:
    assert main(["--output", str(tmp_path)]) == 0
    assert main(["--check", "--output", str(tmp_path)]) == 0
    (tmp_path / "fase.json").write_text("{}\n")
    assert main(["--check", "--output", str(tmp_path)]) == 1


# -- structure -------------------------------------------------------------------------------
def test_dashboard_uids_are_unique_and_titles_dutch(boards: dict[str, dict[str, Any]]) -> None:
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids)) == len(BUILDERS)
    assert {b["title"] for b in boards.values()} >= {"Ketenoverzicht", "Details per fase"}


def test_panel_ids_are_unique_within_each_dashboard(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name


def test_panels_fit_the_grid_without_overlapping(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        taken: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                     for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & taken, f"{name}: {p['title']!r} overlaps another panel"
            taken |= cells


def test_every_panel_has_a_description_and_a_unit(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        for p in board["panels"]:
            assert len(p["description"].strip()) >= 20, (name, p["title"])
            assert p["fieldConfig"]["defaults"]["unit"], (name, p["title"])
            assert p["targets"], (name, p["title"])


def test_every_datasource_uid_is_provisioned(boards: dict[str, dict[str, Any]]) -> None:
    provisioned = provisioned_datasource_uids()
    used = set()
    for board in boards.values():
        for p in board["panels"]:
            used.add(p["datasource"]["uid"])
            used.update(t["datasource"]["uid"] for t in p["targets"])
        used.update(v["datasource"]["uid"] for v in board["templating"]["list"]
                    if "datasource" in v)
    assert used and used <= provisioned, used - provisioned


def test_dashboard_provider_points_at_where_compose_mounts_the_json() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "ketenmonitor.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{path}:ro" in mounts


def test_links_between_dashboards_point_at_existing_uids(boards: dict[str, dict[str, Any]]) -> None:
    uids = {b["uid"] for b in boards.values()}
    for name, board in boards.items():
        urls = [link["url"] for link in board["links"]]
        for p in board["panels"]:
            urls += [link["url"] for link in p["fieldConfig"]["defaults"]["links"]]
        for url in urls:
            assert url.startswith("/d/") and url[3:].split("?")[0] in uids, (name, url)


# -- metrics ---------------------------------------------------------------------------------
def test_metric_name_extraction_finds_names_and_skips_everything_else() -> None:
    expr = (
        'sum by (le) (rate(foo_bucket{segment="a", le="2592000.0"}[$__rate_interval])) '
        '/ on (x) group_left (y) bar_total offset 4w * 86400 - time() + count(ALERTS) or vector(0)'
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total", "ALERTS"}
    assert metric_names('label_values(baz{organisation=~"$organisation"}, stage)') == {"baz"}


def test_every_expression_names_an_exported_metric_or_a_recording_rule(
    boards: dict[str, dict[str, Any]],
) -> None:
    known = ALL_METRIC_NAMES | recording_rule_names() | queries.PROMETHEUS_SERIES
    seen: set[str] = set()
    for name, board in boards.items():
        for expr in prometheus_expressions(board):
            names = metric_names(expr)
            assert names, f"{name}: no metric in {expr!r}"
            assert names <= known, f"{name}: unknown {names - known} in {expr!r}"
            seen |= names
    # The SG view really is built on the worker's metrics, not only on Prometheus's own series.
    assert len(seen & ALL_METRIC_NAMES) >= 10


def test_history_sql_names_only_tables_of_the_store(boards: dict[str, dict[str, Any]]) -> None:
    tables = set(Base.metadata.tables)
    for p in boards["historie.json"]["panels"]:
        for t in p["targets"]:
            used = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", t["rawSql"]))
            used.discard("generate_series")
            assert used and used <= tables, (p["title"], used - tables)


# -- norms -----------------------------------------------------------------------------------
def test_share_within_norm_thresholds_equal_the_configured_norms(
    boards: dict[str, dict[str, Any]], chain: Chain
) -> None:
    for norm in chain.spec.norms:
        panel = overview_panel(boards, norm.label)
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        by_color = {s["color"]: s["value"] for s in steps}
        assert by_color["red"] is None
        assert by_color["green"] == norm.target
        assert by_color.get("orange") == norm.interim_target
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
        (expr,) = [t["expr"] for t in panel["targets"]]
        assert f'le="{float(norm.within_seconds)!r}"' in expr
        assert f'segment="{norm.segment}"' in expr


def test_lead_time_bars_turn_red_at_the_norm_limit(
    boards: dict[str, dict[str, Any]], chain: Chain
) -> None:
    panel = overview_panel(boards, "Doorlooptijd tegen de norm (p50 en p80)")
    limits = {
        o["matcher"]["options"]: o["properties"][0]["value"]["steps"][1]["value"]
        for o in panel["fieldConfig"]["overrides"]
    }
    for norm in chain.spec.norms:
        assert limits[f"{norm.label} (p50)"] == limits[f"{norm.label} (p80)"] == norm.within_seconds


def test_thresholds_follow_a_changed_chain_definition() -> None:
    from dashboards.overview import build_overview

    raw = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text())
    changed = copy.deepcopy(raw)
    changed["norms"][0].update(target=0.95, interim_target=0.75, within_days=200)
    board = build_overview(chain_from_mapping(changed)).to_json()
    (panel,) = [p for p in board["panels"] if p["title"] == changed["norms"][0]["label"]]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.75, 0.95]
    assert f'le="{200 * 86400.0!r}"' in panel["targets"][0]["expr"]


# -- the model refuses incomplete panels -----------------------------------------------------
@pytest.mark.parametrize(
    ("description", "unit"), [("", "short"), ("   ", "short"), ("Telt zaken.", "")]
)
def test_a_panel_without_description_or_unit_is_refused(description: str, unit: str) -> None:
    with pytest.raises(DashboardModelError):
        Panel("stat", "Titel", description, unit, (PromQuery("up"),))


def test_freshness_turns_red_where_the_stale_feed_alert_fires(
    boards: dict[str, dict[str, Any]], chain: Chain
) -> None:
    from ketenmonitor.alerting.durations import parse_duration
    from ketenmonitor.alerting.policy import load_policy

    policy = load_policy()
    panel = overview_panel(boards, "Versheid gegevens per partner")
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]
    }
    for partner in chain.partner_ids:
        (steps,) = [p["value"]["steps"] for p in overrides[partner] if p["id"] == "thresholds"]
        assert steps[-1] == {"color": "red", "value": parse_duration(policy.stale_after(partner))}


def test_a_chain_with_more_norms_gets_a_panel_for_each_on_the_grid() -> None:
    from dashboards.overview import build_overview

    raw = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text())
    extra = [{**norm, "id": f"{norm['id']}_copy"} for norm in raw["norms"][:5]]
    raw["norms"] = raw["norms"] + extra
    board = build_overview(chain_from_mapping(raw)).to_json()
    titles = [p["title"] for p in board["panels"]]
    for norm in raw["norms"]:
        assert norm["label"] in titles
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])

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
from ketenmonitor.dashboards import queries
from ketenmonitor.dashboards.build import BUILDERS, JSON_DIR, main, rendered_files
from ketenmonitor.dashboards.datasources import ALL as SOURCES
from ketenmonitor.dashboards.datasources import bind_inputs
from ketenmonitor.dashboards.panels import DashboardModelError, stat

from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, Chain, chain_from_mapping, load_chain
from ketenmonitor.metric_names import ALL_METRIC_NAMES, le
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


def provisioned_datasources() -> dict[str, str]:
    """uid -> plugin type of every provisioned data source."""
    sources = {}
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        sources.update(
            (ds["uid"], ds["type"]) for ds in yaml.safe_load(path.read_text())["datasources"]
        )
    return sources


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
            yield variable["query"]["query"]


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
    assert set(on_disk) == set(generated), "run: python -m ketenmonitor.dashboards.build"
    for name, text in generated.items():
        assert on_disk[name] == text, (
            f"{name} is out of date: run python -m ketenmonitor.dashboards.build"
        )


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


def test_panels_read_through_a_datasource_variable_bound_by_an_import_input(
    boards: dict[str, dict[str, Any]],
) -> None:
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        inputs = {i["name"]: i for i in board["__inputs"]}
        refs = [p["datasource"] for p in board["panels"]]
        refs += [t["datasource"] for p in board["panels"] for t in p["targets"]]
        refs += [v["datasource"] for v in variables.values() if "datasource" in v]
        assert refs, name
        for ref in refs:
            variable = variables[ref["uid"].removeprefix("${").removesuffix("}")]
            assert variable["type"] == "datasource" and variable["query"] == ref["type"], name
            # The variable's default is an import input of the same plugin.
            default = variable["current"]["value"].removeprefix("${").removesuffix("}")
            assert inputs[default]["pluginId"] == ref["type"], name
        assert "${DS_" not in json.dumps(bind_inputs(board)), name


def test_bound_dashboards_name_only_provisioned_data_sources(
    boards: dict[str, dict[str, Any]],
) -> None:
    provisioned = provisioned_datasources()
    for source in SOURCES:
        assert provisioned[source.provisioned_uid] == source.plugin
    used = set()
    for board in boards.values():
        bound = bind_inputs(board)
        used |= {v["current"]["value"] for v in bound["templating"]["list"]
                 if v["type"] == "datasource"}
    assert used == set(provisioned)


def test_the_heatmap_uses_only_options_grafana_11_knows(
    boards: dict[str, dict[str, Any]],
) -> None:
    (heatmap,) = [p for p in boards["fase.json"]["panels"] if p["type"] == "heatmap"]
    assert "show" not in heatmap["options"]["tooltip"]  # removed in Grafana 10
    assert heatmap["options"]["calculate"] is False
    assert heatmap["targets"][0]["format"] == "heatmap"


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
        assert f'le="{le(norm.within_seconds)}"' in expr
        assert f'segment="{norm.segment}"' in expr
        assert "[$__range]" in expr  # the time picker chooses the period


def test_lead_time_quantiles_follow_the_time_picker(boards: dict[str, dict[str, Any]]) -> None:
    panel = overview_panel(boards, "Doorlooptijd tegen de norm (p50 en p80)")
    drill = [p for p in boards["fase.json"]["panels"] if p["title"].startswith("Doorlooptijd p")]
    exprs = [t["expr"] for p in [panel, *drill] for t in p["targets"]]
    assert len(exprs) >= 4
    for expr in exprs:
        assert expr.startswith("histogram_quantile(") and "[$__range]" in expr, expr
        assert "withdrawn" in expr, expr  # net of corrections


_AGGREGATED_RATE = re.compile(
    r"\b(sum|avg|count)\s*(?:by\s*\(([^)]*)\))?\s*\(\s*(?:rate|increase|irate)\("
)


def test_no_query_adds_up_the_workers_copies_of_the_chain(
    boards: dict[str, dict[str, Any]],
) -> None:
    """Every worker exports the whole chain: a rate may be summed within a worker only."""
    checked = 0
    for name, board in boards.items():
        for expr in prometheus_expressions(board):
            for match in _AGGREGATED_RATE.finditer(expr):
                checked += 1
                labels = {x.strip() for x in (match.group(2) or "").split(",")}
                assert {"instance", "job"} <= labels, f"{name}: {expr}"
    assert checked >= 10


def test_an_aggregated_rate_over_workers_is_caught() -> None:
    assert _AGGREGATED_RATE.search("sum by (organisation) (rate(x_total[5m]))")
    assert _AGGREGATED_RATE.search("sum(increase(x_total[1h]))")
    match = _AGGREGATED_RATE.search("max (sum by (instance, job) (rate(x_total[5m])))")
    assert match is not None and "instance" in match.group(2)


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
    from ketenmonitor.dashboards.overview import build_overview

    raw = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text())
    changed = copy.deepcopy(raw)
    changed["norms"][0].update(target=0.95, interim_target=0.75, within_days=200)
    board = build_overview(chain_from_mapping(changed)).to_json()
    (panel,) = [p for p in board["panels"] if p["title"] == changed["norms"][0]["label"]]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.75, 0.95]
    assert f'le="{le(200 * 86400)}"' in panel["targets"][0]["expr"]


# -- the panel builders refuse incomplete panels ---------------------------------------------
@pytest.mark.parametrize(
    ("description", "unit"), [("", "short"), ("   ", "short"), ("Telt zaken.", "")]
)
def test_a_panel_without_description_or_unit_is_refused(description: str, unit: str) -> None:
    with pytest.raises(DashboardModelError):
        stat("Titel", description, unit, "up")
    stat("Titel", "Telt zaken.", "short", "up")  # complete: accepted


def test_a_panel_without_a_query_is_refused() -> None:
    with pytest.raises(DashboardModelError):
        stat("Titel", "Telt zaken.", "short")


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
    from ketenmonitor.dashboards.overview import build_overview

    raw = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text())
    extra = [{**norm, "id": f"{norm['id']}_copy"} for norm in raw["norms"][:5]]
    raw["norms"] = raw["norms"] + extra
    board = build_overview(chain_from_mapping(raw)).to_json()
    titles = [p["title"] for p in board["panels"]]
    for norm in raw["norms"]:
        assert norm["label"] in titles
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])

"""Generate the dashboard JSON files that Grafana provisions and the publisher uploads.

    python -m ketenmonitor.dashboards.build          # dashboards/json/*.json from the default chain
    python -m ketenmonitor.dashboards.build --check  # exit 1 if the checked-in JSON is out of date
    python -m ketenmonitor.dashboards.build --chain my-chain.yaml --output /tmp/dashboards

The JSON is generated, never edited by hand: norms, stages, partners and their Dutch labels come
from the chain definition, metric and recorded-series names from ketenmonitor/metric_names.py and
ketenmonitor/alerting/rules.py; the dashboards themselves are built with grafana-foundation-sdk.
Output is stable (sorted keys, fixed ids), so a diff of the JSON shows exactly what a change to the
builders did. Each file carries `__inputs`, so Grafana's import asks for the data sources.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ketenmonitor.dashboards.board import Board
from ketenmonitor.dashboards.drilldown import build_drilldown
from ketenmonitor.dashboards.history import build_history
from ketenmonitor.dashboards.overview import build_overview
from ketenmonitor.dashboards.pipeline import build_pipeline

from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, Chain, load_chain

JSON_DIR = Path(__file__).resolve().parent / "json"

BUILDERS: dict[str, Callable[[Chain], Board]] = {
    "ketenoverzicht.json": build_overview,
    "fase.json": build_drilldown,
    "pijplijn.json": build_pipeline,
    "historie.json": build_history,
}


def build_all(chain: Chain) -> dict[str, Board]:
    """File name -> dashboard, in a fixed order."""
    return {name: build(chain) for name, build in BUILDERS.items()}


def render(board: Board) -> str:
    return json.dumps(board.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files(chain: Chain) -> dict[str, str]:
    return {name: render(board) for name, board in build_all(chain).items()}


def write_all(chain: Chain, output: Path = JSON_DIR) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_files(chain).items():
        path = output / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(chain: Chain, output: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing or differ from what the builders generate now."""
    return [
        name
        for name, text in rendered_files(chain).items()
        if not (output / name).exists() or (output / name).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ketenmonitor.dashboards.build", description=__doc__
    )
    parser.add_argument("--chain", type=Path, default=DEFAULT_CHAIN_FILE,
                        help="chain definition (default: the shipped one)")
    parser.add_argument("--output", type=Path, default=JSON_DIR)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the files are out of date")
    args = parser.parse_args(argv)
    chain = load_chain(args.chain)
    if args.check:
        stale = stale_files(chain, args.output)
        if stale:
            print(f"out of date: {', '.join(stale)} (run python -m ketenmonitor.dashboards.build)",
                  file=sys.stderr)
            return 1
        print("dashboards up to date")
        return 0
    for path in write_all(chain, args.output):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

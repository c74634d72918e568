"""`ketenmonitor rules ...`: write the generated Prometheus rules and Alertmanager configuration.

    ketenmonitor rules generate [--output FILE] [--time-scale F] [--min-window 1s] [--policy FILE]
    ketenmonitor rules alertmanager [--output FILE] [--webhook-url URL] [--time-scale F]

Without --output the text goes to stdout. The chain definition is KETENMONITOR_CHAIN_FILE or the
shipped one. The checked-in deploy/ files are the output with the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ketenmonitor.alerting.durations import DurationError, TimeScale
from ketenmonitor.alerting.policy import PolicyError, load_policy
from ketenmonitor.cli_common import command_group, fail, subcommand
from ketenmonitor.domain.chain import load_chain


def register(subparsers: Any) -> None:
    rules = command_group(subparsers, "rules", "generate alert rules and Alertmanager routes")
    subcommand(rules, "generate", "Prometheus recording and alert rules", cmd_generate, _common)
    subcommand(rules, "alertmanager", "Alertmanager configuration (routes, receivers)",
               cmd_alertmanager, _common, _webhook_option)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every window by this factor (tests: 4/86400 makes a day last 4 s)",
    )
    p.add_argument("--min-window", default="1s", help="no window shorter than this")
    p.add_argument("--policy", type=Path, default=None, help="alerting policy YAML")


def _webhook_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--webhook-url",
        default=None,
        help="webhook URL template; {receiver} becomes the receiver name",
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from ketenmonitor.alerting.rules import render_rules

    return _write(args, lambda chain, policy, scale: render_rules(chain, policy, scale))


def cmd_alertmanager(args: argparse.Namespace) -> int:
    from ketenmonitor.alerting.routing import DEFAULT_WEBHOOK_URL, render_alertmanager_config

    url = args.webhook_url or DEFAULT_WEBHOOK_URL
    return _write(
        args, lambda chain, policy, scale: render_alertmanager_config(chain, policy, url, scale)
    )


def _write(args: argparse.Namespace, render: Any) -> int:
    try:
        scale = TimeScale(args.time_scale, args.min_window)
        text = render(load_chain(), load_policy(args.policy), scale)
    except (PolicyError, DurationError, ValueError) as exc:
        return fail("rules", exc)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0

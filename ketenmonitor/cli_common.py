"""What the `ketenmonitor` subcommand modules share: command groups and how they report errors.

    def register(subparsers) -> None:
        acl = command_group(subparsers, "acl", "Kafka ACLs per partner, workers, operators")
        subcommand(acl, "show", "print the ACL plan", cmd_show, _principal_options)

    @reports("acl", AclPlanError)
    def cmd_show(args: argparse.Namespace) -> int: ...

A reported error is one line on stderr, `ketenmonitor acl: <message>`, and an exit status (2: the
input or configuration is wrong), so the user sees what to fix rather than a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]


def command_group(subparsers: Any, name: str, help: str) -> Any:
    """`ketenmonitor NAME ...`: a command whose subcommand is required; returns their subparsers."""
    group = subparsers.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)


def subcommand(
    group: Any,
    name: str,
    help: str,
    func: Command,
    *options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Add `name` to a command group, run by `func`, with the options each of `options` adds."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    for add_options in options:
        add_options(parser)
    parser.set_defaults(func=func)
    return parser


def fail(command: str, error: Exception, status: int = 2) -> int:
    """Report `error` on stderr as `ketenmonitor COMMAND: message`; returns the exit status."""
    print(f"ketenmonitor {command}: {error}", file=sys.stderr)
    return status


def reports(
    command: str, *errors: type[Exception], status: int = 2
) -> Callable[[Command], Command]:
    """Decorate a subcommand so that any of `errors` is reported with `fail` instead of raised."""

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except errors as exc:
                return fail(command, exc, status)

        return run

    return decorate

"""What the `ketenmonitor` subcommand modules share: command groups and how they report errors.

    def register(subparsers) -> None:
        acl = command_group(subparsers, "acl", "Kafka ACLs per partner, workers, operators")
        subcommand(acl, "show", "print the ACL plan", cmd_show, _principal_options)

    @reports("acl", AclPlanError)
    def cmd_show(args: argparse.Namespace) -> int: ...

A reported error is one line on stderr, `ketenmonitor acl: <message>` (a JSON object with
`--log-format json`), and an exit status from the table below (docs/cli.md), so the user sees what
to fix rather than a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]

# Exit statuses, the same for every command (docs/cli.md, `ketenmonitor --help`).
EXIT_OK = 0
EXIT_FINDINGS = 1  # the command ran and found something: invalid rows, stale files, failed checks
EXIT_USAGE = 2  # wrong arguments or configuration (settings, files, key): fix the command line
EXIT_UNREACHABLE = 3  # a service (Kafka, the store, Grafana) cannot be reached
EXIT_AUTH = 4  # a service refused the credentials
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM
EXIT_BROKEN_PIPE = 141  # the reader of the output went away (`| head`): quiet, like SIGPIPE

EXIT_CODES_HELP = """exit status:
  0    ok
  1    findings: invalid rows, stale files, failed checks
  2    usage or configuration error (arguments, settings, files, keys)
  3    a service (Kafka, the store) cannot be reached
  4    a service refused the credentials (authentication failed)
  130  interrupted (Ctrl-C, SIGTERM)
  141  the reader of the output closed the pipe (e.g. `| head`)"""


class CliError(Exception):
    """An expected failure with the exit status it gets; the message names the fix."""

    status = EXIT_USAGE


class ConfigurationError(CliError):
    status = EXIT_USAGE


class ServiceUnreachableError(CliError):
    status = EXIT_UNREACHABLE


class AuthenticationFailedError(CliError):
    status = EXIT_AUTH


# "text" (one line `ketenmonitor CMD: message`) or "json" (one JSON object a line); set by main().
_error_format = ["text"]


def set_error_format(fmt: str) -> None:
    _error_format[0] = fmt


def console(**options: Any) -> Any:
    """A rich Console whose broken pipe (`ketenmonitor report | head`) ends the command like
    any other (quietly, exit status 141) rather than with rich's own exit status 1."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return PipeConsole(**options)


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


def fail(command: str, error: Exception | str, status: int = EXIT_USAGE) -> int:
    """Report `error` on stderr as `ketenmonitor COMMAND: message`; returns the exit status."""
    message = " ".join(str(error).split())  # always one line
    if _error_format[0] == "json":
        record = {"level": "error", "command": command, "message": message, "exit_status": status}
        print(json.dumps(record), file=sys.stderr)
    else:
        print(f"ketenmonitor {command}: {message}", file=sys.stderr)
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

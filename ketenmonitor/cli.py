"""The `ketenmonitor` command.

    ketenmonitor worker                 # a stream worker (start more for more throughput)
    ketenmonitor demo                   # broker + worker + simulated partners + live summary
    ketenmonitor simulate --cases 1000 [--output events.jsonl]   # to Kafka unless --output
    ketenmonitor topics                 # create the partner, case and dead-letter topics
    ketenmonitor publish | import-log | report | stuck | replay | rules | acl | dashboards | chart

Settings come from the environment (KETENMONITOR_*, see ketenmonitor/settings.py and docs/cli.md);
`--bootstrap` overrides KETENMONITOR_KAFKA_BOOTSTRAP on every command that talks to Kafka.

Every expected mistake (a setting, a missing file, a broker that is down, a refused password) is
reported as one line on stderr, `ketenmonitor COMMAND: what is wrong and what to do`, with an exit
status from cli_common (the same for every command); secrets are never part of such a line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ketenmonitor.cli_common import (
    EXIT_AUTH,
    EXIT_BROKEN_PIPE,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    fail,
    set_error_format,
)
from ketenmonitor.logs import FORMATS, LEVELS, configure_logging

BOOTSTRAP_HELP = (
    "Kafka bootstrap servers, host:port[,host:port] "
    "(default: $KETENMONITOR_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows the default of every option that has one (not for flags or unset values)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and "default" not in text
            and action.option_strings
            and default not in (None, False, argparse.SUPPRESS, [])
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Every (sub)command parser: --loglevel, --log-format, defaults in --help, one-line errors.

    Subparsers are built from this class too (argparse uses the parent's class), so the logging
    options work after any subcommand: `ketenmonitor worker --loglevel info`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--loglevel", choices=LEVELS, default=argparse.SUPPRESS,
            help="log level (default: warning)",
        )
        self.add_argument(
            "--log-format", choices=FORMATS, default=argparse.SUPPRESS,
            help="log lines and error lines as text or as one JSON object a line (default: text)",
        )

    def error(self, message: str) -> Any:
        # One line, naming the fix, instead of argparse's usage block.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_bootstrap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help=BOOTSTRAP_HELP)


def cmd_topics(args: argparse.Namespace) -> int:
    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.settings import Settings
    from ketenmonitor.streams.topics import create_monitor_topics

    settings = Settings()
    create_monitor_topics(settings, load_chain(settings.chain_file))
    print(f"topics ready on {settings.kafka_bootstrap} (prefix {settings.topic_prefix})")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.settings import Settings
    from ketenmonitor.streams.placement import PlacementError
    from ketenmonitor.streams.topics import TopicLayoutError
    from ketenmonitor.streams.worker import run_worker

    settings = Settings()
    chain = load_chain(settings.chain_file)
    settings.pseudonym_secret()  # a missing or short key: one line now, not a traceback later
    try:
        run_worker(settings, chain)
    except (TopicLayoutError, PlacementError) as exc:
        return fail("worker", exc)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ketenmonitor.demo import run_demo

    return run_demo(
        cases=args.cases, rate=args.rate, seed=args.seed, duration=args.duration,
        kafka_port=args.kafka_port, bootstrap=args.bootstrap,
    )


# Modules that add their own subcommands: each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "ketenmonitor.simulate_command",
    "ketenmonitor.publish",
    "ketenmonitor.eventlog_import",
    "ketenmonitor.store.commands",
    "ketenmonitor.alerting.commands",
    "ketenmonitor.dashboards.publish",
    "ketenmonitor.access.commands",
    "ketenmonitor.chart",
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("ketenmonitor")
    except PackageNotFoundError:
        return "0+source"


# The partner tools' runs need their own module only: `ketenmonitor publish ...` and `import-log`
# build a parser with just that command, without importing the SQL store (Alembic, SQLAlchemy),
# the Grafana client and the other commands' modules, ~1.3 s of CPU at every start (a seventh of a
# 500k-event publish at 50k events/s). `ketenmonitor --help` and every other command see them all.
PARTNER_COMMANDS = {"publish": "ketenmonitor.publish", "import-log": "ketenmonitor.eventlog_import"}


def chosen_partner_command(argv: list[str]) -> str | None:
    """The partner command argv runs, if its first word names one (no global option before it)."""
    return argv[0] if argv and argv[0] in PARTNER_COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `only` (a PARTNER_COMMANDS name): that command alone."""
    parser = Parser(
        prog="ketenmonitor",
        description=(__doc__ or "").split("\n")[0],
        epilog=f"{EXIT_CODES_HELP}\n\nDocumentation: README.md and docs/cli.md.",
    )
    parser.add_argument(
        "--version", action="version", version=f"ketenmonitor {version()}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "worker", help="run a stream worker until SIGTERM/Ctrl-C",
        description="Consume the partner topics, keep case state, serve /metrics "
        "(KETENMONITOR_METRICS_PORT). Start more workers, each with its own metrics port, "
        "for more throughput.",
    )
    add_bootstrap_option(p)
    p.set_defaults(func=cmd_worker, needs_kafka=True)

    p = sub.add_parser(
        "topics", help="create the partner, case and dead-letter topics",
        description="Create the topics of KETENMONITOR_TOPIC_PREFIX that do not exist yet.",
    )
    add_bootstrap_option(p)
    p.set_defaults(func=cmd_topics, needs_kafka=True)

    p = sub.add_parser(
        "demo", help="live demo: broker, worker, simulated partners, summary",
        description="Start a local Kafka broker (unless --bootstrap names one), a worker and "
        "simulated partners, and show a live summary until Ctrl-C, SIGTERM or --duration. "
        "Every run uses its own topics and consumer group, so a second run does not count "
        "the cases of the first again.",
    )
    p.add_argument("--cases", type=int, default=20_000, help="simulated cases to publish")
    p.add_argument("--rate", type=float, default=800.0, help="events per second")
    p.add_argument("--seed", type=int, default=1, help="random seed of the simulation")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until stopped)")
    broker = p.add_mutually_exclusive_group()
    broker.add_argument("--kafka-port", type=int, default=None,
                        help="start the demo's own Kafka broker on this port of 127.0.0.1, even "
                        "when KETENMONITOR_KAFKA_BOOTSTRAP is set (its controller uses the next "
                        "port; default: 9092, unless a running broker is named)")
    broker.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                        help="use this running Kafka instead of starting one "
                        "(default: $KETENMONITOR_KAFKA_BOOTSTRAP if set)")
    p.set_defaults(func=cmd_demo)

    for module in COMMAND_MODULES if only is None else (PARTNER_COMMANDS[only],):
        importlib.import_module(module).register(sub)
    _complete_other_commands(sub.choices)
    return parser


def _complete_other_commands(commands: dict[str, argparse.ArgumentParser]) -> None:
    # publish and import-log declare their own options; what they send and their positional
    # arguments' help are stated here until their modules say it themselves.
    if "publish" in commands:
        commands["publish"].set_defaults(needs_kafka=lambda a: not a.dry_run)
    if "import-log" in commands:
        commands["import-log"].set_defaults(
            needs_kafka=lambda a: not a.dry_run and a.output is None
        )
    positional_help = {
        ("publish", "file"): "JSON Lines or CSV file of the partner's events",
        ("import-log", "log"): "the case event log, CSV or XES",
        ("import-log", "mapping"): "mapping file (examples/eventlog/mapping.yaml)",
    }
    for (command, dest), text in positional_help.items():
        for action in commands[command]._actions if command in commands else ():
            if action.dest == dest and not action.help:
                action.help = text


def command_name(args: argparse.Namespace) -> str:
    """`acl apply`, `report`, ...: the words the user typed to choose the command."""
    words = [str(args.command)]
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    if sub:
        words.append(str(sub))
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a script (the shell ignores SIGINT for such jobs):
        # `kill -INT` must still stop us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(chosen_partner_command(words)).parse_args(words)
    fmt = getattr(args, "log_format", "text")
    set_error_format(fmt)
    configure_logging(getattr(args, "loglevel", "warning"), fmt)
    if getattr(args, "bootstrap", None):
        os.environ["KETENMONITOR_KAFKA_BOOTSTRAP"] = args.bootstrap
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen command; every expected failure becomes one line and an exit status."""
    name = command_name(args)
    try:
        for attr in ("file", "log", "mapping"):  # a mistyped input is named before any broker
            path = getattr(args, attr, None)
            if isinstance(path, Path) and not path.exists():
                print(f"ketenmonitor {name}: {path}: no such file", file=sys.stderr)
                return EXIT_USAGE
        if _needs_kafka(args):
            from ketenmonitor.kafka_check import require_kafka
            from ketenmonitor.settings import Settings

            require_kafka(Settings())
        return int(args.func(args))
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return fail(name, "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        status, message = describe_error(exc)
        if status is None:
            raise  # a bug: the traceback is what a developer needs
        return fail(name, message, status)


def _needs_kafka(args: argparse.Namespace) -> bool:
    needs: bool | Callable[[argparse.Namespace], bool] = getattr(args, "needs_kafka", False)
    return needs(args) if callable(needs) else bool(needs)


def describe_error(exc: BaseException) -> tuple[int | None, str]:
    """(exit status, one-line message) of an expected error; (None, "") for anything else."""
    from pydantic import ValidationError

    from ketenmonitor.domain.chain import ChainDefinitionError
    from ketenmonitor.settings import MissingSecretError

    if isinstance(exc, CliError):
        return exc.status, str(exc)
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, validation_message(exc)
    if isinstance(exc, ChainDefinitionError | MissingSecretError):
        return EXIT_USAGE, str(exc)
    kafka = _kafka_error(exc)
    if kafka is not None:
        return kafka
    from ketenmonitor.kafka_io import PublishError

    if isinstance(exc, PublishError):
        return EXIT_UNREACHABLE, f"sending to Kafka failed: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return EXIT_USAGE, f"{exc.filename}: {exc.strerror or exc}"
    return None, ""


def validation_message(exc: Any) -> str:
    """A settings error as `KETENMONITOR_X: what is wrong`, never the value it was given."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = "_".join(str(part) for part in error["loc"])
        if exc.title == "Settings" and loc:
            loc = f"KETENMONITOR_{loc.upper()}"
        problems.append(f"{loc}: {message}" if loc else message)
    return "invalid settings: " + "; ".join(problems)


def _kafka_error(exc: BaseException) -> tuple[int, str] | None:
    import aiokafka.errors as aio
    import kafka.errors as kp

    bootstrap = os.environ.get("KETENMONITOR_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    if isinstance(exc, kp.SaslAuthenticationFailedError | aio.SaslAuthenticationFailed):
        return EXIT_AUTH, (
            f"Kafka at {bootstrap} refused the login: check KETENMONITOR_KAFKA_USERNAME and "
            "KETENMONITOR_KAFKA_PASSWORD(_FILE)"
        )
    unreachable = kp.MetadataEmptyBrokerList | kp.KafkaTimeoutError | aio.KafkaConnectionError
    if isinstance(exc, unreachable):
        return EXIT_UNREACHABLE, (
            f"lost Kafka at {bootstrap} ({type(exc).__name__}): check that the broker runs and "
            "answers, then run the command again"
        )
    return None


def _quiet_stdout() -> None:
    # Python would report the failed flush of stdout at exit; point it at /dev/null instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())

"""`ketenmonitor acl ...`: the Kafka ACLs of the access model (docs/security.md).

    ketenmonitor acl show                        # the plan, one grant a line (no broker needed)
    ketenmonitor acl apply [--prune]             # create it on the broker, as a super user
    ketenmonitor acl strimzi --cluster kafka     # the same as Strimzi KafkaTopic/KafkaUser YAML

The plan comes from the chain definition (one principal per partner) and the settings (topic
prefix, app id). `apply` logs in with the KETENMONITOR_KAFKA_* credentials, which must be those of
a super user (the broker's `admin`); partners and workers cannot change ACLs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ketenmonitor.access.plan import AclPlanError, Grant, Principals, access_plan
from ketenmonitor.cli_common import command_group, fail, reports, subcommand
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.settings import Settings


def register(subparsers: Any) -> None:
    acl = command_group(subparsers, "acl", "Kafka ACLs per partner, workers, operators")
    subcommand(acl, "show", "print the ACL plan", cmd_show, _principal_options)
    apply = subcommand(acl, "apply", "create the planned ACLs on the broker (as a super user)",
                       cmd_apply, _principal_options, _apply_options)
    apply.set_defaults(needs_kafka=True)
    subcommand(acl, "strimzi", "print topics and users with their ACLs as Strimzi resources",
               cmd_strimzi, _principal_options, _strimzi_options)


@reports("acl", AclPlanError)
def cmd_show(args: argparse.Namespace) -> int:
    for grant in _plan(args, Settings()):
        print(grant)
    return 0


@reports("acl", AclPlanError)
def cmd_apply(args: argparse.Namespace) -> int:
    from kafka.admin import KafkaAdminClient

    from ketenmonitor.access.kafka_acls import AclApplyError, Scope, apply_plan

    settings = Settings()
    plan = _plan(args, settings)  # before connecting: a wrong plan never reaches the broker
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="ketenmonitor-acl",
        **settings.kafka_python_security(),
    )
    try:
        result = apply_plan(admin, plan, Scope.of(settings), args.prune, args.timeout)
    except AclApplyError as exc:
        return fail("acl", exc, status=1)
    finally:
        admin.close()
    for grant in result.created:
        print(f"created  {grant}")
    for grant in result.deleted:
        print(f"deleted  {grant}")
    print(f"{len(plan)} ACLs planned: {len(result.created)} created, {len(result.deleted)} deleted")
    return 0


@reports("acl", AclPlanError)
def cmd_strimzi(args: argparse.Namespace) -> int:
    import yaml

    from ketenmonitor.access.strimzi import manifests

    settings = Settings()
    resources = manifests(
        settings,
        load_chain(settings.chain_file),
        cluster=args.cluster,
        replicas=args.replicas,
        principals=_principals(args),
        namespace=args.namespace,
    )
    print(yaml.safe_dump_all(resources, sort_keys=False), end="")
    return 0


def _principal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="ketenmonitor", help="the workers' user (ketenmonitor)")
    p.add_argument(
        "--operator",
        action="append",
        default=None,
        help="an operator's user; repeat for more (default: operator)",
    )
    p.add_argument(
        "--partner-format",
        default="{partner}",
        help="a partner's user name from its id in the chain definition ({partner})",
    )


def _apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prune",
        action="store_true",
        help="also delete ALLOW ACLs on Ketenmonitor's topics and group that are not planned",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers "
                   "(default: $KETENMONITOR_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)")


def _strimzi_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster", required=True, help="the Kafka resource's name (label strimzi.io/cluster)"
    )
    p.add_argument("--replicas", type=int, default=3, help="replication factor of each topic (3)")
    p.add_argument("--namespace", default=None, help="the namespace the Strimzi operators watch")


def _principals(args: argparse.Namespace) -> Principals:
    return Principals(
        workers=args.workers,
        operators=tuple(args.operator or ("operator",)),
        partner_format=args.partner_format,
    )


def _plan(args: argparse.Namespace, settings: Settings) -> list[Grant]:
    return access_plan(load_chain(settings.chain_file).partner_ids, settings, _principals(args))

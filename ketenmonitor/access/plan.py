"""The access plan: every Kafka ACL Ketenmonitor needs, generated from the chain definition.

    plan = access_plan(chain.partner_ids, settings, Principals())
    for grant in plan: print(grant)      # User:police WRITE topic ketenmonitor.events.police ...

The model (docs/security.md): a partner may write (and describe) only its own topic; the workers
read the partner topics, own the internal topics (case topic, changelogs `<app_id>-*`), may write
the dead-letter topic and use their consumer group; only operators read the dead-letter topic,
because its values are the original bytes, case keys included. Everything else is denied by the
broker (allow.everyone.if.no.acl.found=false). Pure data, no Kafka client: testable without a
broker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from ketenmonitor.settings import Settings

ResourceKind = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
# Kafka's operation names (AclOperation); ALL includes READ, WRITE, CREATE, DELETE, ALTER, ...
Operation = Literal["ALL", "READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"]

_NAME = r"^[A-Za-z0-9._-]+$"
# The workers create the dead-letter topic if it is missing (streams/topics.py) and write it, but do
# not read it back.
_WORKER_DEAD_LETTER_OPERATIONS: tuple[Operation, ...] = (
    "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS"
)


class AclPlanError(ValueError):
    """The settings or principal names would give an ACL plan that is wrong or too broad."""


@dataclass(frozen=True, slots=True)
class Principals:
    """The Kafka user names (SASL/SCRAM) of each role; partner users from `partner_format`."""

    workers: str = "ketenmonitor"
    operators: tuple[str, ...] = ("operator",)
    partner_format: str = "{partner}"

    def partner(self, partner_id: str) -> str:
        try:
            return self.partner_format.format(partner=partner_id)
        except (KeyError, IndexError, ValueError) as exc:
            raise AclPlanError(
                f"partner user format {self.partner_format!r} is not valid: it may only use "
                "{partner}"
            ) from exc


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may do `operation` on a resource (any host)."""

    principal: str  # "User:police"
    operation: Operation
    kind: ResourceKind
    name: str
    pattern: Pattern = "literal"

    def __str__(self) -> str:
        pattern = "*" if self.pattern == "prefixed" else ""
        return f"{self.principal:<24} {self.operation:<16} {self.kind:<6} {self.name}{pattern}"


def _user(name: str) -> str:
    if not re.match(_NAME, name):
        raise AclPlanError(f"principal name {name!r}: only A-Z a-z 0-9 . _ - allowed")
    return f"User:{name}"


def access_plan(
    partner_ids: Iterable[str], settings: Settings, principals: Principals = Principals()
) -> list[Grant]:
    """All grants, sorted and without duplicates."""
    partners = list(partner_ids)
    workers = _user(principals.workers)
    operators = [_user(o) for o in principals.operators]
    partner_users = {p: _user(principals.partner(p)) for p in partners}
    _check_roles_are_distinct(workers, operators, partner_users)

    internal_prefix = f"{settings.app_id}-"  # the workers' table changelogs
    partner_topics = [settings.partner_topic(p) for p in partners]
    for topic in (*partner_topics, settings.dead_letter_topic):
        if topic.startswith(internal_prefix):
            raise AclPlanError(
                f"topic {topic} starts with {internal_prefix!r}, the prefix the workers own: "
                "choose another app_id or topic_prefix"
            )

    def grants() -> Iterator[Grant]:
        for partner, topic in zip(partners, partner_topics, strict=True):
            yield Grant(partner_users[partner], "WRITE", "topic", topic)
            yield Grant(partner_users[partner], "DESCRIBE", "topic", topic)
            yield Grant(workers, "READ", "topic", topic)
            yield Grant(workers, "DESCRIBE", "topic", topic)
        yield Grant(workers, "ALL", "topic", settings.cases_topic)
        yield Grant(workers, "ALL", "topic", internal_prefix, "prefixed")
        yield Grant(workers, "READ", "group", settings.app_id)
        for operation in _WORKER_DEAD_LETTER_OPERATIONS:
            yield Grant(workers, operation, "topic", settings.dead_letter_topic)
        for operator in operators:
            yield Grant(operator, "READ", "topic", settings.dead_letter_topic)
            yield Grant(operator, "DESCRIBE", "topic", settings.dead_letter_topic)
            # Watching the pipeline: offsets of the workers' group on every topic, no content.
            yield Grant(operator, "DESCRIBE", "group", settings.app_id)
            for topic in (*partner_topics, settings.cases_topic):
                yield Grant(operator, "DESCRIBE", "topic", topic)

    return sorted(set(grants()))


def _check_roles_are_distinct(
    workers: str, operators: list[str], partner_users: dict[str, str]
) -> None:
    """One principal per role: a shared login would merge two roles' rights."""
    seen: dict[str, str] = {}
    roles = [("workers", workers), *(("operator", o) for o in operators)]
    roles += [(f"partner {p}", u) for p, u in partner_users.items()]
    for role, user in roles:
        if user in seen:
            raise AclPlanError(f"{user} is both {seen[user]} and {role}: one principal per role")
        seen[user] = role

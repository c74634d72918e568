"""Apply an access plan to a broker with kafka-python's admin client, as a super user.

    admin = KafkaAdminClient(bootstrap_servers=..., **admin_settings.kafka_python_security())
    result = apply_plan(admin, plan, scope=Scope.of(settings))    # creates what is missing
    result = apply_plan(admin, plan, scope=..., prune=True)        # also removes stray ALLOWs

Idempotent: only missing ACLs are created. `prune` deletes ALLOW ACLs on Ketenmonitor's own
resources (`scope`) that the plan does not contain, e.g. the rights of a partner that left the
chain; DENY ACLs an operator added by hand are never touched. ACLs reach the broker's authorizer
through the metadata log a moment after the controller accepted them: apply_plan returns once the
broker reports the planned set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import SecurityDisabledError

from ketenmonitor.access.plan import Grant
from ketenmonitor.settings import Settings

_KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERNS = {"literal": ACLResourcePatternType.LITERAL, "prefixed": ACLResourcePatternType.PREFIXED}


class AclApplyError(RuntimeError):
    """The broker refused to create or delete ACLs, or did not show them in time."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Ketenmonitor's own resources: topics under the topic prefix or the app id, its group."""

    topic_prefixes: tuple[str, ...]
    groups: tuple[str, ...]

    @classmethod
    def of(cls, settings: Settings) -> Scope:
        return cls((f"{settings.topic_prefix}.", f"{settings.app_id}-"), (settings.app_id,))

    def covers(self, grant: Grant) -> bool:
        if grant.kind == "group":
            return grant.name in self.groups
        return grant.name.startswith(self.topic_prefixes)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    created: list[Grant]
    deleted: list[Grant]


def to_acl(grant: Grant) -> ACL:
    return ACL(
        principal=grant.principal,
        host="*",
        operation=ACLOperation[grant.operation],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(_KINDS[grant.kind], grant.name, _PATTERNS[grant.pattern]),
    )


def to_grant(acl: ACL) -> Grant | None:
    """The grant an ACL expresses; None for DENY ACLs, host-bound ACLs and other resources."""
    pattern = acl.resource_pattern
    kinds = {v: k for k, v in _KINDS.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    if (
        acl.permission_type != ACLPermissionType.ALLOW
        or acl.host != "*"
        or pattern.resource_type not in kinds
        or pattern.pattern_type not in patterns
    ):
        return None
    return Grant(
        acl.principal,
        acl.operation.name,  # type: ignore[arg-type]  # any Kafka operation may be found
        kinds[pattern.resource_type],
        pattern.resource_name,
        patterns[pattern.pattern_type],
    )


def current_acls(admin: KafkaAdminClient) -> list[ACL]:
    everything = ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(
            ResourceType.ANY, None, ACLResourcePatternType.ANY
        ),
    )
    try:
        acls, _ = admin.describe_acls(everything)  # raises on an error code
    except SecurityDisabledError as exc:
        raise AclApplyError(
            "the broker has no authorizer, so it keeps no ACLs: start it in secure mode "
            "(KAFKA_SECURITY=scram, docs/security.md) and apply them as its admin"
        ) from exc
    return list(acls)


def current_grants(admin: KafkaAdminClient) -> set[Grant]:
    return {g for g in map(to_grant, current_acls(admin)) if g is not None}


def apply_plan(
    admin: KafkaAdminClient,
    plan: Iterable[Grant],
    scope: Scope,
    prune: bool = False,
    timeout: float = 30.0,
) -> ApplyResult:
    wanted = set(plan)
    existing = current_grants(admin)
    missing = sorted(wanted - existing)
    stray = sorted(g for g in existing - wanted if scope.covers(g)) if prune else []
    if missing:
        result = admin.create_acls([to_acl(g) for g in missing])
        failed = result["failed"]
        if failed:
            raise AclApplyError(f"the broker refused {len(failed)} ACLs: {failed!r}")
    if stray:
        for _, _, error in admin.delete_acls([_exact_filter(g) for g in stray]):
            if error.errno != 0:
                raise AclApplyError(f"the broker refused to delete ACLs: {error!r}")
    _wait_until_visible(admin, wanted, set(stray), timeout)
    return ApplyResult(missing, stray)


def _exact_filter(grant: Grant) -> ACLFilter:
    acl = to_acl(grant)
    return ACLFilter(
        principal=acl.principal,
        host=acl.host,
        operation=acl.operation,
        permission_type=acl.permission_type,
        resource_pattern=ResourcePatternFilter(
            acl.resource_pattern.resource_type,
            acl.resource_pattern.resource_name,
            acl.resource_pattern.pattern_type,
        ),
    )


def _wait_until_visible(
    admin: KafkaAdminClient, wanted: set[Grant], gone: set[Grant], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        grants = current_grants(admin)
        if wanted <= grants and not gone & grants:
            return
        if time.monotonic() > deadline:
            raise AclApplyError(
                f"after {timeout}s the broker still lacks {len(wanted - grants)} planned ACLs "
                f"and still has {len(gone & grants)} pruned ones"
            )
        time.sleep(0.2)

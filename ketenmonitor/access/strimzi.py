"""The topics and the access plan as resources of the Strimzi operator (KafkaTopic, KafkaUser).

    data = chart_data(settings, chain)                     # what the Helm chart renders from
    docs = manifests(settings, chain, cluster="kafka", replicas=3)   # `ketenmonitor acl strimzi`

On Kubernetes the Kafka cluster is usually run by Strimzi: topics and users are declared as
custom resources and the operator creates them, users with SCRAM-SHA-512 passwords in Secrets of
the user's name and the user's ACLs. This module turns what the native path creates into those
resources, so both routes give the same cluster:

- topics: the partner, case and dead-letter topics (streams/topics.py `monitor_topics`) and the
  changelogs and the placement record the workers create before they join the group
  (streams/topics.py `worker_topics`),
  with the same names, partition counts and topic configs; the replication factor is the
  cluster's business (a value of the chart), since the native broker has one node;
- users: one KafkaUser per principal of the access plan (`ketenmonitor.access.plan`), its ACLs
  exactly the plan's grants of that principal. A SCRAM user's principal is `User:<name>`, so the
  principal names must be valid Kubernetes names (lower case, digits, `-` and `.`).

`grants_of` reads a KafkaUser's ACLs back as grants: tests compare them with the native plan.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ketenmonitor.access.plan import AclPlanError, Grant, Principals, access_plan
from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from ketenmonitor.streams.topics import worker_topics

API_VERSION = "kafka.strimzi.io/v1"  # Strimzi 1.x (v1beta2 is no longer served there)
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_K8S_NAME_MAX = 253

# Kafka's AclOperation names (the plan's) <-> Strimzi's spelling of them.
_OPERATIONS = {
    "ALL": "All",
    "READ": "Read",
    "WRITE": "Write",
    "CREATE": "Create",
    "DESCRIBE": "Describe",
    "DESCRIBE_CONFIGS": "DescribeConfigs",
}
_PATTERNS = {"literal": "literal", "prefixed": "prefix"}


class StrimziError(AclPlanError):
    """A name or grant that cannot be expressed as a Strimzi resource."""


@dataclass(frozen=True, slots=True)
class Topic:
    topic_name: str
    partitions: int
    config: tuple[tuple[str, str], ...]

    @property
    def resource_name(self) -> str:
        return kubernetes_name(self.topic_name)


@dataclass(frozen=True, slots=True)
class UserAcl:
    resource_type: str  # topic | group
    name: str
    pattern_type: str  # literal | prefix
    operations: tuple[str, ...]  # Strimzi spelling, sorted


@dataclass(frozen=True, slots=True)
class User:
    name: str
    acls: tuple[UserAcl, ...]


def kubernetes_name(name: str) -> str:
    """A valid resource name for a Kafka name: itself when it is one, else a lower-cased and
    cleaned form with a hash of the original (so that two topic names never share one)."""
    if _K8S_NAME.match(name) and len(name) <= _K8S_NAME_MAX:
        return name
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned[: _K8S_NAME_MAX - 9]}-{digest}" if cleaned else f"topic-{digest}"


def topics(settings: Settings, chain: Chain) -> list[Topic]:
    """Every topic the native path creates: `ketenmonitor topics` plus the workers' changelogs."""
    wanted = worker_topics(settings, chain)
    result = [Topic(name, n, tuple(sorted(config.items()))) for name, n, config in wanted]
    names = [t.resource_name for t in result]
    if len(set(names)) != len(names):
        raise StrimziError(f"two topics map to one resource name: {sorted(names)}")
    return result


def users(plan: Iterable[Grant]) -> list[User]:
    """One KafkaUser per principal, with exactly that principal's grants as ACLs."""
    by_resource: dict[str, dict[tuple[str, str, str], set[str]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for grant in plan:
        kind, _, name = grant.principal.partition(":")
        if kind != "User" or not _K8S_NAME.match(name):
            raise StrimziError(
                f"principal {grant.principal!r}: a KafkaUser needs a lower-case Kubernetes name "
                "(a-z 0-9 - .); choose other user names (--workers, --operator, --partner-format)"
            )
        if grant.operation not in _OPERATIONS:
            raise StrimziError(f"operation {grant.operation} has no Strimzi spelling")
        resource = (grant.kind, grant.name, _PATTERNS[grant.pattern])
        by_resource[name][resource].add(_OPERATIONS[grant.operation])
    return [
        User(
            name,
            tuple(
                UserAcl(kind, resource_name, pattern, tuple(sorted(operations)))
                for (kind, resource_name, pattern), operations in sorted(resources.items())
            ),
        )
        for name, resources in sorted(by_resource.items())
    ]


def grants_of(user: dict[str, Any]) -> set[Grant]:
    """The grants a KafkaUser resource (as rendered) gives its principal."""
    operations = {v: k for k, v in _OPERATIONS.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    principal = f"User:{user['metadata']['name']}"
    grants = set()
    for acl in user["spec"]["authorization"]["acls"]:
        if acl.get("type", "allow") != "allow" or acl.get("host", "*") != "*":
            raise StrimziError(f"{principal}: only ALLOW rules for any host are generated: {acl}")
        resource = acl["resource"]
        for operation in acl["operations"]:
            grants.add(
                Grant(
                    principal,
                    operations[operation],  # type: ignore[arg-type]  # a known operation
                    resource["type"],
                    resource["name"],
                    patterns[resource.get("patternType", "literal")],  # type: ignore[arg-type]
                )
            )
    return grants


def _acl(acl: UserAcl) -> dict[str, Any]:
    return {
        "type": "allow",
        "resource": {"type": acl.resource_type, "name": acl.name, "patternType": acl.pattern_type},
        "host": "*",
        "operations": list(acl.operations),
    }


def chart_data(
    settings: Settings, chain: Chain, principals: Principals | None = None
) -> dict[str, Any]:
    """The chart's files/strimzi.yaml: the settings it was made for, topics and users."""
    plan = access_plan(chain.partner_ids, settings, principals or Principals())
    return {
        "settings": {
            "topicPrefix": settings.topic_prefix,
            "appId": settings.app_id,
            "partitions": settings.partitions,
            "partners": chain.partner_ids,
        },
        "topics": [
            {
                "name": t.resource_name,
                "topicName": t.topic_name,
                "partitions": t.partitions,
                "config": dict(t.config),
            }
            for t in topics(settings, chain)
        ],
        "users": [
            {"name": u.name, "acls": [_acl(a) for a in u.acls]}
            for u in users(plan)
        ],
    }


def manifests(
    settings: Settings,
    chain: Chain,
    cluster: str,
    replicas: int,
    principals: Principals | None = None,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """KafkaTopic and KafkaUser resources for the Strimzi cluster `cluster` (no chart needed)."""
    data = chart_data(settings, chain, principals)
    metadata_extra = {"namespace": namespace} if namespace else {}
    labels = {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "ketenmonitor"}
    resources: list[dict[str, Any]] = []
    for topic in data["topics"]:
        spec = {
            "topicName": topic["topicName"],
            "partitions": topic["partitions"],
            "replicas": replicas,
        }
        if topic["config"]:
            spec["config"] = topic["config"]
        resources.append({
            "apiVersion": API_VERSION,
            "kind": "KafkaTopic",
            "metadata": {"name": topic["name"], **metadata_extra, "labels": labels},
            "spec": spec,
        })
    for user in data["users"]:
        resources.append({
            "apiVersion": API_VERSION,
            "kind": "KafkaUser",
            "metadata": {"name": user["name"], **metadata_extra, "labels": labels},
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": user["acls"]},
            },
        })
    return resources

"""Offline validation of Kubernetes manifests: core kinds with kubernetes-validate's schemas,
custom resources against their CRD's openAPIV3Schema (tests/data/crds/).

    validate_core(doc, "1.27")      # raises jsonschema.ValidationError / SchemaNotFoundError
    CRDS.validate(doc)              # the same for ServiceMonitor, KafkaUser, ...

Both are strict: a field the schema does not know is an error. The API server would prune it
from a custom resource without a word (and kubectl only warns), so a typo in a template would
otherwise go unnoticed. OpenAPI's `nullable` becomes a JSON Schema null type; Kubernetes'
`x-kubernetes-preserve-unknown-fields` keeps an object open; a Go regexp's `^(?i)` becomes
Python's `(?i)^`.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "crds"


def validate_core(doc: dict[str, Any], kubernetes_version: str) -> None:
    kubernetes_validate.validate(doc, kubernetes_version, strict=True)


def strict_schema(schema: Any) -> Any:
    """A CRD schema as strict JSON Schema (see the module docstring)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: strict_schema(v) for k, v in schema.items()}
    pattern = result.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        # Go's regexp takes a flag group anywhere; Python only at the start.
        result["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
    if result.get("nullable") and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if (
        result.get("type") == "object"
        and "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


class CrdSchemas:
    def __init__(self, directory: Path) -> None:
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served"):
                        schema = version["schema"]["openAPIV3Schema"]
                        self.schemas[(f"{group}/{version['name']}", kind)] = schema

    def kinds(self) -> set[tuple[str, str]]:
        return set(self.schemas)

    @cache  # noqa: B019  # one instance for the session
    def validator(self, api_version: str, kind: str) -> jsonschema.Draft4Validator:
        schema = strict_schema(copy.deepcopy(self.schemas[(api_version, kind)]))
        # metadata is the API server's (ObjectMeta); the CRD only says "object".
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        jsonschema.Draft4Validator.check_schema(schema)
        return jsonschema.Draft4Validator(schema)

    def validate(self, doc: dict[str, Any]) -> None:
        key = (doc["apiVersion"], doc["kind"])
        if key not in self.schemas:
            raise KeyError(f"no CRD for {key} in {CRD_DIR}")
        self.validator(*key).validate(doc)


CRDS = CrdSchemas(CRD_DIR)

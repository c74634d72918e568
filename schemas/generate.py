"""Write the JSON Schema files that partners validate against: `python -m schemas.generate`.

The files in schemas/json/ are generated from the pydantic models and checked in; a test fails
when they are out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.events import ChainEventV1

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
SCHEMAS = {"chain-event.v1.schema.json": ChainEventV1}


def render(model: type[ChainEventV1]) -> str:
    schema = model.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, model in SCHEMAS.items():
        (SCHEMA_DIR / name).write_text(render(model), encoding="utf-8")
        print(f"wrote {SCHEMA_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

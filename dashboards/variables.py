"""Template variable builders: a fixed list of choices, or the values a label takes.

    choice("stage", "Fase", "De fase ...", [(s.id, s.label) for s in chain.spec.stages])
    label_choice("district", "Arrondissement", "Het arrondissement van de zaak.",
                 metrics.BACKLOG, include_all=True)

Other Variable fields (include_all, all_value) pass through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dashboards.model import Variable


def choice(
    name: str, label: str, description: str, options: Iterable[tuple[str, str]], **fields: Any
) -> Variable:
    """A fixed list of (value, text) choices, typically ids and Dutch labels from the chain."""
    return Variable(name, label, description, kind="custom", options=tuple(options), **fields)


def label_choice(name: str, label: str, description: str, series: str, **fields: Any) -> Variable:
    """The values that label `name` takes on `series` (a metric, or a selector) right now."""
    definition = f"label_values({series}, {name})"
    return Variable(name, label, description, definition=definition, **fields)

"""What the domain-core tests share: the default chain, a day in seconds, and event folds.

    from core_fixtures import CHAIN, DAY, apply_all, fold_live

    state, net = apply_all(events)     # one case: its final state and its net facts
    totals, states = fold_live(events)  # any cases: live totals, final state per case key
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ketenmonitor.domain.case import CaseEvent, CaseState, apply_event
from ketenmonitor.domain.chain import SECONDS_PER_DAY, load_chain
from ketenmonitor.domain.totals import ChainTotals

CHAIN = load_chain()
DAY = float(SECONDS_PER_DAY)  # event times are floats


def apply_all(events: Iterable[CaseEvent]) -> tuple[CaseState | None, Counter]:
    """The state after `events` and the facts they added net of those they withdrew."""
    state, added, removed = None, Counter(), Counter()
    for event in events:
        applied = apply_event(CHAIN, state, event)
        state = applied.state
        added.update(applied.added)
        removed.update(applied.removed)
    return state, +(added - removed)


def fold_live(events: Iterable[CaseEvent]) -> tuple[ChainTotals, dict[str, CaseState]]:
    """Totals recorded event by event as the worker does, and the final state of every case."""
    totals = ChainTotals(CHAIN)
    states: dict[str, CaseState] = {}
    for event in events:
        state = states.get(event.case_key)
        applied = apply_event(CHAIN, state, event)
        totals.record(applied, new_case=state is None)
        states[event.case_key] = applied.state
    return totals, states

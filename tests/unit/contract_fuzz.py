"""Fuzzed partner messages for the contract tests: hypothesis strategies and a seeded corpus.

    @given(message=messages())                  # (raw bytes, topic organisation, now)
    for raw, topic, now in corpus(seed=7, size=20_000): ...

Four kinds, mixed: valid events built from the chain definition (every optional field present or
not, times anywhere from before the earliest time to past the clock skew); those events mutated
(a field dropped, added, retyped, set to a boundary value or a lax form, a duplicate key, an
escape, a byte flipped, inserted or cut); random JSON values; and values near every boundary of
the contract (lengths 0/1/64/65, revision -1/0/1e6/1e6+1, times a microsecond around both time
limits, a final newline after an identifier, fractions with 6 and 7 digits).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from ketenmonitor.schemas.events import EARLIEST_EVENT_TIME, MAX_CLOCK_SKEW

from ketenmonitor.domain.chain import load_chain

CHAIN = load_chain()
PARTNERS = list(CHAIN.partner_ids)
MILESTONES = {name: (m.organisation, sorted(m.outcomes)) for name, m in CHAIN.milestones.items()}
CASE_TYPES = list(CHAIN.spec.case_types)
DISTRICTS = list(CHAIN.spec.districts)
ALL_OUTCOMES = sorted({o for _, outcomes in MILESTONES.values() for o in outcomes})
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()  # a fixed clock: reproducible
SKEW = MAX_CLOCK_SKEW.total_seconds()
FIELDS = [
    "schema_version",
    "event_id",
    "case_key",
    "organisation",
    "milestone",
    "occurred_at",
    "case_type",
    "district",
    "outcome",
    "revision",
    "retracted",
]
KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"
ID_CHARS = KEY_CHARS.replace("/", "")
# Strings that look almost right, lax forms pydantic accepts, and plain wrong types.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    1.0,
    1.5,
    -0.0,
    1e400,
    10**19,
    -(10**19),
    1_000_000,
    1_000_001,
    "",
    " ",
    "1",
    "3",
    "3.0",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "false",
    "0",
    "null",
    "om",
    "OM",
    "om\n",
    " om",
    "police",
    "om_decision",
    "summons",
    "paid",
    "standard",
    "amsterdam",
    "atlantis",
    "PN1",
    "PN 1",
    "PN1\n",
    "x" * 64,
    "x" * 65,
    "é",
    "\u0000",
    "\ud800",
    [],
    {},
    ["om"],
    {"a": 1},
    "2026-03-02T10:15:00+01:00",
    "2026-03-02T10:15:00",
    "2026-03-02",
    1735725600,
    1735725600.5,
    "1735725600",
]
TIMES = [
    "2026-03-02T10:15:00+01:00",
    "2026-03-02T10:15:00Z",
    "2026-03-02t10:15:00z",
    "2026-03-02 10:15:00Z",
    "2026-03-02T10:15Z",
    "2026-03-02T10:15:00.123456+00:00",
    "2026-03-02T10:15:00.1234567+00:00",
    "2026-03-02T10:15:00.9999995Z",
    "2026-03-02T10:15:00,5Z",
    "2026-03-02T10:15:00+0100",
    "2026-03-02T10:15:00-00:00",
    "2026-03-02T10:15:00+23:59",
    "2026-03-02T10:15:00+24:00",
    "2026-03-02T24:00:00Z",
    "2026-02-29T10:00:00Z",
    "2028-02-29T10:00:00Z",
    "2026-03-02T23:59:60Z",
    "2026-03-02T10:15:00",
    "1999-12-31T23:59:59.999999+00:00",
    "2000-01-01T00:00:00+00:00",
    "2000-01-01T00:59:59+01:00",
    "2000-01-01T01:00:00+01:00",
    "1999-12-31T23:00:00-01:00",
    "2099-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "yesterday",
    "",
]


def iso(seconds: float, offset_minutes: int = 0) -> str:
    zone = timezone(timedelta(minutes=offset_minutes))
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).isoformat()


def boundary_times() -> list[str]:
    earliest = EARLIEST_EVENT_TIME.timestamp()
    latest = NOW + SKEW
    out = []
    for base in (earliest, latest):
        for delta in (-1, -1e-6, 0, 1e-6, 1):
            for offset in (0, 60, -90, 24 * 60 - 1):
                out.append(iso(base + delta, offset))
    return out


# -- building valid events ------------------------------------------------------------------------
def valid_event(rng: random.Random) -> dict[str, Any]:
    milestone = rng.choice(list(MILESTONES))
    organisation, outcomes = MILESTONES[milestone]
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "".join(rng.choice(ID_CHARS) for _ in range(rng.randint(1, 64))),
        "case_key": "".join(rng.choice(KEY_CHARS) for _ in range(rng.randint(1, 64))),
        "organisation": organisation,
        "milestone": milestone,
        "occurred_at": iso(
            rng.uniform(EARLIEST_EVENT_TIME.timestamp(), NOW + SKEW),
            rng.randint(-(24 * 60 - 1), 24 * 60 - 1),
        ),
        "case_type": rng.choice(CASE_TYPES),
        "district": rng.choice(DISTRICTS),
    }
    if outcomes:
        event["outcome"] = rng.choice(outcomes)
    elif rng.random() < 0.2:
        event["outcome"] = None
    if rng.random() < 0.3:
        event["revision"] = rng.randint(0, 1_000_000)
    if rng.random() < 0.2:
        event["retracted"] = rng.random() < 0.5
    if rng.random() < 0.1:  # a retraction may leave the outcome out
        event["retracted"] = True
        event.pop("outcome", None)
    order = list(event)
    rng.shuffle(order)
    return {k: event[k] for k in order} if rng.random() < 0.3 else event


def encode(event: dict[str, Any], rng: random.Random) -> bytes:
    style = rng.random()
    if style < 0.6:
        text = json.dumps(event, separators=(",", ":"))
    elif style < 0.9:
        text = json.dumps(event, indent=rng.choice([None, 1]))
    else:
        text = json.dumps(event, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


# -- mutations ------------------------------------------------------------------------------------
def mutate(event: dict[str, Any], rng: random.Random) -> bytes:
    kind = rng.randrange(12)
    field = rng.choice(FIELDS)
    event = dict(event)
    if kind == 0:
        event.pop(field, None)
    elif kind == 1:
        event[rng.choice(["remark", "name", "bsn", "", "Revision", field.upper()])] = rng.choice(
            ODD_VALUES
        )
    elif kind == 2:
        event[field] = rng.choice(ODD_VALUES)
    elif kind == 3:
        event["occurred_at"] = rng.choice(TIMES + boundary_times())
    elif kind == 4:
        name = rng.choice(["event_id", "case_key"])
        chars = KEY_CHARS if name == "case_key" else ID_CHARS
        length = rng.choice([0, 1, 63, 64, 65, 200])
        event[name] = "".join(rng.choice(chars) for _ in range(length)) + rng.choice(
            ["", "", "\n", " ", "é", "/"]
        )
    elif kind == 5:
        event["revision"] = rng.choice([-1, 0, 1, 999_999, 1_000_000, 1_000_001, 2**63, 2**64])
    elif kind == 6:  # a value of the chain in the wrong place
        pool = PARTNERS + list(MILESTONES) + CASE_TYPES + DISTRICTS + ALL_OUTCOMES
        event[rng.choice(["organisation", "milestone", "case_type", "district", "outcome"])] = (
            rng.choice(pool) + rng.choice(["", "", "", "\n", "_x", " "])
        )
    elif kind == 7:  # a duplicate key at the end, its value good or bad
        raw = encode(event, rng)
        value = rng.choice([event.get(field), *ODD_VALUES[:20]])
        return (
            raw.rstrip()[:-1] + b',"' + field.encode() + b'":' + json.dumps(value).encode() + b"}"
        )
    elif kind == 8:  # an escape in a string
        raw = encode(event, rng)
        return raw.replace(b'"om', b'"\\u006fm', 1).replace(b"PN", b"P\\u004e", 1)
    elif kind == 9:  # a byte changed, inserted or cut
        raw = bytearray(encode(event, rng))
        at = rng.randrange(len(raw))
        choice = rng.randrange(3)
        if choice == 0:
            raw[at] = rng.randrange(256)
        elif choice == 1:
            raw.insert(at, rng.choice(b' \n\t\x00\xff"{}[],:0.-\\eE'))
        else:
            del raw[at]
        return bytes(raw)
    elif kind == 10:  # the outcome rules
        event["milestone"] = rng.choice(list(MILESTONES))
        event["organisation"] = MILESTONES[event["milestone"]][0]
        event["outcome"] = rng.choice([None, *ALL_OUTCOMES, "other"])
        if rng.random() < 0.5:
            event.pop("outcome")
        event["retracted"] = rng.choice([True, False, "yes", 1])
    else:  # truncated or wrapped
        raw = encode(event, rng)
        return rng.choice(
            [
                raw[: rng.randrange(len(raw))],
                b"[" + raw + b"]",
                b" " + raw + b"\n",
                raw + raw,
                b"\xef\xbb\xbf" + raw,
            ]
        )
    return encode(event, rng)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(ODD_VALUES)
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x250)) for _ in range(rng.randrange(10)))
    if kind == 4:
        return None
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [*FIELDS, "x", ""]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(12))}


def message(rng: random.Random) -> tuple[bytes, str | None, float]:
    """One fuzzed message, the organisation of the topic it came from, and the clock."""
    event = valid_event(rng)
    kind = rng.random()
    if kind < 0.3:
        raw = encode(event, rng)
    elif kind < 0.85:
        raw = mutate(event, rng)
    elif kind < 0.95:
        raw = json.dumps(random_json(rng)).encode()
    else:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    topic = rng.choice([event["organisation"]] * 4 + [None, rng.choice(PARTNERS)])
    return raw, topic, NOW


def corpus(seed: int, size: int) -> Iterator[tuple[bytes, str | None, float]]:
    rng = random.Random(seed)
    for _ in range(size):
        yield message(rng)


def messages() -> st.SearchStrategy[tuple[bytes, str | None, float]]:
    """The same generator driven by hypothesis (which then shrinks the seed of a failure)."""
    return st.randoms(use_true_random=False).map(message)

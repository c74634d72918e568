"""import-log's events, byte for byte, for every repeated-milestone rule and tie order.

Two references, on a seeded log with repeats, ties (same minute), ignored activities, local times
across both DST switches, and rows with problems:
- an independent computation (csv, datetime.strptime, zoneinfo, json: nothing of the importer),
- SHA-256 digests of what import_rows produced before it was made faster (commit 233b5d0: one sort
  by a tuple key, a generator and a mapper call per row, strptime's digits converted per cell).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.eventlog_import import Mapping, import_rows

ROOT = Path(__file__).resolve().parents[2]
MAPPING = yaml.safe_load((ROOT / "examples" / "eventlog" / "mapping.yaml").read_text())
CHAIN = load_chain()
FORMAT = "%d-%m-%Y %H:%M"
TIES = ["Eerste zitting", "Vonnis: veroordeling", "Zaak ingeschreven OM", "ZSM-beoordeling"]
BAD = [
    ["Koffie gedronken", None, None],  # unknown activity
    [None, "31-02-2024 09:15", None],  # no such day
    [None, None, "Atlantis"],  # unmapped district
]

# sha256 of the Rows import_rows gave at commit 233b5d0 (see write_log and digest below).
BEFORE = {
    ("first", "chain"): "2a6141f53f1c10a69b70d03c883a5f4b408b61bb9b56f007a522bebdd01f5470",
    ("last", "chain"): "f7c59e15eb8f4744d6fc7a3c3843aca96574932742d646a3a38b2151e6fe6cd9",
    ("all", "chain"): "42f4cfc970089ff495cfdedd5354ebf1deef42d9c8c72ba2aaa78cce384031fa",
    ("first", "file"): "b1eeb15f01e212e46dbe3f3cd36c89ba09b0d735b83ad9c92b391d75891e071a",
    ("last", "list"): "eebd7bb81749f180f6b44b3ebab43e98a15430a2fec35b74a812bd9899065d22",
    ("all", "list"): "9ca70eb5677af02e460c49b7175f29ec941daea2839680b850ba59dcecd67240",
}


def write_log(path: Path, cases: int = 300, seed: int = 7) -> None:
    """Cases of 3-12 activities drawn from the mapping (repeats likely), often two in the same
    minute; times in 2024 (both DST switches), some in the repeated hour of October; bad rows."""
    rng = random.Random(seed)
    activities = [*MAPPING["activities"], *MAPPING["ignore"]]
    case_types = list(MAPPING["case_type"]["values"])
    districts = list(MAPPING["district"]["values"])
    rows = []
    for n in range(cases):
        key = f"{rng.randint(1, 20):02d}-{n:06d}-24"
        ct, d = rng.choice(case_types), rng.choice(districts)
        t = datetime(2024, 1, 1) + timedelta(minutes=rng.randint(0, 330 * 24 * 60))
        for _ in range(rng.randint(3, 12)):
            if rng.random() < 0.7:
                t += timedelta(minutes=rng.randint(1, 40 * 24 * 60))
            stamp = t.strftime(FORMAT)
            if rng.random() < 0.02:
                stamp = f"27-10-2024 02:{rng.randint(0, 59):02d}"  # the hour that comes twice
            rows.append([key, rng.choice(activities), stamp, ct, d])
    for activity, stamp, district in BAD * 3:
        row = list(rng.choice(rows))
        row[1], row[2], row[4] = activity or row[1], stamp or row[2], district or row[4]
        rows.append(row)
    rng.shuffle(rows)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["zaaknummer", "activiteit", "tijdstip", "zaaktype", "arrondissement"])
        writer.writerows(rows)


def mapping_for(repeated: str, ties: str) -> Mapping:
    raw = dict(MAPPING, repeated_milestone=repeated, ties=TIES if ties == "list" else ties)
    return Mapping.model_validate(raw)


def independent(path: Path, repeated: str, ties: str) -> tuple[list[bytes], list[tuple]]:
    """The events (JSON bytes, in replay order) and problems (line, reason), computed directly."""
    zone = ZoneInfo(MAPPING["timestamp"]["timezone"])
    problems, mapped = [], []
    with path.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle, delimiter=";"))[1:]
    for line, (key, activity, stamp, ct, d) in enumerate(lines, start=2):
        if activity in MAPPING["ignore"]:
            continue
        target = MAPPING["activities"].get(activity)
        if target is None:
            problems.append((line, "unknown_activity"))
            continue
        milestone, outcome = (target, None) if isinstance(target, str) else target.values()
        try:
            at = datetime.strptime(stamp, FORMAT).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            problems.append((line, "bad_timestamp"))
            continue
        district = MAPPING["district"]["values"].get(d)
        if district is None:
            problems.append((line, "unknown_value"))
            continue
        tie = {
            "chain": CHAIN.milestones[milestone].rank,
            "file": 0,
            "list": TIES.index(activity) if activity in TIES else len(TIES),
        }[ties]
        case_type = MAPPING["case_type"]["values"][ct]
        mapped.append(((at, tie, line), key, milestone, outcome, case_type, district))
    mapped.sort()
    if repeated != "all":
        chosen: dict = {}
        for m in mapped if repeated == "first" else reversed(mapped):
            chosen.setdefault((m[1], m[2]), m)
        mapped = sorted(chosen.values())
    events, seen = [], {}
    for (at, _, line), key, milestone, outcome, case_type, district in mapped:
        n = seen[(key, milestone)] = seen.get((key, milestone), 0) + 1
        event = {
            "schema_version": 1,
            "event_id": f"{MAPPING['event_id_prefix']}{line}",
            "case_key": key,
            "organisation": CHAIN.milestones[milestone].organisation,
            "milestone": milestone,
            "occurred_at": at.isoformat(),
            "case_type": case_type,
            "district": district,
        }
        if outcome:
            event["outcome"] = outcome
        if n > 1:
            event["occurrence"] = str(n)
        events.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
    return events, problems


def digest(rows: list) -> str:
    out = hashlib.sha256()
    for row in rows:
        out.update(repr((row.line, row.problem, row.raw, row.size)).encode() + b"\n")
    return out.hexdigest()


@pytest.mark.parametrize(("repeated", "ties"), list(BEFORE))
def test_import_rows_equal_an_independent_computation_and_the_previous_output(
    tmp_path, repeated, ties
):
    log = tmp_path / "log.csv"
    write_log(log)
    rows = list(import_rows(log, mapping_for(repeated, ties), CHAIN))
    events, problems = independent(log, repeated, ties)
    assert [r.raw for r in rows if r.raw is not None] == events
    assert [(r.line, r.problem[0]) for r in rows if r.problem] == problems
    assert len(problems) == 6 and len(events) > 1000  # 9 bad rows, 3 of ignored activities
    if repeated == "all":
        assert any(b'"occurrence"' in e for e in events)
    assert digest(rows) == BEFORE[(repeated, ties)]
    # The dict-per-row path (the definition the compiled CSV path is tested against) agrees.
    assert list(import_rows(log, mapping_for(repeated, ties), CHAIN, compiled=False)) == rows

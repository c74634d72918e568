"""An event log imported with the example mapping and run through a real worker gives the lead-time
histograms that a batch computation over the original log gives.

The batch computation below reads the CSV itself (csv, strptime, zoneinfo) and the mapping's
activity table as plain YAML; it shares no code with the importer or the domain core.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from batch_truth import wait_for_truth
from prometheus_client.utils import floatToGoString

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "examples" / "eventlog" / "mapping.yaml"
LEAD = "ketenmonitor_segment_lead_time_seconds"
FORMAT = "%d-%m-%Y %H:%M"

PATHS = [
    ["Aangifte opgenomen", "Verdachte gehoord", "PV ingezonden", "Zaak ingeschreven OM",
     "ZSM-beoordeling", "Sepot"],
    ["Aangifte opgenomen", "PV ingezonden", "Zaak ingeschreven OM", "ZSM-beoordeling",
     "Strafbeschikking uitgevaardigd", "Instroom CJIB", "Brief verstuurd", "Betaald"],
    ["Aangifte opgenomen", "Verdachte gehoord", "PV ingezonden", "Zaak ingeschreven OM",
     "Dagvaarding uitgebracht", "Zaak ingeschreven rechtbank", "Eerste zitting",
     "Zitting aangehouden", "Eerste zitting", "Vonnis: veroordeling",
     "Onherroepelijk: geldboete", "Instroom CJIB", "Aanmaning verstuurd", "Dwangbevel",
     "Oninbaar"],
    ["Aangifte opgenomen", "Verdachte gehoord", "Dossier opgevraagd", "PV ingezonden",
     "Zaak ingeschreven OM", "Dagvaarding uitgebracht", "Zaak ingeschreven rechtbank",
     "Eerste zitting", "Vonnis: vrijspraak"],
    ["Aangifte opgenomen", "Verdachte gehoord", "PV ingezonden", "Zaak ingeschreven OM",
     "Transactie aangeboden", "Instroom CJIB"],  # still open
    ["Aangifte opgenomen", "Verdachte gehoord"],  # still open
]
TIES = {("Zaak ingeschreven OM", "ZSM-beoordeling"), ("Eerste zitting", "Vonnis: veroordeling")}


def write_log(path: Path, mapping: dict, cases: int = 400, seed: int = 31) -> None:
    """Like an export: local times, Dutch names, ignored activities, repeats, ties; shuffled.

    Cases start in 2021-2022 and no path takes more than 15 x 60 days: all times are past.
    """
    rng = random.Random(seed)
    case_types = list(mapping["case_type"]["values"])
    districts = list(mapping["district"]["values"])
    rows = []
    for n in range(cases):
        key = f"{rng.randint(1, 20):02d}-{n:06d}-21"
        ct, d = rng.choice(case_types), rng.choice(districts)
        t = datetime(2021, 1, 4, 8, 0) + timedelta(minutes=rng.randint(0, 500 * 24 * 60))
        previous = None
        for activity in rng.choice(PATHS):
            if (previous, activity) not in TIES or rng.random() < 0.5:
                t += timedelta(minutes=rng.randint(1, 60 * 24 * 60))
            rows.append([key, activity, t.strftime(FORMAT), ct, d])
            previous = activity
    rng.shuffle(rows)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["zaaknummer", "activiteit", "tijdstip", "zaaktype", "arrondissement"])
        writer.writerows(rows)


def batch_lead_times(path: Path, mapping: dict, chain) -> dict:
    """Histogram samples of the segment lead times, computed from the log in one pass."""
    spec = chain.spec
    rank, closures = {}, {c.milestone: set(c.outcomes) for c in spec.closures}
    for partner in spec.partners:
        for m in partner.milestones:
            rank[m.id] = len(rank)
    days = set(spec.lead_time_buckets_days) | {n.within_days for n in spec.norms}
    bounds = sorted(d * 86400 for d in days)
    zone = ZoneInfo(mapping["timestamp"]["timezone"])
    cases: dict[str, dict] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for key, activity, stamp, ct, d in list(csv.reader(handle, delimiter=";"))[1:]:
            target = mapping["activities"].get(activity)
            if target is None:
                assert activity in mapping["ignore"]
                continue
            if isinstance(target, str):
                milestone, outcome = target, None
            else:
                milestone, outcome = target["milestone"], target["outcome"]
            at = datetime.strptime(stamp, FORMAT).replace(tzinfo=zone).timestamp()
            case = cases.setdefault(key, {"ct": ct, "d": d, "m": {}})
            if milestone not in case["m"] or at < case["m"][milestone][0]:
                case["m"][milestone] = (at, outcome)
    samples: Counter = Counter()
    for case in cases.values():
        ct = mapping["case_type"]["values"][case["ct"]]
        d = mapping["district"]["values"][case["d"]]
        times = {m: at for m, (at, _) in case["m"].items()}
        furthest = max(case["m"], key=rank.__getitem__)
        at, outcome = case["m"][furthest]
        closed = at if outcome in closures.get(furthest, ()) else None
        for seg in spec.segments:
            start = times.get(seg.start)
            end = closed if seg.end == "closed" else times.get(seg.end)
            if start is None or end is None or end < start:
                continue
            labels = {"segment": seg.id, "case_type": ct, "district": d}
            lead = end - start
            samples[(f"{LEAD}_count", frozenset(labels.items()))] += 1
            samples[(f"{LEAD}_sum", frozenset(labels.items()))] += lead
            samples[(f"{LEAD}_bucket", frozenset({**labels, "le": "+Inf"}.items()))] += 1
            for b in bounds:
                if lead <= b:
                    le = {**labels, "le": floatToGoString(float(b))}
                    samples[(f"{LEAD}_bucket", frozenset(le.items()))] += 1
    return dict(samples)


def test_an_imported_log_gives_the_lead_times_of_a_batch_computation(
    monitor_env, start_worker, tmp_path
):
    chain = load_chain()
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    log = tmp_path / "zaken-export.csv"
    write_log(log, mapping)
    expected = batch_lead_times(log, mapping, chain)
    assert len(expected) > 500

    worker = start_worker()
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "import-log", str(log), "--mapping",
         str(MAPPING)],
        env={**os.environ, **monitor_env}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 rejected" in result.stdout

    prefix = monitor_env["KETENMONITOR_TOPIC_PREFIX"]
    topics = [f"{prefix}.events.{p}" for p in chain.partner_ids] + [f"{prefix}.cases"]
    wait_until_caught_up(
        monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"], monitor_env["KETENMONITOR_APP_ID"], topics,
        timeout=300,
    )
    expected = {k: v for k, v in expected.items() if v != 0}
    lead_series = {f"{LEAD}_{part}" for part in ("count", "sum", "bucket")}
    wait_for_truth(worker.scrape, expected, lead_series)


# -- mapping rules, without a broker (the --output file path) ---------------------------------
def import_to_file(log: Path, mapping: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "import-log", str(log), "--mapping",
         str(mapping), "--output", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_example_log_imports_cleanly_with_first_repeats_ignores_and_local_time(tmp_path):
    out = tmp_path / "events.jsonl"
    result = import_to_file(MAPPING.parent / "sample_log.csv", MAPPING, out)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times, key=datetime.fromisoformat)
    hearings = [
        e for e in events if e["case_key"] == "09-000002-24" and e["milestone"] == "first_hearing"
    ]
    assert [h["occurred_at"] for h in hearings] == ["2024-12-17T12:30:00+00:00"]  # first, CET
    report = next(e for e in events if e["event_id"] == "sample-2024-41")
    assert report["occurred_at"] == "2024-10-27T00:30:00+00:00"  # 02:30 CEST, the first of two
    assert len(events) == 41


def test_with_all_repeats_every_row_is_an_occurrence_of_its_milestone(tmp_path):
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    mapping["repeated_milestone"] = "all"
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    out = tmp_path / "events.jsonl"
    result = import_to_file(MAPPING.parent / "sample_log.csv", mapping_file, out)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    hearings = [
        e for e in events if e["case_key"] == "09-000002-24" and e["milestone"] == "first_hearing"
    ]
    assert [(h["occurred_at"], h.get("occurrence")) for h in hearings] == [
        ("2024-12-17T12:30:00+00:00", None), (hearings[1]["occurred_at"], "2")
    ]
    assert hearings[1]["occurred_at"] > hearings[0]["occurred_at"]
    assert len(events) > 41


def test_unknown_activities_are_reported_with_their_line_and_not_sent(tmp_path):
    log = tmp_path / "log.csv"
    lines = (MAPPING.parent / "sample_log.csv").read_text().splitlines()
    lines.insert(3, "10-000001-24;Koffie gedronken;09-01-2024 10:00;Politierechter;Amsterdam")
    lines.insert(5, "10-000009-24;Aangifte opgenomen;31-02-2024 10:00;Politierechter;Amsterdam")
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "events.jsonl"
    result = import_to_file(log, MAPPING, out)
    assert result.returncode == 1
    assert f"{log}:4: unknown_activity:" in result.stderr
    assert f"{log}:6: bad_timestamp:" in result.stderr
    assert len(out.read_text().splitlines()) == 41


def test_an_xes_log_gives_the_same_events_as_the_csv_it_was_made_from(tmp_path):
    rows = list(csv.reader((MAPPING.parent / "sample_log.csv").open(), delimiter=";"))[1:]
    traces: dict[str, list] = {}
    for key, activity, stamp, ct, d in rows:
        traces.setdefault(key, []).append((activity, stamp, ct, d))
    zone = ZoneInfo("Europe/Amsterdam")
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', '<log xmlns="http://www.xes-standard.org/">']
    for key, events in traces.items():
        parts.append(f'<trace><string key="concept:name" value="{key}"/>')
        parts.append(f'<string key="zaaktype" value="{events[0][2]}"/>')
        parts.append(f'<string key="arrondissement" value="{events[0][3]}"/>')
        for activity, stamp, _, _ in events:
            at = datetime.strptime(stamp, FORMAT).replace(tzinfo=zone).isoformat()
            parts.append(
                f'<event><string key="concept:name" value="{activity}"/>'
                f'<date key="time:timestamp" value="{at}"/></event>'
            )
        parts.append("</trace>")
    parts.append("</log>")
    xes = tmp_path / "log.xes"
    xes.write_text("\n".join(parts), encoding="utf-8")
    mapping = yaml.safe_load(MAPPING.read_text())
    mapping.update(
        format="xes", case_key="case:concept:name", activity="concept:name",
        timestamp={"column": "time:timestamp"},
    )
    mapping["case_type"]["column"] = "case:zaaktype"
    mapping["district"]["column"] = "case:arrondissement"
    xes_mapping = tmp_path / "xes-mapping.yaml"
    xes_mapping.write_text(yaml.safe_dump(mapping, allow_unicode=True))

    assert import_to_file(xes, xes_mapping, tmp_path / "x.jsonl").returncode == 0
    sample = MAPPING.parent / "sample_log.csv"
    assert import_to_file(sample, MAPPING, tmp_path / "c.jsonl").returncode == 0

    def content(path: Path) -> list:
        events = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted(
            (e["case_key"], e["milestone"], datetime.fromisoformat(e["occurred_at"]),
             e.get("outcome"), e["case_type"], e["district"])
            for e in events
        )

    assert content(tmp_path / "x.jsonl") == content(tmp_path / "c.jsonl")


def test_an_unreadable_log_is_one_line_and_exit_2_with_nothing_written(tmp_path):
    """A user reads what is wrong with the file in one line, not a traceback."""
    latin1 = tmp_path / "latin1.csv"
    text = (MAPPING.parent / "sample_log.csv").read_text(encoding="utf-8")
    latin1.write_bytes(text.replace("Amsterdam", "Den Haag é").encode("latin-1"))
    mapping = yaml.safe_load(MAPPING.read_text())
    mapping.update(format="xes", case_key="case:concept:name", activity="concept:name",
                   timestamp={"column": "time:timestamp"})
    xes_mapping = tmp_path / "xes-mapping.yaml"
    xes_mapping.write_text(yaml.safe_dump(mapping, allow_unicode=True))
    broken = tmp_path / "broken.xes"
    broken.write_text('<?xml version="1.0"?>\n<log><trace><event>\n', encoding="utf-8")
    unclosed = tmp_path / "unclosed.csv"  # a quote opened and never closed: one huge cell
    unclosed.write_text(text.replace(";Amsterdam\n", ';"Amsterdam\n', 1) + "x" * 200_000 + "\n",
                        encoding="utf-8")
    for log, mapping_file, what in ((latin1, MAPPING, "not UTF-8 text"),
                                    (broken, xes_mapping, "not well-formed XES XML"),
                                    (unclosed, MAPPING, "not a readable CSV log")):
        out = tmp_path / f"{log.stem}.jsonl"
        result = import_to_file(log, mapping_file, out)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"ketenmonitor import-log: {log}: {what} ("
        ), result.stderr
        assert not out.exists() or out.read_text() == ""

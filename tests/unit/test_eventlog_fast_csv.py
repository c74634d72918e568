"""import-log's compiled CSV row mapper gives exactly what mapping each row as a dict gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.eventlog_import import import_rows, load_mapping

MAPPING = Path(__file__).resolve().parents[2] / "examples" / "eventlog" / "mapping.yaml"
CHAIN = load_chain()
SAMPLE = (MAPPING.parent / "sample_log.csv").read_text(encoding="utf-8").splitlines()
ODD_ROWS = [
    "",  # a blank row (skipped, but it moves the line numbers of what follows)
    "10-000009-24;Aangifte opgenomen;08-01-2024 09:15;Politierechter",  # a cell short
    " 10-000012-24 ;Aangifte opgenomen;08-01-2024 09:15; Jeugd ;Rotterdam",
    "10-000009-24;Aangifte opgenomen;08-01-2024 09:15;Politierechter;Amsterdam;extra",
    ";Aangifte opgenomen;08-01-2024 09:15;Politierechter;Amsterdam",  # no case key
    "10-000009-24;Koffie gedronken;08-01-2024 09:15;Politierechter;Amsterdam",  # unknown
    "10-000009-24;Aangifte opgenomen;31-02-2024 09:15;Politierechter;Amsterdam",  # no such day
    "10-000009-24;Aangifte opgenomen;08-01-2024;Politierechter;Amsterdam",  # no time
    "10-000009-24;Aangifte opgenomen; 8-1-2024 9:15 ;Politierechter;Amsterdam",
    "10-000009-24;Aangifte opgenomen;31-03-2024 02:30;Politierechter;Amsterdam",  # DST gap
    "10-000009-24;Aangifte opgenomen;08-01-2024 09:15;Onbekend;Amsterdam",  # unmapped type
    "10-000009-24;Aangifte opgenomen;08-01-2024 09:15;;Amsterdam",  # empty type
    '"10-000010-24";"Verdachte gehoord";"09-01-2024 10:00";"Jeugd";"Rotterdam"',
    '10-000011-24;"Aangifte\nopgenomen";08-01-2024 09:15;Jeugd;Rotterdam',  # a quoted newline
]


@pytest.mark.parametrize("seed", range(8))
def test_compiled_and_dict_mapping_give_the_same_rows(tmp_path, seed):
    rng = random.Random(seed)
    lines = SAMPLE[1:] + ODD_ROWS * 2
    rng.shuffle(lines)
    log = tmp_path / "log.csv"
    log.write_text("\n".join([SAMPLE[0], *lines]) + "\n", encoding="utf-8")
    mapping = load_mapping(MAPPING, CHAIN)
    fast = list(import_rows(log, mapping, CHAIN))
    slow = list(import_rows(log, mapping, CHAIN, compiled=False))
    assert fast == slow
    assert any(r.problem for r in fast) and any(r.raw for r in fast)

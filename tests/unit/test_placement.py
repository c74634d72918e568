"""The placement rule (streams/placement.py, ketenmonitor/partitioning.py): Kafka's partitioner
reproduced, both paths landing in one partition, the one-hop key check, the recorded rule, and
the ownership epochs of case changelog records."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from ketenmonitor.streams.changelog import CASE_POSITION_BASE, next_case_position, source_header
from ketenmonitor.streams.placement import (
    PlacementError,
    check_recorded,
    decode_placement,
    encode_placement,
    placement_function,
)
from ketenmonitor.streams.processing import Ingestor, Rejected, Routed
from ketenmonitor.streams.tables import Changelogs, OwnedTables
from pydantic import ValidationError

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.domain.pseudonym import partition_of, pseudonymise
from ketenmonitor.partitioning import kafka_partition, murmur2, partner_message_key
from ketenmonitor.settings import Settings

CHAIN = load_chain()
SAMPLE = json.loads((Path(__file__).parent / "samples" / "valid_event.json").read_text())
SECRET = b"placement-test-key"


def test_murmur2_equals_the_kafka_clients_on_random_keys_of_every_length() -> None:
    rng = random.Random(18)
    for length in range(0, 70):
        for _ in range(40):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF
            assert murmur2(key) & 0x7FFFFFFF == kafka_python_murmur2(key) & 0x7FFFFFFF


def test_kafka_partition_is_the_partition_aiokafka_picks_for_the_key() -> None:
    partitioner = DefaultPartitioner()
    for n in range(2000):
        key = f"PARKET-{n % 13:02d}-{n:06d}-24".encode()
        for partitions in (1, 3, 6, 24):
            every = list(range(partitions))
            assert kafka_partition(key, partitions) == partitioner(key, every, every)


def test_java_reference_values() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints)
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF


def event(case_key: str, n: int = 0) -> bytes:
    return json.dumps({**SAMPLE, "case_key": case_key, "event_id": f"e-{n}"}).encode()


def routed(ingestor: Ingestor, raw: bytes, key: bytes | None) -> Routed:
    result = ingestor.route(raw, SAMPLE["organisation"], message_key=key)
    assert not isinstance(result, Rejected), result
    return result


def test_both_paths_meet_in_one_partition_under_the_case_key_placement() -> None:
    ingestor = Ingestor(CHAIN, SECRET, 6, "case-key")
    for n in range(500):
        case_key = f"PARKET-13-{n:06d}-24"
        # one hop: the partition a partner's Kafka client picks for the case key
        arrives_in = kafka_partition(case_key.encode(), 6)
        # re-keyed: the case-topic partition the worker picks from the body
        by_body = routed(ingestor, event(case_key, n), None)
        assert by_body.partition == arrives_in
        assert by_body.pseudonym == pseudonymise(SECRET, case_key)
        assert case_key not in by_body.payload.decode()  # the case topic never sees the key


def test_the_pseudonym_placement_is_the_old_rule() -> None:
    ingestor = Ingestor(CHAIN, SECRET, 6)
    for n in range(200):
        r = routed(ingestor, event(f"K-{n}", n), None)
        assert r.partition == partition_of(r.pseudonym, 6)


def test_keyed_by_case_only_when_the_key_is_the_case_key_exactly() -> None:
    ingestor = Ingestor(CHAIN, SECRET, 6, "case-key")
    raw = event("PARKET-13-000042-24")
    assert routed(ingestor, raw, b"PARKET-13-000042-24").keyed_by_case
    assert not routed(ingestor, raw, None).keyed_by_case
    assert not routed(ingestor, raw, b"e-0").keyed_by_case  # keyed by event id
    assert not routed(ingestor, raw, b"PARKET-13-000043-24").keyed_by_case
    assert not routed(ingestor, raw, b"parket-13-000042-24").keyed_by_case
    assert not routed(ingestor, raw, b"PARKET-13-000042-24 ").keyed_by_case


def test_unknown_placement_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placement"):
        placement_function("by-moon", 6)  # type: ignore[arg-type]


def test_one_hop_partners_need_the_case_key_placement() -> None:
    with pytest.raises(ValidationError, match="CASE_PLACEMENT=case-key"):
        Settings(one_hop_partners="om", pseudonym_key="x" * 32)
    settings = Settings(one_hop_partners="om, police", case_placement="case-key")
    assert settings.one_hop_partner_ids == {"om", "police"}
    assert Settings().one_hop_partner_ids == frozenset()


def test_a_recorded_placement_refuses_another() -> None:
    check_recorded(None, "case-key", 6)
    check_recorded(("case-key", 6), "case-key", 6)
    with pytest.raises(PlacementError, match="placed by the 'pseudonym' rule over 6"):
        check_recorded(("pseudonym", 6), "case-key", 6)
    with pytest.raises(PlacementError, match="over 6 partitions"):
        check_recorded(("case-key", 6), "case-key", 12)
    assert decode_placement(encode_placement("case-key", 6)) == ("case-key", 6)
    with pytest.raises(PlacementError, match="format version 9"):
        decode_placement(b'{"v": 9}')


def test_partner_message_key() -> None:
    assert partner_message_key(SAMPLE, keyed_by_case=True) == SAMPLE["case_key"].encode()
    assert partner_message_key(SAMPLE, keyed_by_case=False) == SAMPLE["event_id"].encode()
    assert partner_message_key({"case_key": 7}, keyed_by_case=True) is None


def test_case_positions_are_ownership_epochs_above_every_case_topic_offset() -> None:
    assert next_case_position(-1) == CASE_POSITION_BASE + 1  # empty changelog
    assert next_case_position(123_456_789) == CASE_POSITION_BASE + 1  # old offset positions
    assert next_case_position(CASE_POSITION_BASE + 1) == CASE_POSITION_BASE + 2
    assert next_case_position(CASE_POSITION_BASE + 41) == CASE_POSITION_BASE + 42


class _Record:
    def __init__(self, offset: int, key: bytes, value: bytes, position: int) -> None:
        self.offset, self.key, self.value = offset, key, value
        self.headers = source_header(position) if position >= 0 else []


class _Consumer:
    """The calls read_changelogs makes, over fixed records."""

    def __init__(self, logs: dict[TopicPartition, list[_Record]]) -> None:
        self.logs, self.positions = logs, {}

    def assign(self, tps):
        self.positions = {tp: 0 for tp in tps}

    async def end_offsets(self, tps):
        return {tp: len(self.logs.get(tp, [])) for tp in tps}

    async def seek_to_beginning(self, *tps):
        for tp in tps:
            self.positions[tp] = 0

    async def position(self, tp):
        return self.positions[tp]

    async def getmany(self, *tps, timeout_ms=0, max_records=None):
        out = {}
        for tp in tps:
            records = self.logs.get(tp, [])[self.positions[tp] :]
            self.positions[tp] += len(records)
            out[tp] = records
        return out


def test_a_late_write_of_an_earlier_owner_loses_whichever_input_its_events_came_from() -> None:
    logs = Changelogs("app-cases-changelog", "app-ingest-stats-changelog")
    changelog = TopicPartition(logs.cases, 0)
    epoch = CASE_POSITION_BASE
    records = [
        _Record(0, b"a", b"a-legacy", 700),  # a worker from before one hop: case-topic offset
        _Record(1, b"a", b"a-owner-1", epoch + 1),
        _Record(2, b"b", b"b-owner-2", epoch + 2),  # the next owner
        _Record(3, b"a", b"a-owner-2", epoch + 2),
        _Record(4, b"b", b"b-zombie", epoch + 1),  # the earlier owner, thawed
    ]
    tables = OwnedTables("p.cases", logs)
    asyncio.run(tables.restore(_Consumer({changelog: records}), {TopicPartition("p.cases", 0)}))
    assert tables.cases[0] == {b"a": b"a-owner-2", b"b": b"b-owner-2"}
    assert tables.repairs == [(changelog, b"b", b"b-owner-2", epoch + 2)]
    assert tables.highest_source[0] == epoch + 2
    assert next_case_position(tables.highest_source[0]) == epoch + 3


def test_a_one_hop_event_applied_as_routed_equals_the_case_topic_record_applied() -> None:
    """One hop skips the case-topic encoding: the routed event must be exactly what decoding
    the case-topic record gives, and applying either must store the same value."""
    import time

    import orjson
    from ketenmonitor.streams.processing import CaseProcessor, decode_case_event

    from ketenmonitor.domain.chain import SECONDS_PER_DAY
    from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

    end = float(int(time.time()) - 3600)
    cases = simulate_cases(load_scenario(), 400, end - 2 * 365 * SECONDS_PER_DAY, end, seed=4)
    ingestor = Ingestor(CHAIN, SECRET, 6, "case-key")
    processor = CaseProcessor(CHAIN)
    by_event: dict[str, bytes] = {}
    by_record: dict[str, bytes] = {}
    seen = 0
    for event in contract_events(cases, CHAIN, seed=4):
        r = ingestor.route(orjson.dumps(event), event["organisation"], end)
        assert not isinstance(r, Rejected), r
        assert decode_case_event(r.pseudonym, r.payload) == r.event
        a = processor.apply_event(r.event, by_event.get(r.pseudonym))
        b = processor.apply(r.pseudonym, r.payload, by_record.get(r.pseudonym))
        assert a == b
        by_event[r.pseudonym], by_record[r.pseudonym] = a.stored, b.stored
        seen += 1
    assert seen > 2000 and by_event == by_record

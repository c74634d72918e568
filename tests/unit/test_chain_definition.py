"""The chain definition is data: it loads, and a broken one fails with a message that says where."""

from __future__ import annotations

import copy

import pytest
import yaml

from ketenmonitor.domain.chain import (
    DEFAULT_CHAIN_FILE,
    ChainDefinitionError,
    chain_from_mapping,
    load_chain,
)

RAW = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text())


def test_the_default_chain_has_the_four_partners_in_chain_order():
    chain = load_chain()
    assert chain.partner_ids == ["police", "om", "courts", "cjib"]
    ranks = [
        chain.milestone(m).rank
        for m in ("report_registered", "om_decision", "judgment", "collection_closed")
    ]
    assert ranks == sorted(ranks)


def test_every_norm_limit_is_a_lead_time_bucket_boundary():
    chain = load_chain()
    for norm in chain.spec.norms:
        assert float(norm.within_seconds) in chain.lead_time_buckets_seconds


def test_a_partner_can_be_added_without_code():
    raw = copy.deepcopy(RAW)
    raw["partners"].append(
        {
            "id": "probation",
            "label": "Reclassering",
            "milestones": [{"id": "advice_given", "label": "Advies"}],
        }
    )
    raw["stages"].append(
        {
            "id": "probation_advice",
            "label": "Advies",
            "enter": ["advice_given"],
            "exit": ["advice_given"],
        }
    )
    chain = chain_from_mapping(raw)
    assert (
        "probation" in chain.partner_ids
        and chain.stage_organisation["probation_advice"] == "probation"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["stages"][0].update(enter=["no_such_milestone"]),
            "unknown milestone 'no_such_milestone'",
        ),
        (lambda r: r["norms"][0].update(segment="nowhere"), "unknown segment 'nowhere'"),
        (lambda r: r["norms"][0].update(case_types=["aliens"]), "unknown case type 'aliens'"),
        (lambda r: r["closures"][0].update(outcomes=["maybe"]), "unknown outcomes"),
        (lambda r: r["norms"][0].update(within_days=-3), "norms.0.within_days"),
        (lambda r: r["segments"].append(dict(r["segments"][0])), "defined twice"),
        (lambda r: r.update(surprise=1), "surprise"),
    ],
)
def test_an_invalid_chain_definition_fails_with_a_clear_error(mutate, message):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ChainDefinitionError) as info:
        chain_from_mapping(raw, source="test.yaml")
    assert message in str(info.value) and "test.yaml" in str(info.value)


def test_an_unreadable_file_is_a_chain_definition_error(tmp_path):
    with pytest.raises(ChainDefinitionError):
        load_chain(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("partners: [unclosed")
    with pytest.raises(ChainDefinitionError, match="not valid YAML"):
        load_chain(bad)

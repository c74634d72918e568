"""The ACL plan generated from the chain definition, and the Kafka security settings.

Run: .venv/bin/pytest tests/unit/test_access_plan.py
"""

from __future__ import annotations

import pytest
from kafka.errors import SecurityDisabledError
from pydantic import ValidationError

from ketenmonitor.access.kafka_acls import AclApplyError, Scope, apply_plan, to_acl, to_grant
from ketenmonitor.access.plan import AclPlanError, Grant, Principals, access_plan
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.settings import Settings

CHAIN = load_chain()
SETTINGS = Settings(topic_prefix="km", app_id="km-app")
PLAN = access_plan(CHAIN.partner_ids, SETTINGS)
WRITES = {"WRITE", "ALL", "CREATE"}
READS = {"READ", "ALL"}


def rights(principal: str) -> set[Grant]:
    return {g for g in PLAN if g.principal == principal}


def test_every_partner_of_the_chain_gets_one_principal_that_writes_only_its_own_topic() -> None:
    assert len(CHAIN.partner_ids) >= 4
    for partner in CHAIN.partner_ids:
        grants = rights(f"User:{partner}")
        assert {(g.operation, g.name) for g in grants} == {
            ("WRITE", f"km.events.{partner}"),
            ("DESCRIBE", f"km.events.{partner}"),
        }
        assert all(g.pattern == "literal" and g.kind == "topic" for g in grants)


def test_the_workers_read_partner_topics_and_own_the_internal_ones() -> None:
    grants = rights("User:ketenmonitor")
    for partner in CHAIN.partner_ids:
        assert Grant("User:ketenmonitor", "READ", "topic", f"km.events.{partner}") in grants
        assert not any(g.name == f"km.events.{partner}" and g.operation in WRITES for g in grants)
    assert Grant("User:ketenmonitor", "ALL", "topic", "km.cases") in grants
    assert Grant("User:ketenmonitor", "ALL", "topic", "km-app-", "prefixed") in grants
    assert Grant("User:ketenmonitor", "READ", "group", "km-app") in grants
    assert Grant("User:ketenmonitor", "WRITE", "topic", "km.dead-letter") in grants


def test_only_operators_read_the_dead_letter_topic() -> None:
    readers = {g.principal for g in PLAN if g.name == "km.dead-letter" and g.operation in READS}
    assert readers == {"User:operator"}
    several = access_plan(CHAIN.partner_ids, SETTINGS, Principals(operators=("ops1", "ops2")))
    readers = {g.principal for g in several if g.name == "km.dead-letter" and g.operation in READS}
    assert readers == {"User:ops1", "User:ops2"}


def test_nobody_but_the_workers_reads_partner_or_internal_topics() -> None:
    for g in PLAN:
        if g.operation in READS and g.name != "km.dead-letter":
            assert g.principal == "User:ketenmonitor", g


def test_partner_user_names_can_follow_a_format() -> None:
    plan = access_plan(["police"], SETTINGS, Principals(partner_format="partner-{partner}"))
    writers = {g.principal for g in plan if g.operation == "WRITE"}
    assert writers == {"User:partner-police", "User:ketenmonitor"}  # the workers: dead letters


@pytest.mark.parametrize(
    "principals",
    [
        Principals(workers="police"),  # a partner sharing the workers' login
        Principals(operators=("ketenmonitor",)),
        Principals(partner_format="everyone"),  # all partners one login
        Principals(workers="bad name"),
    ],
)
def test_roles_cannot_share_a_principal(principals: Principals) -> None:
    with pytest.raises(AclPlanError):
        access_plan(CHAIN.partner_ids, SETTINGS, principals)


def test_the_workers_prefix_may_not_cover_partner_topics() -> None:
    with pytest.raises(AclPlanError, match="prefix"):
        access_plan(CHAIN.partner_ids, Settings(topic_prefix="km-app-x", app_id="km-app"))


def test_grants_round_trip_through_kafka_acls() -> None:
    assert all(to_grant(to_acl(g)) == g for g in PLAN)


def test_prune_scope_is_ketenmonitors_own_resources() -> None:
    scope = Scope.of(SETTINGS)
    assert all(scope.covers(g) for g in PLAN)
    assert not scope.covers(Grant("User:x", "READ", "topic", "other.topic"))
    assert not scope.covers(Grant("User:x", "READ", "group", "other-group"))


def test_a_broker_without_authorizer_is_one_message_not_a_traceback() -> None:
    class NoAuthorizer:  # what kafka-python's admin client does against such a broker
        def describe_acls(self, acl_filter: object) -> None:
            raise SecurityDisabledError("No Authorizer is configured on the broker")

    with pytest.raises(AclApplyError, match=r"no authorizer.*KAFKA_SECURITY=scram"):
        apply_plan(NoAuthorizer(), PLAN, Scope.of(SETTINGS))  # type: ignore[arg-type]


# -- settings ----------------------------------------------------------------------------------


def test_plaintext_needs_no_credentials_and_gives_no_security_settings() -> None:
    assert Settings().kafka_python_security() == {}


def test_sasl_settings_for_kafka_python_and_the_password_stays_out_of_the_repr(tmp_path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username="police",
        kafka_password="s3cret-password-x",
    )
    assert settings.kafka_python_security() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "police",
        "sasl_plain_password": "s3cret-password-x",
    }
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file-123\n")
    from_file = Settings(
        kafka_security_protocol="SASL_SSL", kafka_username="om", kafka_password_file=secret_file
    )
    config = from_file.kafka_python_security()
    assert config["sasl_plain_password"] == "from-a-file-123"
    assert config["ssl_context"] is not None


def test_credentials_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("KETENMONITOR_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KETENMONITOR_KAFKA_USERNAME", "ketenmonitor")
    monkeypatch.setenv("KETENMONITOR_KAFKA_PASSWORD", "worker-password-1")
    assert Settings().kafka_python_security()["sasl_plain_username"] == "ketenmonitor"


@pytest.mark.parametrize(
    "values",
    [
        {"kafka_security_protocol": "SASL_PLAINTEXT"},  # no credentials
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_username": "x"},  # no password
        {"kafka_username": "x", "kafka_password": "y"},  # credentials that would go unused
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_username": "x",
            "kafka_password": "y",
            "kafka_password_file": "/dev/null",
        },
    ],
)
def test_incomplete_or_unused_credentials_fail_at_start_up(values: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)


def test_a_partner_user_format_with_an_unknown_field_is_a_plan_error_not_a_crash():
    with pytest.raises(AclPlanError, match="partner user format"):
        Principals(partner_format="{bad}").partner("police")

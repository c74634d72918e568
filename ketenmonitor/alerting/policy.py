"""The alerting policy: thresholds that are not norms, loaded from YAML.

    policy = load_policy()                         # ketenmonitor/alerting/policy.yaml
    policy = load_policy(Path("my-policy.yaml"))   # an operator's own
    policy.stale_after("cjib")                      -> "1d"

Norm limits and targets are not here: they come from the chain definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ketenmonitor.alerting.durations import parse_duration
from ketenmonitor.domain.chain import IDENTIFIER, Chain

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policy.yaml"
Severity = Literal["critical", "warning", "info"]


class PolicyError(ValueError):
    """The alerting policy is invalid or does not fit the chain; the message says where."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class Owners(_Model):
    chain: str = Field(pattern=IDENTIFIER)
    monitor: str = Field(pattern=IDENTIFIER)


class Throughput(_Model):
    window: str
    for_: str = Field(alias="for")
    max_outflow_ratio: float = Field(gt=0, le=1)
    min_inflow_cases: int = Field(ge=0)
    severity: Severity
    _check = field_validator("window", "for_")(_duration)


class BurnRateTier(_Model):
    name: str = Field(pattern=r"^[a-z]+$")
    severity: Severity
    long: str
    short: str
    factor: float = Field(gt=0)
    for_: str = Field(alias="for")
    _check = field_validator("long", "short", "for_")(_duration)


class BurnRate(_Model):
    min_completed_cases: int = Field(ge=0)
    tiers: list[BurnRateTier] = Field(min_length=1)


class Forecast(_Model):
    trend_window: str
    horizon: str
    for_: str = Field(alias="for")
    severity: Severity
    backlog_limits: dict[str, int] = Field(default_factory=dict)
    _check = field_validator("trend_window", "horizon", "for_")(_duration)


class StaleFeed(_Model):
    after: str
    per_partner: dict[str, str] = Field(default_factory=dict)
    severity: Severity
    _check = field_validator("after")(_duration)

    @field_validator("per_partner")
    @classmethod
    def _durations(cls, value: dict[str, str]) -> dict[str, str]:
        for duration in value.values():
            parse_duration(duration)
        return value


class DeadLetter(_Model):
    window: str
    max_reject_ratio: float = Field(gt=0, lt=1)
    min_events: int = Field(ge=0)
    for_: str = Field(alias="for")
    severity: Severity
    _check = field_validator("window", "for_")(_duration)


class Monitor(_Model):
    worker_down_for: str
    lag_window: str
    lag_for: str
    min_lag_messages: int = Field(ge=0)
    no_commit_after: str
    _check = field_validator("worker_down_for", "lag_window", "lag_for", "no_commit_after")(
        _duration
    )


class AlertPolicy(_Model):
    owners: Owners
    throughput: Throughput
    burn_rate: BurnRate
    share_windows: list[str] = Field(min_length=1)
    forecast: Forecast
    stale_feed: StaleFeed
    dead_letter: DeadLetter
    monitor: Monitor
    _check = field_validator("share_windows")(lambda v: [_duration(d) for d in v])

    def stale_after(self, partner: str) -> str:
        return self.stale_feed.per_partner.get(partner, self.stale_feed.after)

    def check_against(self, chain: Chain) -> None:
        """Fail early when the policy names a partner or stage the chain does not have."""
        problems = []
        for partner in self.stale_feed.per_partner:
            if partner not in chain.partner_ids:
                problems.append(f"stale_feed.per_partner names unknown partner {partner!r}")
        for stage in self.forecast.backlog_limits:
            if stage not in chain.stage_ids:
                problems.append(f"forecast.backlog_limits names unknown stage {stage!r}")
        for owner in (self.owners.chain, self.owners.monitor):
            if owner in chain.partner_ids:
                problems.append(f"owner {owner!r} is also a partner id: alerts would mix")
        if problems:
            raise PolicyError("alerting policy does not fit the chain: " + "; ".join(problems))


def load_policy(path: Path | str | None = None) -> AlertPolicy:
    path = Path(path or DEFAULT_POLICY_FILE)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        return AlertPolicy.model_validate(raw)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read alerting policy: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"{path}: invalid alerting policy: {exc}") from exc

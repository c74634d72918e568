"""Keyed pseudonyms for case keys.

    pseudonymise(b"operator-held secret", "PARKET-13-123456-24") -> "3f1c..." (32 hex characters)
    to_pseudonym = Pseudonymiser(secret); to_pseudonym(case_key)   # the same, for a hot loop

A case key (parketnummer, SKN) identifies a person once linked, so Ketenmonitor keeps only an HMAC
of it. The same key gives the same pseudonym in every partner's events, which is what lets the
monitor follow a case across organisations; without the secret nobody can go back from pseudonym to
key, and the holder of the secret can go forward to match a pseudonym to its own case numbers.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX_CHARS = 32  # 128 bits: collisions are negligible at tens of millions of cases


class Pseudonymiser:
    """HMAC-SHA256 of case keys under one secret, truncated to PSEUDONYM_HEX_CHARS hex characters.

    The keyed HMAC state is computed once; each call copies it (about half the cost of
    `hmac.new` per key, which derives the padded keys again).
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the pseudonymisation secret is empty")
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def __call__(self, case_key: str) -> str:
        mac = self._keyed.copy()
        mac.update(case_key.encode("utf-8"))
        return mac.hexdigest()[:PSEUDONYM_HEX_CHARS]


def pseudonymise(secret: bytes, case_key: str) -> str:
    """One pseudonym; for many under the same secret, keep a `Pseudonymiser`."""
    return Pseudonymiser(secret)(case_key)


def partition_of(pseudonym: str, partitions: int) -> int:
    """The case-state partition of a pseudonymous case key (its leading bits are uniform)."""
    return int(pseudonym[:8], 16) % partitions

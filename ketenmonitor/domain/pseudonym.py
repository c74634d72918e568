"""Keyed pseudonyms for case keys.

    pseudonymise(b"operator-held secret", "PARKET-13-123456-24") -> "3f1c..." (32 hex characters)

A case key (parketnummer, SKN) identifies a person once linked, so Ketenmonitor keeps only an HMAC of
it. The same key gives the same pseudonym in every partner's events, which is what lets the monitor
follow a case across organisations; without the secret nobody can go back from pseudonym to key, and
the holder of the secret can go forward to match a pseudonym to its own case numbers.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX_CHARS = 32  # 128 bits: collisions are negligible at tens of millions of cases


def pseudonymise(secret: bytes, case_key: str) -> str:
    if not secret:
        raise ValueError("the pseudonymisation secret is empty")
    digest = hmac.new(secret, case_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX_CHARS]


def partition_of(pseudonym: str, partitions: int) -> int:
    """The case-state partition of a pseudonymous case key (its leading bits are uniform)."""
    return int(pseudonym[:8], 16) % partitions

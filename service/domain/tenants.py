"""Tenant credentials: tokens are random, shown once, stored only as a hash, compared in constant time.

A tenant may hold several live tokens at once: after a rotation the previous one keeps working until the
end of the grace period the admin chose, so Okta or Entra can be updated without a gap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "scimsync_"


@dataclass(frozen=True)
class ActiveToken:
    id: str
    token_hash: bytes
    expires_at: float | None  # epoch seconds; None: until rotated away or revoked


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    enabled: bool
    tokens: tuple[ActiveToken, ...] = ()
    rate_limit_per_second: float | None = None  # None: the process default (service/domain/ratelimit.py)
    rate_limit_burst: int | None = None

    def token_for(self, token: str, now: float) -> ActiveToken | None:
        """The live token this bearer value is, if any. Every candidate is compared (constant time each, no early
        exit), so the answer's timing says nothing about which token came close."""
        wanted, found = hash_token(token), None
        for candidate in self.tokens:
            if hmac.compare_digest(wanted, candidate.token_hash) and (
                candidate.expires_at is None or candidate.expires_at > now
            ):
                found = candidate
        return found


def new_token() -> str:
    # 256 bits of entropy: a plain SHA-256 is then as good as a slow KDF, and fast on every request.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str, token_hash: bytes) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)

"""Tenant credentials: tokens are random, shown once, stored only as a hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "scimsync_"


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    enabled: bool
    token_hash: bytes


def new_token() -> str:
    # 256 bits of entropy: a plain SHA-256 is then as good as a slow KDF, and fast on every request.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str, token_hash: bytes) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)

"""Secrets: generated with `secrets`, stored only as SHA-256, compared in constant time.

Tokens are 256-bit random strings, so a plain SHA-256 (no salt, no KDF) is enough: there is
nothing to brute-force. The enrollment token also carries the fingerprint of the TUF root,
so an agent can check the root it receives at enrollment (no trust on first use).
"""

import hashlib
import hmac
import secrets

from uptend.protocol.tokens import ADMIN_PREFIX, AGENT_PREFIX, ENROLL_PREFIX

__all__ = ["ADMIN_PREFIX", "AGENT_PREFIX", "ENROLL_PREFIX", "digest", "new_secret", "same_digest"]


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_enroll_token(root_fingerprint: str) -> str:
    return f"{new_secret(ENROLL_PREFIX)}.{root_fingerprint}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

"""API keys and login tokens: generation, hashing and signatures (pure, no I/O).

Keys are 32 random bytes, so a plain SHA-256 is enough to store them: a slow password hash
protects guessable secrets, and nothing about a 256-bit random key is guessable. Login tokens
are HS256 JWTs (Flatpeak's `/login` answers a JWT) signed with `MF_API_TOKEN_SECRET`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

KEY_PREFIXES = {False: "sk_test_", True: "sk_live_"}
TOKEN_ISSUER = "meterflow"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and mode every query and write is scoped to."""

    account_id: str
    live_mode: bool
    key_id: str


def new_api_key(live_mode: bool) -> str:
    return KEY_PREFIXES[live_mode] + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return f"key_{secrets.token_hex(12)}"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_mode(key: str) -> bool | None:
    """The mode a key's prefix claims (True = live), or None for something that is not a key."""
    for live_mode, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return live_mode
    return None


def display_prefix(key: str) -> str:
    """Enough of a key to recognise it in `meterflow keys list`, not enough to use it."""
    return key[:14]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def sign_token(principal: Principal, *, now: int, ttl_seconds: int, secret: str) -> str:
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": principal.key_id,
        "account_id": principal.account_id,
        "live_mode": principal.live_mode,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_HEADER}.{body}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{_HEADER}.{body}.{_b64(signature)}"


class TokenError(ValueError):
    """A bearer token that is malformed, forged, or outside its validity window."""


def verify_token(token: str, *, now: int, secret: str) -> Principal:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token")
    header, body, signature = parts
    expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        claims: dict[str, Any] = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("malformed token") from None
    if header != _HEADER or not hmac.compare_digest(expected, given):
        raise TokenError("bad token signature")
    try:
        if claims["iss"] != TOKEN_ISSUER or not claims["nbf"] <= now < claims["exp"]:
            raise TokenError("token expired or not yet valid")
        return Principal(
            account_id=str(claims["account_id"]),
            live_mode=bool(claims["live_mode"]),
            key_id=str(claims["sub"]),
        )
    except (KeyError, TypeError):
        raise TokenError("malformed token claims") from None

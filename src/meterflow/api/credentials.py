"""API keys and login tokens: generation, hashing and signatures (pure, no I/O).

Keys are 32 random bytes, so a plain SHA-256 is enough to store them: a slow password hash
protects guessable secrets, and nothing about a 256-bit random key is guessable. Login tokens
are HS256 JWTs (Flatpeak's `/login` answers a JWT) signed with `MF_API_TOKEN_SECRET`, encoded and
checked by PyJWT (docs/architecture.md, "Libraries and what we keep by hand").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

KEY_PREFIXES = {False: "sk_test_", True: "sk_live_"}
TOKEN_ISSUER = "meterflow"
TOKEN_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and mode every query and write is scoped to."""

    account_id: str
    live_mode: bool
    key_id: str


def new_api_key(live_mode: bool) -> str:
    return KEY_PREFIXES[live_mode] + secrets.token_urlsafe(32)


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
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)


class TokenError(ValueError):
    """A bearer token that is malformed, forged, or outside its validity window."""


# PyJWT checks the signature, the algorithm (only HS256: no `none`, no key confusion), the issuer
# and that the claims are there; the validity window is ours because PyJWT reads the wall clock
# and the core takes `now` from the caller (the API's injectable clock).
_DECODE_OPTIONS: jwt.types.Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "require": ["iss", "sub", "nbf", "exp", "account_id", "live_mode"],
}


def verify_token(token: str, *, now: int, secret: str) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            issuer=TOKEN_ISSUER,
            options=_DECODE_OPTIONS,
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise TokenError("bad token signature") from None
    except jwt.InvalidIssuerError:
        raise TokenError("token from another issuer") from None
    except jwt.InvalidTokenError:
        raise TokenError("malformed token") from None
    try:
        if not claims["nbf"] <= now < claims["exp"]:
            raise TokenError("token expired or not yet valid")
    except TypeError:
        raise TokenError("malformed token claims") from None
    return Principal(
        account_id=str(claims["account_id"]),
        live_mode=bool(claims["live_mode"]),
        key_id=str(claims["sub"]),
    )

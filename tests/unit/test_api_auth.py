"""API keys, login tokens and the rate limiter (pure parts of the API's auth)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from meterflow.api import create_api
from meterflow.api.auth import principal_for_token
from meterflow.api.credentials import (
    Principal,
    TokenError,
    display_prefix,
    hash_api_key,
    key_mode,
    new_api_key,
    sign_token,
    verify_token,
)
from meterflow.api.errors import ApiError
from meterflow.api.ratelimit import RateLimiter
from meterflow.settings import Settings

WHO = Principal(account_id="acc_1", live_mode=True, key_id="key_1")
SECRET = "s" * 32  # RFC 7518 §3.2: an HS256 key as long as the hash; PyJWT warns below that
OTHER = "o" * 32
# Signed by the hand-written HS256 code before PyJWT: tokens issued before the switch stay valid.
BEFORE_PYJWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJtZXRlcmZsb3ciLCJzdWIiOiJrZXlfMSIsImFjY291bnRf"
    "aWQiOiJhY2NfMSIsImxpdmVfbW9kZSI6dHJ1ZSwiaWF0IjoxMDAwLCJuYmYiOjEwMDAsImV4cCI6MTA2MH0."
    "vC9haG0ltWfuNo4_49YrKjLxXEX2WjSYLo6SOtcW2vw"
)


def test_keys_carry_their_mode_and_hash_stably() -> None:
    live, test = new_api_key(True), new_api_key(False)
    assert live.startswith("sk_live_")
    assert test.startswith("sk_test_")
    assert key_mode(live) is True
    assert key_mode(test) is False
    assert key_mode("pk_live_x") is None
    assert len(live) > 40
    assert new_api_key(True) != live
    assert hash_api_key(live) == hash_api_key(live)
    assert hash_api_key(live) != hash_api_key(test)
    assert live not in hash_api_key(live)
    assert display_prefix(live) == live[:14]


def test_token_is_byte_identical_to_the_hand_written_one() -> None:
    assert sign_token(WHO, now=1000, ttl_seconds=60, secret=SECRET) == BEFORE_PYJWT
    assert verify_token(BEFORE_PYJWT, now=1000, secret=SECRET) == WHO


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_alg_none_and_other_issuers_are_refused() -> None:
    claims = jwt.decode(BEFORE_PYJWT, options={"verify_signature": False})
    with pytest.raises(TokenError, match="signature"):
        verify_token(_unsigned({"alg": "none", "typ": "JWT"}, claims), now=1000, secret=SECRET)
    hs512 = jwt.encode(claims, SECRET + SECRET, algorithm="HS512")
    with pytest.raises(TokenError, match="signature"):
        verify_token(hs512, now=1000, secret=SECRET + SECRET)
    foreign = jwt.encode({**claims, "iss": "someone-else"}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="issuer"):
        verify_token(foreign, now=1000, secret=SECRET)
    for missing in ("account_id", "exp"):
        partial = {k: v for k, v in claims.items() if k != missing}
        token = jwt.encode(partial, SECRET, algorithm="HS256")
        with pytest.raises(TokenError, match="malformed"):
            verify_token(token, now=1000, secret=SECRET)
    odd = jwt.encode({**claims, "nbf": "soon"}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="claims"):
        verify_token(odd, now=1000, secret=SECRET)


def test_token_round_trip() -> None:
    token = sign_token(WHO, now=1000, ttl_seconds=60, secret=SECRET)
    assert verify_token(token, now=1000, secret=SECRET) == WHO
    assert verify_token(token, now=1059, secret=SECRET) == WHO


@pytest.mark.parametrize(
    ("now", "secret", "message"),
    [(1060, SECRET, "expired"), (999, SECRET, "expired"), (1000, OTHER, "signature")],
)
def test_token_rejected_outside_its_window_or_with_another_secret(
    now: int, secret: str, message: str
) -> None:
    token = sign_token(WHO, now=1000, ttl_seconds=60, secret=SECRET)
    with pytest.raises(TokenError, match=message):
        verify_token(token, now=now, secret=secret)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x.y.z.w", "..."])
def test_malformed_tokens_are_token_errors(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(token, now=0, secret=SECRET)


def test_tampered_claims_fail_the_signature() -> None:
    header, _, signature = sign_token(WHO, now=1000, ttl_seconds=60, secret=SECRET).split(".")
    other = sign_token(
        Principal("acc_2", True, "key_1"), now=1000, ttl_seconds=60, secret=SECRET
    ).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_token(f"{header}.{other}.{signature}", now=1000, secret=SECRET)


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_second=10, burst=3)
    assert [limiter.take("k", 0.0) for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("k", 0.0)
    assert wait == pytest.approx(0.1)
    assert limiter.take("other", 0.0) == 0  # per key
    assert limiter.take("k", 0.1) == 0  # one token refilled
    assert limiter.take("k", 0.1) > 0
    assert limiter.take("k", 10.0) == 0  # refilled, capped at the burst
    assert [limiter.take("k", 10.0) for _ in range(3)][-1] > 0
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(2.5) == "3"


class _Keys:
    """A pool holding one active key: WHO's."""

    async def fetchrow(self, query: str, key_id: str) -> dict[str, object] | None:
        assert "revoked_at IS NULL" in query
        if key_id != WHO.key_id:
            return None
        return {"id": WHO.key_id, "account_id": WHO.account_id, "live_mode": WHO.live_mode}


def _context() -> Any:
    settings = SimpleNamespace(api_token_secret=SECRET, api_key_cache_seconds=30)
    return SimpleNamespace(
        settings=settings,
        clock=lambda: datetime.fromtimestamp(1000, UTC),
        monotonic=lambda: 0.0,
        db=_Keys,
        key_cache={},
    )


def test_a_token_acts_only_for_its_own_keys_account_and_mode() -> None:
    ctx = _context()
    own = sign_token(WHO, now=1000, ttl_seconds=60, secret=SECRET)
    assert asyncio.run(principal_for_token(ctx, own)) == WHO
    # signed with the right secret, but claiming another account or mode for WHO's key
    for forged in (replace(WHO, account_id="acc_2"), replace(WHO, live_mode=False)):
        token = sign_token(forged, now=1000, ttl_seconds=60, secret=SECRET)
        with pytest.raises(ApiError) as refused:
            asyncio.run(principal_for_token(ctx, token))
        assert refused.value.status == 401
    unknown = sign_token(replace(WHO, key_id="key_2"), now=1000, ttl_seconds=60, secret=SECRET)
    with pytest.raises(ApiError):
        asyncio.run(principal_for_token(ctx, unknown))


def test_an_unset_token_secret_is_random_per_process_and_said_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A known default secret would let anyone mint a token for a known key id."""
    monkeypatch.delenv("MF_API_TOKEN_SECRET", raising=False)
    first, second = Settings(), Settings()
    assert first.api_token_secret != second.api_token_secret
    assert len(first.api_token_secret) >= 32
    assert first.api_token_secret not in repr(first)
    with caplog.at_level(logging.WARNING, logger="meterflow.api"):
        create_api(first, start_clients=False)
    assert [r.getMessage() for r in caplog.records] == ["api_token_secret_random"]

    caplog.clear()
    monkeypatch.setenv("MF_API_TOKEN_SECRET", OTHER)
    with caplog.at_level(logging.WARNING, logger="meterflow.api"):
        create_api(Settings(), start_clients=False)
    assert caplog.records == []
    monkeypatch.setenv("MF_API_TOKEN_SECRET", "too-short")
    with pytest.raises(ValidationError, match="api_token_secret"):
        Settings()

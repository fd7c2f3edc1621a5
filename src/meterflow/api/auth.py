"""Who is calling: API keys and login tokens → a `Principal`, plus the per-key rate limit.

Key lookups are cached for `MF_API_KEY_CACHE_SECONDS` (default 5 s), so a revoked key (and every
token issued from it) stops working within that time, without a database query per request.
"""

from __future__ import annotations

import base64

from aiohttp import web

from meterflow.api import repository
from meterflow.api.context import CONTEXT, PRINCIPAL, ApiContext
from meterflow.api.credentials import (
    Principal,
    TokenError,
    hash_api_key,
    key_mode,
    sign_token,
    verify_token,
)
from meterflow.api.errors import ApiError, Handler
from meterflow.api.ratelimit import RateLimiter
from meterflow.api.schemas import LoginResponse

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/login"})
_BEARER = "bearer "


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def _cached(ctx: ApiContext, cache_key: str, load: repository.Loader) -> Principal | None:
    now = ctx.monotonic()
    hit = ctx.key_cache.get(cache_key)
    if hit is not None and hit[1] > now:
        return hit[0]
    principal = await load()
    if len(ctx.key_cache) > 100_000:
        ctx.key_cache.clear()
    ctx.key_cache[cache_key] = (principal, now + ctx.settings.api_key_cache_seconds)
    return principal


async def principal_for_key(ctx: ApiContext, key: str) -> Principal | None:
    if key_mode(key) is None:
        return None
    key_hash = hash_api_key(key)
    return await _cached(
        ctx, key_hash, lambda: repository.principal_for_key_hash(ctx.db(), key_hash)
    )


async def principal_for_token(ctx: ApiContext, token: str) -> Principal:
    try:
        claimed = verify_token(
            token, now=int(ctx.clock().timestamp()), secret=ctx.settings.api_token_secret
        )
    except TokenError as exc:
        raise unauthorized(f"invalid bearer token: {exc}") from None

    principal = await _cached(
        ctx,
        "id:" + claimed.key_id,
        lambda: repository.principal_for_key_id(ctx.db(), claimed.key_id),
    )
    if principal is None:
        raise unauthorized("the API key this token was issued for has been revoked")
    if principal != claimed:  # the account and mode are the key's, never only the token's
        raise unauthorized("invalid bearer token: it does not match its API key")
    return principal


async def authenticate(ctx: ApiContext, header: str | None) -> Principal:
    if not header:
        raise unauthorized("missing `Authorization: Bearer <api key or token>` header")
    if not header.lower().startswith(_BEARER):
        raise unauthorized("the Authorization header must use the Bearer scheme")
    credential = header[len(_BEARER) :].strip()
    if not credential.isascii():  # keys and tokens are ASCII; bytes not UTF-8 were a 500
        raise unauthorized("unknown or revoked API key, or a bad token")
    if key_mode(credential) is not None:
        principal = await principal_for_key(ctx, credential)
        if principal is None:
            raise unauthorized("unknown or revoked API key")
        return principal
    return await principal_for_token(ctx, credential)


def check_rate(ctx: ApiContext, limiter: RateLimiter, principal: Principal) -> None:
    wait = limiter.take(principal.key_id, ctx.monotonic())
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this API key; retry in {wait:.2f} s",
            headers={"Retry-After": RateLimiter.retry_after_header(wait)},
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.match_info.http_exception is not None:
        return await handler(request)
    ctx = request.app[CONTEXT]
    principal = await authenticate(ctx, request.headers.get("Authorization"))
    check_rate(ctx, ctx.limiter, principal)
    request[PRINCIPAL] = principal
    return await handler(request)


def _basic_credentials(header: str | None) -> tuple[str, str]:
    """(account_id, api_key) from a Basic header.

    No header at all is a 401 with a Basic challenge (RFC 9110: the client has not tried yet);
    credentials that were sent and are wrong stay 403 `bad_credentials`, as Flatpeak answers.
    """
    if not header:
        raise ApiError(
            401,
            "unauthorized",
            "send `Authorization: Basic base64(account_id:api_key)`",
            headers={"WWW-Authenticate": 'Basic realm="meterflow"'},
        )
    if not header.lower().startswith("basic "):
        raise ApiError(
            403,
            "bad_credentials",
            "send `Authorization: Basic base64(account_id:api_key)`",
            headers={"WWW-Authenticate": 'Basic realm="meterflow"'},
        )
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 underneath
        raise ApiError(403, "bad_credentials", "malformed Basic credentials") from None
    account_id, sep, api_key = decoded.partition(":")
    if not sep:
        raise ApiError(403, "bad_credentials", "Basic credentials must be account_id:api_key")
    return account_id, api_key


async def login(request: web.Request) -> web.Response:
    """Flatpeak's `GET /login`: Basic account_id:api_key → a short-lived signed bearer token."""
    ctx = request.app[CONTEXT]
    account_id, api_key = _basic_credentials(request.headers.get("Authorization"))
    principal = await principal_for_key(ctx, api_key)
    if principal is None or principal.account_id != account_id:
        raise ApiError(403, "bad_credentials", "Bad credentials")
    check_rate(ctx, ctx.limiter, principal)
    ttl = ctx.settings.api_token_ttl_seconds
    token = sign_token(
        principal,
        now=int(ctx.clock().timestamp()),
        ttl_seconds=ttl,
        secret=ctx.settings.api_token_secret,
    )
    answer = LoginResponse(bearer_token=token, expires_in=ttl, live_mode=principal.live_mode)
    return web.json_response(answer.model_dump(mode="json"))

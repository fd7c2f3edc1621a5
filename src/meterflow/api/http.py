"""Small helpers shared by the handlers: reading JSON bodies, answering documents."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from meterflow.api.context import PRINCIPAL
from meterflow.api.credentials import Principal
from meterflow.api.errors import JSON, ApiError
from meterflow.models import TariffDirection, dumps, loads


def query_choice(
    request: web.Request, names: tuple[str, ...], allowed: tuple[str, ...], *, also: str | None
) -> str | None:
    """The one value a choice is given: under any of `names` in the query, as often as
    repeated, and `also` (a body's field). Each must be one of `allowed` (else 400) and all
    the same (else 422: each is valid alone); None when none is given. A contradiction settled
    silently (the first one taken) answered import figures to a client that asked for export."""
    given = set() if also is None else {also}
    for name in names:
        for raw in request.query.getall(name, ()):
            if raw not in allowed:
                raise ApiError(400, "invalid_request", f"`{name}` must be {' or '.join(allowed)}")
            given.add(raw)
    return _the_one(given, " / ".join(f"`{name}`" for name in names))


_DIRECTION_NAMES = ("tariff_direction", "direction")
"""A tariff direction in a query: its name everywhere else (anode's, the records'), and the
one Flatpeak zero and design §12 use."""
_DIRECTIONS = tuple(direction.value for direction in TariffDirection)


def query_direction(request: web.Request, *, also: TariffDirection | None) -> TariffDirection:
    """The tariff direction asked for: in the query under either name, and `also` (a body's),
    which must agree (`query_choice`); IMPORT when none is given. A `tariff_direction=EXPORT`
    that an endpoint did not read was answered with import rates."""
    given = query_choice(
        request, _DIRECTION_NAMES, _DIRECTIONS, also=None if also is None else also.value
    )
    return TariffDirection.IMPORT if given is None else TariffDirection(given)


def query_value(request: web.Request, name: str) -> str | None:
    """The query's one `name`, None when absent: repeated, it must be the same each time (else
    422), as a choice must (`query_choice`): `contiguous=true&contiguous=false` took the first."""
    return _the_one(set(request.query.getall(name, ())), f"`{name}`")


def _the_one(given: set[str], where: str) -> str | None:
    """The value given, None for none; two different values are a 422 (each valid alone)."""
    if len(given) > 1:
        raise ApiError(422, "invalid_request", f"{where} given twice, differently: give one")
    return given.pop() if given else None


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


async def read_json(request: web.Request, *, code: str = "invalid_request") -> Any:
    """The body decoded with exact decimals; a body that is not JSON is a 400 with `code`."""
    raw = await request.read()
    try:
        return loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, code, f"the request body is not valid JSON: {exc}") from None


def answer(document: BaseModel | Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(document), content_type=JSON)


def query_bool(request: web.Request, name: str) -> bool | None:
    """`true`/`false` (also `1`/`0`, any case: `requests` writes Python's `True`)."""
    raw = query_value(request, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, "invalid_request", f"query parameter `{name}` must be true or false")

"""OpenAPI 3.1 document built from the pydantic models and one table of operations.

`schemas/openapi.json` is this document, checked in; a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from meterflow.api.schemas import (
    CostReport,
    CumulativeReadings,
    DeletedLocation,
    ErrorBody,
    Health,
    Location,
    LocationBody,
    LocationList,
    LoginResponse,
    MeterBatch,
    MeterBatchStatus,
    ReportBody,
    SessionBody,
    SlotTime,
    TariffRates,
)
from meterflow.models import EnergyCost, MeterRecord

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path | query
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    response: type[BaseModel] | None
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_array: bool = False
    body_required: bool = True
    params: tuple[Param, ...] = ()
    public: bool = False
    tags: tuple[str, ...] = field(default=("costs",))


_DIRECTION = {"type": "string", "enum": ["IMPORT", "EXPORT"]}
_ZERO_DIRECTION = (
    "Flatpeak zero's name for `tariff_direction`; every direction given must agree (else 422)"
)
_TEXT = {"type": "string", "pattern": r"^[^\u0000]*$"}
"""A URL part: the server refuses NUL characters in URLs (PostgreSQL text cannot hold them)."""
_LOCATION_ID = {**_TEXT, "minLength": 1, "maxLength": 128}
_BATCH_ID = {**_TEXT, "minLength": 1}
_BATCH_ITEM = {
    "description": (
        "A MeterRecord. The batch is judged record by record: any other JSON value is not "
        "refused with the request, it is listed in `failed_records` (with `record_num`)."
    ),
    "anyOf": [{"$ref": REF.format(model="MeterRecord")}, {}],
}
_AUTHED = (400, 401, 429)
_INSTANT = {"type": "string", "format": "date-time"}
_WINDOW = (
    Param("start_time", "query", _INSTANT, "RFC 3339; default now"),
    Param("end_time", "query", _INSTANT, "RFC 3339; at most 31 days after start_time", True),
    Param("direction", "query", _DIRECTION, "default IMPORT"),
    Param(
        "tariff_direction",
        "query",
        _DIRECTION,
        "the name every other endpoint uses for `direction`; every direction given must agree"
        " (else 422)",
    ),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/costs/instant",
        "instantCost",
        "Price one meter record now; the answer is the event emitted on energy-costs",
        EnergyCost,
        (*_AUTHED, 413, 422),
        body=MeterRecord,
        params=(
            Param(
                "non_persistent",
                "query",
                {"type": "boolean"},
                "true = a simulation: answered and emitted, never stored",
            ),
        ),
    ),
    Operation(
        "put",
        "/meters/interval",
        "submitIntervalRecords",
        "Submit up to 10,000 interval meter records for pricing in the stream",
        MeterBatch,
        (*_AUTHED, 413),
        body=MeterRecord,
        body_array=True,
        tags=("meters",),
    ),
    Operation(
        "put",
        "/meters/cumulative/epoch",
        "submitCumulativeReadings",
        "Submit up to 10,000 cumulative register readings of one meter; the worker prices "
        "the intervals between them",
        MeterBatch,
        (*_AUTHED, 404, 413, 422),
        body=CumulativeReadings,
        tags=("meters",),
    ),
    Operation(
        "get",
        "/meters/batch",
        "getMeterBatch",
        "A batch's status: every record ACCEPTED, PRICED or FAILED (also after acceptance)",
        MeterBatchStatus,
        (*_AUTHED, 404, 422),
        params=(Param("batch_id", "query", _BATCH_ID, "the `id` of the PUT's answer", True),),
        tags=("meters",),
    ),
    Operation(
        "post",
        "/costs/interval/{object_id}",
        "intervalCostReport",
        "Stored costs of a location or device, per record or per local DAY/MONTH",
        CostReport,
        (*_AUTHED, 404, 409, 413, 422),
        body=ReportBody,
        params=(
            Param("object_id", "path", _TEXT, "location_id or device_id", True),
            Param("aggregation", "query", {"type": "string", "enum": ["DAY", "MONTH"]}),
            Param("tariff_direction", "query", _DIRECTION, "default IMPORT"),
            Param("direction", "query", _DIRECTION, _ZERO_DIRECTION),
        ),
    ),
    Operation(
        "post",
        "/costs/session/{session_reference_id}",
        "sessionCostReport",
        "Totals of the stored costs of one session",
        CostReport,
        (*_AUTHED, 404, 413, 422),
        body=SessionBody,
        body_required=False,
        params=(
            Param("session_reference_id", "path", _TEXT, required=True),
            Param("tariff_direction", "query", _DIRECTION, "default IMPORT"),
            Param("direction", "query", _DIRECTION, _ZERO_DIRECTION),
        ),
    ),
    Operation(
        "get",
        "/locations",
        "listLocations",
        "The caller's locations, newest id first, with cursor pagination",
        LocationList,
        (*_AUTHED, 409, 422),
        params=(
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
            Param("starting_after", "query", _TEXT, "the last id of the page before"),
        ),
        tags=("locations",),
    ),
    Operation(
        "put",
        "/locations/{location_id}",
        "putLocation",
        "Create or replace a location profile with its tariffs",
        Location,
        (*_AUTHED, 403, 404, 413, 422),
        body=LocationBody,
        params=(Param("location_id", "path", _LOCATION_ID, required=True),),
        tags=("locations",),
    ),
    Operation(
        "get",
        "/locations/{location_id}",
        "getLocation",
        "One location profile",
        Location,
        (*_AUTHED, 404, 409),
        params=(Param("location_id", "path", _LOCATION_ID, required=True),),
        tags=("locations",),
    ),
    Operation(
        "delete",
        "/locations/{location_id}",
        "deleteLocation",
        "Delete a location (a tombstone on the locations topic)",
        DeletedLocation,
        (*_AUTHED, 404),
        params=(Param("location_id", "path", _LOCATION_ID, required=True),),
        tags=("locations",),
    ),
    Operation(
        "get",
        "/tariffs/rates/{location_id}",
        "getTariffRates",
        "The rate in force (energy + components) over a window: maximal periods, 31 days at most",
        TariffRates,
        (*_AUTHED, 404, 422),
        params=(Param("location_id", "path", _LOCATION_ID, required=True), *_WINDOW),
        tags=("tariffs",),
    ),
    Operation(
        "get",
        "/slots/time/{location_id}",
        "getSlotsTime",
        "The cheapest (LOW) or dearest (HIGH) `duration` whole minutes of a window",
        SlotTime,
        (*_AUTHED, 404, 422),
        params=(
            Param("location_id", "path", _LOCATION_ID, required=True),
            *_WINDOW,
            Param(
                "duration",
                "query",
                {"type": "integer", "minimum": 1},
                "minutes wanted; at most the window's whole minutes",
                True,
            ),
            Param("segment", "query", {"type": "string", "enum": ["LOW", "HIGH"]}, "default LOW"),
            Param(
                "contiguous",
                "query",
                {"type": "boolean"},
                "true = the single best window; default false (any minutes)",
            ),
        ),
        tags=("tariffs",),
    ),
    Operation(
        "get",
        "/login",
        "login",
        "Basic account_id:api_key -> a short-lived bearer token",
        LoginResponse,
        (401, 403, 429),
        public=True,
        tags=("auth",),
    ),
    Operation("get", "/healthz", "healthz", "Liveness", Health, public=True, tags=("ops",)),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "Readiness: broker and database reachable, views loaded (503 otherwise)",
        Health,
        (503,),
        public=True,
        tags=("ops",),
    ),
)

ERROR_DESCRIPTIONS = {
    400: "Bad request (body not JSON, bad parameter)",
    401: "No credentials (also on /login), an unknown or revoked API key, or a bad token",
    403: "Bad credentials or a field the API key decides",
    404: "Not found (or another account's object)",
    409: (
        "A stored location profile breaks a rule added since it was stored "
        "(`stale_profile`, naming it): PUT it again or DELETE it"
    ),
    413: "Request body too large",
    422: (
        "Fits the schema but cannot be processed (unknown location or device, no tariff in force, "
        "end_time not after start_time, a profile with a gap, a window over 31 days, a "
        "duration longer than the window, a report over two currencies, a query parameter "
        "given twice differently, a meter id another location has: a device it lists, or its own "
        "id); `code` says which"
    ),
    429: "Rate limited; see Retry-After",
    503: (
        "The database or the broker cannot be reached (`database_unavailable`, "
        "`broker_unavailable`), or the API is still reading locations after it started "
        "(`not_ready`); retry after Retry-After seconds"
    ),
}


def _schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in OPERATIONS:
        if op.response is not None:
            pairs.append((op.response, "serialization"))
        if op.body is not None:
            pairs.append((op.body, "validation"))
    unique = list(dict.fromkeys(pairs))
    refs, defs = models_json_schema(unique, ref_template=REF)
    components: dict[str, Any] = defs.get("$defs", {})
    return dict(refs), components


def build_openapi() -> dict[str, Any]:
    refs, components = _schemas()
    error_ref = refs[(ErrorBody, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        if op.response is not None:
            success = 503 if op.path == "/readyz" else None
            responses["200"] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
            }
            if success:
                responses["503"] = {
                    "description": "Not ready",
                    "content": {
                        "application/json": {"schema": refs[(op.response, "serialization")]}
                    },
                }
        for status in (*op.errors, 404, 405, 500, 503):
            if str(status) in responses:
                continue
            responses[str(status)] = {
                "description": ERROR_DESCRIPTIONS.get(status, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        spec: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": list(op.tags),
            "responses": responses,
        }
        if op.params:
            spec["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in op.params
            ]
        if op.body is not None:
            schema = refs[(op.body, "validation")]
            if op.body_array:
                schema = {"type": "array", "items": _BATCH_ITEM, "maxItems": 10_000}
            spec["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": schema}},
            }
        spec["security"] = [] if op.public else [{"bearer": []}]
        if op.path == "/login":
            spec["security"] = [{"basic": []}]
        paths.setdefault(op.path, {})[op.method] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meterflow API",
            "version": "0.1.0",
            "description": (
                "Flatpeak-compatible energy cost API: instant costs, meter batches, cost reports "
                "and location profiles. Errors are always {object: error, type, code, message}."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (sk_test_…/sk_live_…) or a token from GET /login",
                },
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }


CHECKED_IN = "schemas/openapi.json"


def render() -> str:
    """The document as checked in: stable key order, 2-space indent, final newline."""
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m meterflow.api.openapi [--check] [PATH]`: write or compare the checked-in file."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [arg for arg in args if arg != "--check"]
    target = Path(paths[0] if paths else CHECKED_IN)
    text = render()
    if check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is out of date: run python -m meterflow.api.openapi", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

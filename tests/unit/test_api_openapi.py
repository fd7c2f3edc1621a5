"""The OpenAPI document: generated from the models, checked in, and internally consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meterflow.api.app import create_api
from meterflow.api.openapi import CHECKED_IN, OPERATIONS, build_openapi, render
from meterflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_openapi_matches_the_models() -> None:
    checked_in = (ROOT / CHECKED_IN).read_text(encoding="utf-8")
    assert checked_in == render(), (
        "schemas/openapi.json drifted from the models: run `python -m meterflow.api.openapi`"
    )


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def test_every_reference_resolves_and_every_route_is_documented() -> None:
    spec = build_openapi()
    assert spec["openapi"] == "3.1.0"
    components = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in components, ref

    app = create_api(Settings(), start_clients=False)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(op.method, op.path) for op in OPERATIONS}
    undocumented = routes - documented - {("get", "/metrics"), ("get", "/openapi.json")}
    assert not undocumented
    assert documented <= routes


def test_every_authenticated_operation_documents_401_and_429() -> None:
    for path, operations in build_openapi()["paths"].items():
        for method, operation in operations.items():
            if operation["security"] == [{"bearer": []}]:
                assert {"401", "429", "500"} <= set(operation["responses"]), (method, path)

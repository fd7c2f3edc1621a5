"""JSON Schemas of the contract's documents, exported to `schemas/` for producers and consumers.

The files are generated from the models, never edited by hand; `meterflow schemas export
--check` (and a unit test) fail when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from meterflow.models import (
    DeadLetter,
    EnergyCost,
    LocationProfile,
    MarketPrices,
    MeterReading,
    MeterRecord,
)

INPUTS: tuple[type[BaseModel], ...] = (MeterRecord, MeterReading, LocationProfile, MarketPrices)
"""Documents we read: schema of what validation accepts."""
OUTPUTS: tuple[type[BaseModel], ...] = (EnergyCost, DeadLetter)
"""Documents we write: schema of what serialization produces."""


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    if model in OUTPUTS:
        schema = model.model_json_schema(by_alias=True, mode="serialization")
    else:
        schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{model.__name__}.schema.json"
    return schema


def rendered() -> dict[str, str]:
    """File name -> exact file content, for every exported document."""
    return {
        f"{model.__name__}.schema.json": json.dumps(schema_of(model), indent=2, sort_keys=True)
        + "\n"
        for model in INPUTS + OUTPUTS
    }


def export(directory: Path, *, check: bool = False) -> list[str]:
    """Write the schema files (or, with `check`, only compare); return the names that differ."""
    drifted = []
    for name, text in rendered().items():
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            drifted.append(name)
            if not check:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return drifted

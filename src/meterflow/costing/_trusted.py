"""Building result documents from values the engine computed itself, without re-validation.

`model_construct` re-walks every field's aliases and defaults; a caller that passes every field
explicitly (the readings agent's derived `MeterRecord`) can have the instance assembled directly
(this is what `model_construct` does in the end). The engine's results need no model at all
(`models.PricedCost`).

That writes pydantic's private slots, so it is tied to one pydantic minor version (pinned in
pyproject.toml): importing this module checks the version, the slot layout and that
`model_construct` still sets the same slots, and the first use for a model class checks that the
class has nothing those slots would have to hold (private attributes, extra fields,
`model_post_init`); either failure raises at once instead of building broken instances.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from meterflow._guards import Borrowings, Names, Value

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__

_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
BORROWED = Borrowings(
    "meterflow.costing._trusted",
    written_for={"pydantic": "2.14"},  # keep equal to the pin in pyproject.toml
    docs='docs/stream.md, "Guards on the patched internals"',
)
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}


def _check_model(cls: type[BaseModel]) -> None:
    """Refuse a model whose instances need more than the four slots `trusted` writes."""
    needs = [
        what
        for what, present in (
            ("private attributes", bool(cls.__private_attributes__)),
            ('extra="allow"', cls.model_config.get("extra") == "allow"),
            ("model_post_init", cls.__pydantic_post_init__ is not None),
        )
        if present
    ]
    if needs:
        raise TypeError(f"trusted() cannot build {cls.__qualname__}: it has {', '.join(needs)}")


def _checked_fields(cls: type[BaseModel]) -> set[str]:
    """`cls`'s field names, once `cls` is known to need no more than the four slots."""
    _check_model(cls)
    fields = _ALL_FIELDS[cls] = set(cls.model_fields)
    return fields


@BORROWED.patch(
    Value(BaseModel, "__slots__", _SLOTS),
    Names(BaseModel, "model_construct", _SLOTS),  # what `trusted` repeats
)
def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` holding `values`, which must name every field with a valid value."""
    fields = _ALL_FIELDS.get(cls) or _checked_fields(cls)
    instance = cls.__new__(cls)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", fields)  # shared: frozen models never change it
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


BORROWED.check()
